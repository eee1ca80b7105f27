"""For tests and the demo only: the keypad's display, simulated.

A 1-bit panel in the SSD1306's memory layout (MONO_VLSB, 128x64 by default)
with the interface of hardware/ssd1306.py (.fb, .width, .height, .show()),
so device/display.py draws on it exactly as on the board. It counts the
frames shown, keeps the last one, and with `frames_dir` saves every frame
that differs from the one before as a PNG (frame-0001.png, ...).
"""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

from simulators import framebuf


def png(width: int, height: int, rows: list[bytes]) -> bytes:
    """A greyscale 8-bit PNG of `rows` (one byte a pixel); deterministic bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


class SimDisplay:
    ON = 0xFF  # a lit pixel in the PNG (white on black, as an OLED)
    OFF = 0x00

    def __init__(self, width: int = 128, height: int = 64, frames_dir=None, scale: int = 1):
        self.width = width
        self.height = height
        self.buffer = bytearray(width * ((height + 7) // 8))
        self.fb = framebuf.FrameBuffer(self.buffer, width, height, framebuf.MONO_VLSB)
        self.frames_dir = Path(frames_dir) if frames_dir else None
        self.scale = scale
        self.shown = 0  # show() calls
        self.saved: list[Path] = []
        self.frame = bytes(self.buffer)  # what the panel shows (after the last show())
        self._lock = threading.Lock()
        if self.frames_dir:
            self.frames_dir.mkdir(parents=True, exist_ok=True)

    def show(self) -> None:
        """The panel takes the frame buffer (the SSD1306 driver writes it over I2C)."""
        frame = bytes(self.buffer)
        with self._lock:
            changed = frame != self.frame
            self.frame = frame
            self.shown += 1
        if changed and self.frames_dir:
            path = self.frames_dir / f"frame-{len(self.saved) + 1:04d}.png"
            # written aside and renamed: a reader never finds half a frame
            partial = path.with_suffix(".part")
            partial.write_bytes(self.png())
            partial.replace(path)
            self.saved.append(path)

    def lit(self, x: int, y: int, frame: bytes | None = None) -> bool:
        frame = self.frame if frame is None else frame
        return bool(frame[(y >> 3) * self.width + x] >> (y & 7) & 1)

    def rows(self, frame: bytes | None = None, scale: int | None = None) -> list[bytes]:
        """The frame as rows of one byte a pixel, each pixel scale x scale."""
        frame = self.frame if frame is None else frame
        scale = scale or self.scale
        out = []
        for y in range(self.height):
            row = bytes(
                self.ON if self.lit(x, y, frame) else self.OFF
                for x in range(self.width)
                for _ in range(scale)
            )
            out += [row] * scale
        return out

    def png(self, frame: bytes | None = None, scale: int | None = None) -> bytes:
        scale = scale or self.scale
        return png(self.width * scale, self.height * scale, self.rows(frame, scale))

    def text(self, frame: bytes | None = None) -> str:
        """The frame as '#' and '.' (for a test's failure message)."""
        return "\n".join(
            "".join("#" if self.lit(x, y, frame) else "." for x in range(self.width))
            for y in range(self.height)
        )
