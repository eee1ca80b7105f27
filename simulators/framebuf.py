"""For tests and the demo only: a pure-Python stand-in for MicroPython's `framebuf`.

Only what the firmware's display code uses: the three 1-bit formats, fill,
pixel, fill_rect, rect, hline, vline and blit, with the same memory layout
and clipping as MicroPython's framebuf.c, so a frame drawn on CPython has the
same bytes as one drawn on a board (tests/test_display_frames.py compares
them with the real interpreter).
"""

from __future__ import annotations

MONO_VLSB = 0  # a byte is 8 pixels of one column, top pixel in bit 0 (SSD1306 pages)
MONO_HLSB = 3  # a byte is 8 pixels of one row, leftmost in bit 7
MONO_HMSB = 4  # a byte is 8 pixels of one row, leftmost in bit 0
MVLSB = MONO_VLSB
FORMATS = (MONO_VLSB, MONO_HLSB, MONO_HMSB)


class FrameBuffer:
    def __init__(self, buffer, width, height, format, stride=None):
        if format not in FORMATS:
            raise ValueError("invalid format")
        if width < 1 or height < 1:
            raise ValueError("invalid size")
        self.buffer = buffer
        self.width = width
        self.height = height
        self.format = format
        stride = width if stride is None else stride
        if format in (MONO_HLSB, MONO_HMSB):
            stride = (stride + 7) & ~7  # rows start on a byte
            need = (stride * height + 7) // 8
        else:
            need = stride * ((height + 7) // 8)
        self.stride = stride
        if len(buffer) < need:
            raise ValueError("buffer too small")

    # --- one pixel, as framebuf.c's getpixel/setpixel per format
    def _set(self, x, y, c):
        if self.format == MONO_VLSB:
            i, bit = (y >> 3) * self.stride + x, y & 7
        else:
            i = (x + y * self.stride) >> 3
            bit = 7 - (x & 7) if self.format == MONO_HLSB else x & 7
        if c & 1:
            self.buffer[i] |= 1 << bit
        else:
            self.buffer[i] &= ~(1 << bit) & 0xFF

    def _get(self, x, y):
        if self.format == MONO_VLSB:
            i, bit = (y >> 3) * self.stride + x, y & 7
        else:
            i = (x + y * self.stride) >> 3
            bit = 7 - (x & 7) if self.format == MONO_HLSB else x & 7
        return (self.buffer[i] >> bit) & 1

    def pixel(self, x, y, c=None):
        if not (0 <= x < self.width and 0 <= y < self.height):
            return None
        if c is None:
            return self._get(x, y)
        self._set(x, y, c)
        return None

    def fill_rect(self, x, y, w, h, c):
        if h < 1 or w < 1 or x + w <= 0 or y + h <= 0 or y >= self.height or x >= self.width:
            return
        xend = min(self.width, x + w)
        yend = min(self.height, y + h)
        x, y = max(x, 0), max(y, 0)
        for yy in range(y, yend):
            for xx in range(x, xend):
                self._set(xx, yy, c)

    def fill(self, c):
        value = 0xFF if c & 1 else 0
        n = len(self.buffer)
        self.buffer[0:n] = bytes([value]) * n

    def hline(self, x, y, w, c):
        self.fill_rect(x, y, w, 1, c)

    def vline(self, x, y, h, c):
        self.fill_rect(x, y, 1, h, c)

    def rect(self, x, y, w, h, c, f=False):
        if f:
            self.fill_rect(x, y, w, h, c)
            return
        self.fill_rect(x, y, w, 1, c)
        self.fill_rect(x, y + h - 1, w, 1, c)
        self.fill_rect(x, y, 1, h, c)
        self.fill_rect(x + w - 1, y, 1, h, c)

    def blit(self, source, x, y, key=-1):
        """Copy `source` (a FrameBuffer) with its top left at (x, y); pixels of
        colour `key` are left out (transparent)."""
        if x >= self.width or y >= self.height or -x >= source.width or -y >= source.height:
            return
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = max(0, -x), max(0, -y)
        x0end = min(self.width, x + source.width)
        y0end = min(self.height, y + source.height)
        for sy, dy in zip(range(y1, y1 + y0end - y0), range(y0, y0end), strict=True):
            for sx, dx in zip(range(x1, x1 + x0end - x0), range(x0, x0end), strict=True):
                c = source._get(sx, sy)
                if c != key:
                    self._set(dx, dy, c)
