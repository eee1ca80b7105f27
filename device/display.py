# The keypad's screen: Device.screen()'s lines drawn with the bitmap font
# that tools/fontgen.py builds (its format is described there). The font file
# stays on flash: a glyph is found by a binary search that seeks in the
# file's sorted index, and only the last few glyphs drawn are kept in RAM.
#
# The panel is any object with .fb (a framebuf.FrameBuffer), .width, .height
# and .show() - hardware/ssd1306.py on a board, simulators/display.py in the
# simulation - so the same drawing runs on both and gives the same bytes.
try:
    import framebuf
except ImportError:  # CPython (the simulation): the simulators' stand-in
    from simulators import framebuf

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from device.compat import ticks_add, ticks_diff

FONT_FILE = "/font.bin"  # written by `hcp font build` (docs/technician-guide.md)
_HEADER = const(16)
_ENTRY = const(8)
_CACHE = const(32)  # glyphs kept in RAM (about 100 bytes each at 16 px)
_RETRY_MS = const(1000)  # after a failing draw, the first retry; doubled up to _RETRY_MAX_MS
_RETRY_MAX_MS = const(60000)


class Font:
    """A font file opened for reading; glyph(code) -> (width, FrameBuffer) or None."""

    def __init__(self, path):
        self._file = open(path, "rb")
        head = self._file.read(_HEADER)
        if len(head) < _HEADER or head[:4] != b"HCPF" or head[4] != 1:
            self._file.close()
            raise ValueError("not an hcp font file: " + path)
        self.height = head[5]
        self.count = (head[8] << 8) | head[9]
        self._entry = bytearray(_ENTRY)
        self._cache = {}
        self.reads = 0  # index entries read (tests check the search is a search)

    def close(self):
        self._file.close()

    def _read_entry(self, i):
        self._file.seek(_HEADER + i * _ENTRY)
        self._file.readinto(self._entry)
        self.reads += 1
        e = self._entry
        return (e[0] << 16) | (e[1] << 8) | e[2]

    def _find(self, code):
        lo, hi = 0, self.count - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            found = self._read_entry(mid)
            if found == code:
                e = self._entry
                width = e[3]
                offset = (e[4] << 24) | (e[5] << 16) | (e[6] << 8) | e[7]
                bits = bytearray(((width + 7) >> 3) * self.height)
                self._file.seek(offset)
                self._file.readinto(bits)
                return width, framebuf.FrameBuffer(bits, width, self.height, framebuf.MONO_HLSB)
            if found < code:
                lo = mid + 1
            else:
                hi = mid - 1
        return None

    def glyph(self, code):
        if code in self._cache:
            return self._cache[code]
        found = self._find(code)
        if len(self._cache) >= _CACHE:
            self._cache.clear()  # a new screen: start again (bounded, no bookkeeping)
        self._cache[code] = found
        return found

    def width(self, code):
        """Advance of a character; one the font lacks gets a box this wide."""
        found = self.glyph(code)
        if found is not None:
            return found[0]
        return self.height if code >= 0x1100 else self.height >> 1


class Screen:
    """Draws lines of text on a panel, centred, wrapped where a line is too
    wide; rows that do not fit below are left out. Draws only when the lines
    change."""

    def __init__(self, panel, font):
        self.panel = panel
        self.font = font
        self.lines = None  # what the panel shows now
        self.draws = 0
        self.failures = 0
        self._retry_at = None

    def rows(self, lines):
        """(line index, start, end, width in pixels) of each row, wrapped."""
        out = []
        limit = self.panel.width
        for n, line in enumerate(lines):
            start, x = 0, 0
            for i in range(len(line)):
                w = self.font.width(ord(line[i]))
                if x + w > limit and i > start:
                    out.append((n, start, i, x))
                    start, x = i, 0
                    if line[i] == " ":
                        start = i + 1  # a wrapped row does not start with a space
                        continue
                x += w
            out.append((n, start, len(line), x))
        return out

    def draw(self, lines):
        """Draw `lines` (a tuple of str) unless they are on the panel already.
        True when it drew."""
        if lines == self.lines:
            return False
        fb, font = self.panel.fb, self.font
        height = font.height
        fb.fill(0)
        rows = self.rows(lines)
        fit = min(len(rows), self.panel.height // height)
        y = (self.panel.height - fit * height) >> 1
        for n, start, end, width in rows[:fit]:
            line = lines[n]
            x = (self.panel.width - width) >> 1
            for i in range(start, end):
                code = ord(line[i])
                found = font.glyph(code)
                if found is None:
                    w = font.width(code)
                    if code != 32:
                        fb.rect(x + 1, y + 1, w - 2, height - 2, 1)  # a glyph the font lacks
                else:
                    w = found[0]
                    fb.blit(found[1], x, y)
                x += w
            y += height
        self.panel.show()
        self.lines = lines
        self.draws += 1
        return True

    def update(self, lines, now_ms):
        """draw() from the main loop: after a failure (a loose cable, a
        broken panel) it tries again later, 1 s doubling up to 60 s, and
        raises only on the try itself, so the caller notes each try once."""
        if self._retry_at is not None and ticks_diff(now_ms, self._retry_at) < 0:
            return False
        try:
            drawn = self.draw(lines)
        except Exception:
            self.lines = None  # redraw on the next try
            self.failures += 1
            delay = _RETRY_MS << min(self.failures - 1, 6)
            self._retry_at = ticks_add(now_ms, min(delay, _RETRY_MAX_MS))
            raise
        self.failures = 0
        self._retry_at = None
        return drawn

    def tick(self, device, now_ms):
        """Each pass of the main loop (device.main.Device.run_once): draw
        device.screen() when it changed. Never raises: a failure is noted in
        the crash log once per try, and the keypad goes on."""
        try:
            self.update(device.screen(), now_ms)
        except Exception as exc:
            try:
                from device.main import describe

                device.crash_log.note(describe("display", exc), now_ms)
            except Exception:  # e.g. MemoryError while formatting
                device.crash_log.count += 1


def attach(device, machine, board, panel=None, font_file=None):
    """device.display: a Screen on `panel` (the simulators'), else on the
    display the board file names (hardware/display.py). A port without I2C
    (the test stubs of machine) has none. Raises when the panel or the font
    file fails; device.main.build notes that and the keypad works on."""
    if panel is None:
        if getattr(machine, "I2C", None) is None:
            return None
        from hardware.display import make

        panel = make(machine, board)
        if panel is None:
            return None
    device.display = Screen(panel, Font(font_file or FONT_FILE))
    return device.display
