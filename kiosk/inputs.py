"""pygame events become logical inputs here, and nowhere else.

    ("tap", (x, y))      a left click or a finger lifted (touch mouse
                         emulation is ignored, so a touch counts once)
    ("key", name)        enter, back, backspace, tab, up, down, left, right, f12
    ("text", text)       typed text, or an input method's committed text
    ("scan", text)       a keyboard-wedge barcode scanner's read
    ("bad_scan", text)   a fast burst that is not a usable read
    ("quit", None)

A barcode scanner types like a keyboard, only much faster, and ends with
Enter. Typed characters are held while they come faster than scan_gap_ms
apart: a burst of MIN_SCAN or more closed by Enter is a scan; one that stops
without Enter, holds characters a case number cannot hold, or is too long is
a bad read. Slower typing is released as text once the gap has passed.
"""

from __future__ import annotations

import pygame

MIN_SCAN = 4
MAX_SCAN = 64
SCAN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")

KEY_NAMES = {
    pygame.K_RETURN: "enter",
    pygame.K_KP_ENTER: "enter",
    pygame.K_ESCAPE: "back",
    pygame.K_BACKSPACE: "backspace",
    pygame.K_TAB: "tab",
    pygame.K_UP: "up",
    pygame.K_DOWN: "down",
    pygame.K_LEFT: "left",
    pygame.K_RIGHT: "right",
    pygame.K_F12: "f12",
}


def valid_case_no(text: str) -> bool:
    return 1 <= len(text) <= MAX_SCAN and all(ch in SCAN_CHARS for ch in text)


class InputMapper:
    def __init__(self, size, scan_gap_ms: int = 40):
        self.size = size  # (width, height): finger positions come normalised
        self.scan_gap_ms = scan_gap_ms
        self._burst: list[str] = []
        self._last_ms = 0

    def feed(self, event, now_ms: int) -> list[tuple]:
        """The logical inputs of one pygame event (often none)."""
        out: list[tuple] = []
        kind = event.type
        if kind == pygame.QUIT:
            out.append(("quit", None))
        elif kind == pygame.MOUSEBUTTONUP:
            if event.button == 1 and not getattr(event, "touch", False):
                out.append(("tap", tuple(event.pos)))
        elif kind == pygame.FINGERUP:
            width, height = self.size
            out.append(("tap", (int(event.x * width), int(event.y * height))))
        elif kind == pygame.TEXTINPUT:
            text = event.text
            if len(text) != 1:  # an input method's committed text: at once
                out.extend(self._release())
                out.append(("text", text))
            else:
                if self._burst and now_ms - self._last_ms > self.scan_gap_ms:
                    out.extend(self._flush())
                self._burst.append(text)
                self._last_ms = now_ms
        elif kind == pygame.KEYDOWN:
            name = KEY_NAMES.get(event.key)
            if name == "enter" and self._burst:
                out.extend(self._close_burst(now_ms))
            elif name:
                out.extend(self._release())
                out.append(("key", name))
        return out

    def poll(self, now_ms: int) -> list[tuple]:
        """Release held characters once no more came within the gap."""
        if self._burst and now_ms - self._last_ms > self.scan_gap_ms:
            return self._flush()
        return []

    def _release(self) -> list[tuple]:
        if not self._burst:
            return []
        text = "".join(self._burst)
        self._burst = []
        return [("text", text)]

    def _flush(self) -> list[tuple]:
        """A burst that ended without Enter: typing, or a scan cut short."""
        if len(self._burst) >= MIN_SCAN:
            text = "".join(self._burst)
            self._burst = []
            return [("bad_scan", text)]
        return self._release()

    def _close_burst(self, now_ms: int) -> list[tuple]:
        text = "".join(self._burst)
        self._burst = []
        if len(text) < MIN_SCAN or now_ms - self._last_ms > self.scan_gap_ms:
            return [("text", text), ("key", "enter")]  # typed, then Enter
        if not valid_case_no(text):
            return [("bad_scan", text)]
        return [("scan", text)]
