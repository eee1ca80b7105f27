"""The technician's scenes, behind a PIN: identity, queue depth, last ack,
broker, config version, and a network test (a TCP connection to the broker,
timed). Reached by F12 or five taps in the top right corner of the start
screen; the citizen's rating in progress is never shown here."""

from __future__ import annotations

import socket
import threading
import time

import pygame

from kiosk import assets as style
from kiosk.scenes import Scene
from kiosk.widgets import Button, grid

NETWORK_TIMEOUT_S = 3


def network_test(host: str, port: int, timeout: float = NETWORK_TIMEOUT_S) -> str:
    """Connect to the broker once: '连接正常 12 ms' or '连接失败：<the error>'."""
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return f"连接失败：{exc.strerror or exc}"[:80]
    return f"连接正常 {(time.perf_counter() - started) * 1000:.0f} ms"


class PinScene(Scene):
    name = "pin"

    def enter(self):
        self.pin = ""
        locked = not self.app.settings.get("technician_pin")
        self.notice = self.t("tech_locked") if locked else None

    def make_buttons(self):
        area = self.body()
        h = self.button_height()
        keypad = pygame.Rect(area.x, area.y + 2 * self.line() + 16, min(area.width, 560), h)
        labels = list("123456789") + [self.t("clear"), "0", "OK"]
        actions = [("digit", c) for c in "123456789"] + [("clr",), ("digit", "0"), ("ok",)]
        cells = grid(keypad, 12, 3, h - 10, 10)
        buttons = [Button(r, lab, a) for r, lab, a in zip(cells, labels, actions, strict=True)]
        buttons.append(Button(self.footer(3)[0], self.t("back"), ("back",)))
        return buttons

    def draw_body(self, surface):
        area = self.body()
        self.app.painter.text(surface, self.t("tech_pin"), (area.x, area.y), "title")
        self.app.painter.text(
            surface, "●" * len(self.pin) or "_", (area.x, area.y + self.line() + 4), "title"
        )

    def act(self, action):
        kind = action[0]
        expected = self.app.settings.get("technician_pin")
        if kind == "digit" and len(self.pin) < 8:
            self.pin += action[1]
        elif kind == "clr":
            self.pin = ""
        elif kind == "ok":
            if expected and self.pin == expected:
                self.app.switch("technician", {})
                return
            self.pin = ""
            self.notice = self.t("tech_locked") if not expected else self.t("tech_pin_bad")
        elif kind == "back":
            self.app.home()

    def on_text(self, text):
        for ch in text:
            if ch.isdigit() and len(self.pin) < 8:
                self.pin += ch

    def on_key(self, name):
        if name == "backspace":
            self.pin = self.pin[:-1]

    def handle(self, inp):
        if inp == ("key", "enter") and self.focus is None:
            self.press(("ok",))
            return
        super().handle(inp)


class TechScene(Scene):
    name = "technician"

    def enter(self):
        self.result = None
        self._pending: list[str] = []  # filled by the test thread, read in update()

    def make_buttons(self):
        footer = self.footer(3)
        return [
            Button(footer[0], self.t("tech_exit"), ("back",)),
            Button(footer[2], self.t("tech_network"), ("network",), "accent"),
        ]

    def lines(self) -> list[str]:
        info = self.app.technician_info()
        return [f"{name}：{value}" for name, value in info]

    def draw_body(self, surface):
        area = self.body()
        paint = self.app.painter
        paint.text(surface, self.t("tech_title"), (area.x, area.y), "title")
        y = area.y + self.line() + 10
        for line in self.lines():
            y += paint.text(surface, line, (area.x, y), "body", style.INK, width=area.width)
        if self.result:
            paint.text(surface, self.t("tech_network") + "：" + self.result, (area.x, y + 10),
                       "body", style.ACCENT)  # fmt: skip

    def act(self, action):
        if action[0] == "network":
            self.result = "…"
            host, port = self.app.settings["broker_host"], self.app.settings["broker_port"]
            pending = self._pending
            threading.Thread(
                target=lambda: pending.append(network_test(host, port)), daemon=True
            ).start()
        elif action[0] == "back":
            self.app.home()

    def update(self, dt):
        if self._pending:
            self.result = self._pending.pop()
