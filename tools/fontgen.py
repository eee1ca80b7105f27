"""Build the keypad's bitmap font: exactly the glyphs its screens need.

    .venv/bin/python -m tools.fontgen --roster roster.json --out font.bin
    hcp font build --roster roster.json --out font.bin        (the same)

The texts are the firmware's fixed screen texts (every string literal with a
non-ASCII character in device/*.py, docstrings left out), the staff roster or
config given with --roster (staff names and numbers, window ids, tag texts,
free texts), any --text, and the printable ASCII characters. Each is drawn
from a CJK TrueType/TTC font (default: WenQuanYi Micro Hei from the Debian
package fonts-wqy-microhei) with pygame.freetype, 1 bit a pixel, no
anti-aliasing. The same inputs give the same bytes.

The file (read by device/display.py by seeking, never loaded whole):

    header  16 bytes: b"HCPF", version 1, height, max width, 0,
            glyph count (uint16 big-endian), 0 * 6
    index   count * 8 bytes, sorted by code point:
            code point (3 bytes BE), width (1 byte), bitmap offset (uint32 BE)
    bitmaps height rows of ceil(width / 8) bytes each, most significant bit
            leftmost (framebuf.MONO_HLSB)

A character the font lacks is left out of the file and reported; the
keypad draws a box in its place. Rebuild the file when the roster changes
(docs/technician-guide.md, "Display font").

Roster file (JSON), every key optional:

    {"staff": [{"staff_name": "张敏", "staff_no": "1001", "window_id": "A01"}],
     "tags": [[1, "D101", "服务态度差"]],
     "texts": ["任何要显示的文字"]}

A list at the top is read as "staff" (so the demo's devices.json works), and
a config message (window_id, staff_name, staff_no, tags) is read as it is.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import struct
import sys
import unicodedata
from pathlib import Path

MAGIC = b"HCPF"
VERSION = 1
HEADER_SIZE = 16
ENTRY_SIZE = 8
DEFAULT_SIZE = 16
DEFAULT_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
FONT_PACKAGE = "fonts-wqy-microhei"
ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
SOURCE_FOLDERS = ("device",)
# keys of a staff entry, and of a config message, whose values are shown
STAFF_KEYS = ("staff_name", "name", "staff_no", "window_id")
CONFIG_KEYS = ("window_id", "staff_name", "staff_no")
ROSTER_KEYS = ("staff", "tags", "texts")
# a config message's other keys: accepted, not shown
CONFIG_OTHER = (
    "t", "v", "version", "staff_id", "org_id", "content_version", "sig", "device_id", "hours",
    "roster",
)  # fmt: skip


class FontError(Exception):
    """A bad roster, a missing font or an impossible size: the message says which."""


# --- the texts -------------------------------------------------------------


def firmware_texts(root: Path | None = None) -> list[str]:
    """The string literals with a non-ASCII character in the firmware's code
    (its screen texts), docstrings left out, in file order."""
    if root is None:  # where the firmware is, in a checkout or installed
        import device

        root = Path(device.__file__).resolve().parent.parent
    texts = []
    for folder in SOURCE_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            docstrings = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                    body = node.body
                    if body and isinstance(body[0], ast.Expr):
                        docstrings.add(id(body[0].value))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                    and any(ord(ch) > 0x7E for ch in node.value)
                ):
                    texts.append(node.value)
    return texts


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise FontError(f"{where}: must be a string")
    return value


def roster_texts(data, name: str = "roster") -> list[str]:
    """The texts a roster or config object shows; FontError naming the bad field."""
    if isinstance(data, list):
        data = {"staff": data}
    if not isinstance(data, dict):
        raise FontError(f"{name}: must be a JSON object or a list of staff")
    texts = []
    is_config = any(key in data for key in CONFIG_KEYS)
    for key in sorted(data):
        if key in ROSTER_KEYS or (is_config and key in CONFIG_KEYS + CONFIG_OTHER):
            continue
        raise FontError(f'{name}: unknown key "{key}"')
    if is_config:
        texts += [_text(data[key], f"{name}.{key}") for key in CONFIG_KEYS if key in data]
        roster = data.get("roster", [])  # [[工号, name], ...]: the names a sign-in shows
        if not isinstance(roster, list):
            raise FontError(f"{name}.roster: must be a list")
        for i, row in enumerate(roster):
            if not (isinstance(row, list) and len(row) == 2):
                raise FontError(f"{name}.roster[{i}]: must be [staff_no, name]")
            texts += [
                _text(row[0], f"{name}.roster[{i}][0]"),
                _text(row[1], f"{name}.roster[{i}][1]"),
            ]
    staff = data.get("staff", [])
    if not isinstance(staff, list):
        raise FontError(f"{name}.staff: must be a list")
    for i, entry in enumerate(staff):
        where = f"{name}.staff[{i}]"
        if not isinstance(entry, dict):
            raise FontError(f"{where}: must be an object")
        texts += [_text(entry[key], f"{where}.{key}") for key in STAFF_KEYS if key in entry]
    tags = data.get("tags", [])
    if not isinstance(tags, list):
        raise FontError(f"{name}.tags: must be a list")
    for i, tag in enumerate(tags):
        if not (isinstance(tag, list) and len(tag) == 3):
            raise FontError(f"{name}.tags[{i}]: must be [level, code, text]")
        texts.append(_text(tag[2], f"{name}.tags[{i}][2]"))
    free = data.get("texts", [])
    if not isinstance(free, list):
        raise FontError(f"{name}.texts: must be a list")
    texts += [_text(t, f"{name}.texts[{i}]") for i, t in enumerate(free)]
    return texts


def read_roster(path: str | os.PathLike) -> list[str]:
    """The texts of a roster file; FontError with the file's name and the problem."""
    name = Path(path).name
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise FontError(f"{name}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise FontError(f"{name}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise FontError(
            f"{name}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return roster_texts(data, name)


def charset(texts) -> list[str]:
    """The characters to draw: printable ASCII plus every character of the
    texts but control characters, sorted by code point."""
    chars = set(ASCII)
    for text in texts:
        chars.update(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return sorted(chars)


# --- rasterising -----------------------------------------------------------


def find_font(path: str | None = None) -> str:
    if path:
        if not Path(path).is_file():
            raise FontError(f"font file not found: {path}")
        return path
    for candidate in DEFAULT_FONTS:
        if Path(candidate).is_file():
            return candidate
    raise FontError(
        "no CJK font found (looked for " + ", ".join(DEFAULT_FONTS) + "): install the Debian "
        f"package {FONT_PACKAGE} (apt-get install {FONT_PACKAGE}) or give --font PATH"
    )


def is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


class Rasteriser:
    """Draws one character at a time into a 1-bit bitmap of `size` rows."""

    def __init__(self, font_path: str, size: int):
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame
        import pygame.freetype

        pygame.freetype.init()
        self.pygame = pygame
        self.size = size
        self.font = pygame.freetype.Font(font_path, size)
        self.font.antialiased = False
        self.font.kerning = False
        self.font.origin = True  # render_to's y is the baseline
        ascender = self.font.get_sized_ascender(size)
        descender = self.font.get_sized_descender(size)  # negative
        total = max(1, ascender - descender)
        self.baseline = (size * ascender + total // 2) // total

    def has(self, ch: str) -> bool:
        return self.font.get_metrics(ch)[0] is not None

    def width(self, ch: str) -> int:
        if is_wide(ch):
            return self.size
        advance = self.font.get_metrics(ch)[0][4]
        return max(1, min(self.size, int(advance + 0.5)))

    def bitmap(self, ch: str) -> tuple[int, bytes]:
        """(width, rows of MONO_HLSB bytes)."""
        width = self.width(ch)
        pygame = self.pygame
        surface = pygame.Surface((width, self.size), depth=8)
        surface.fill(0)
        self.font.render_to(surface, (0, self.baseline), ch, fgcolor=(255, 255, 255))
        pixels = pygame.image.tobytes(surface, "P")
        stride = (width + 7) // 8
        out = bytearray(stride * self.size)
        for y in range(self.size):
            for x in range(width):
                if pixels[y * width + x]:
                    out[y * stride + x // 8] |= 0x80 >> (x % 8)
        return width, bytes(out)


def build(texts, font_path: str | None = None, size: int = DEFAULT_SIZE):
    """(file bytes, characters drawn, characters the font lacks)."""
    if not 8 <= size <= 32:
        raise FontError(f"size: must be 8..32 pixels, not {size}")
    raster = Rasteriser(find_font(font_path), size)
    drawn, missing, glyphs = [], [], []
    for ch in charset(texts):
        if not raster.has(ch):
            missing.append(ch)
            continue
        drawn.append(ch)
        glyphs.append((ord(ch), *raster.bitmap(ch)))
    if len(glyphs) > 0xFFFF:
        raise FontError(f"{len(glyphs)} glyphs: at most 65535 fit in one file")
    header = MAGIC + bytes((VERSION, size, size, 0)) + struct.pack(">H", len(glyphs)) + bytes(6)
    index, bitmaps = bytearray(), bytearray()
    offset = HEADER_SIZE + ENTRY_SIZE * len(glyphs)
    for code, width, bits in glyphs:
        index += struct.pack(">I", code)[1:] + bytes((width,)) + struct.pack(">I", offset)
        bitmaps += bits
        offset += len(bits)
    return bytes(header + index + bitmaps), drawn, missing


def read_font(data: bytes) -> dict[str, tuple[int, bytes]]:
    """The glyphs of a font file: {character: (width, bitmap)} (for tests and checks)."""
    if data[:4] != MAGIC or data[4] != VERSION:
        raise FontError("not an hcp font file (version 1)")
    size = data[5]
    (count,) = struct.unpack(">H", data[8:10])
    glyphs = {}
    for i in range(count):
        entry = data[HEADER_SIZE + i * ENTRY_SIZE : HEADER_SIZE + (i + 1) * ENTRY_SIZE]
        code = int.from_bytes(entry[:3], "big")
        width = entry[3]
        (offset,) = struct.unpack(">I", entry[4:])
        glyphs[chr(code)] = (width, data[offset : offset + (width + 7) // 8 * size])
    return glyphs


# --- command line ----------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--roster",
        action="append",
        default=[],
        metavar="FILE",
        help="roster or config JSON (staff names and numbers, window ids, tags); repeatable",
    )
    parser.add_argument(
        "--text", action="append", default=[], help="another text to show; repeatable"
    )
    parser.add_argument(
        "--font", default=None, help=f"CJK TrueType/TTC font (default: from {FONT_PACKAGE})"
    )
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help="glyph height in pixels (default 16)"
    )
    parser.add_argument("--out", default="font.bin", help="the font file to write")


def run(args) -> int:
    try:
        texts = firmware_texts()
        for path in args.roster:
            texts += read_roster(path)
        texts += args.text
        data, drawn, missing = build(texts, args.font, args.size)
    except FontError as exc:
        print(f"hcp font: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_bytes(data)
    print(f"{args.out}: {len(drawn)} glyphs, {len(data)} bytes, {args.size} px")
    if missing:
        listed = " ".join(f"U+{ord(ch):04X}({ch})" for ch in missing)
        print(f"not in the font, shown as a box: {listed}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fontgen", description=__doc__.split("\n")[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
