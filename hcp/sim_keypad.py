"""`hcp sim keypad`: one simulated window keypad to try by hand.

    hcp sim keypad --gui

starts what `hcp demo` starts (a broker, the collector with its web UI, in
the work folder .hcp-sim), provisions one keypad with the demo's window,
staff and tags, builds its display font (tools/fontgen.py) and runs the
firmware (simulators.keypad.SimKeypad) with:

- its display, drawn by the firmware itself (device/display.py) and shown
  scaled up in a pygame window, with the five level keys to click (or keys
  1-5 on the keyboard);
- its window-PC serial link on a pseudo-terminal whose path it prints, so
  `hcp window --port /dev/pts/N` can start a case over HTTP.

With --mqtt-port (and --device-id, --key-hex) it joins a broker that runs
already, for a device its collector knows. SDL_VIDEODRIVER=dummy (or
--headless) runs the window without a screen, for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import threading
import time
from pathlib import Path

KEY_LABELS = ("非常满意", "满意", "基本满意", "不满意", "非常不满意")  # key index 0..4
KEY_COLOURS = ((46, 160, 67), (110, 170, 60), (200, 170, 40), (220, 120, 40), (200, 50, 50))
DEVICE_ID = "kp-sim-01"
WINDOW = {"window_id": "A01", "staff_name": "张敏", "staff_no": "1001"}
OLED = (120, 220, 255)  # a lit pixel on the simulated OLED
PAD = 16
KEY_HEIGHT = 64


def register(runs) -> None:
    """Add `keypad` to the runs of `hcp sim`."""
    p = runs.add_parser(
        "keypad", help="one simulated keypad: its display, keys and window-PC serial link"
    )
    p.add_argument("--gui", action="store_true", help="a window with the display and the keys")
    p.add_argument("--headless", action="store_true", help="the window without a screen (tests)")
    p.add_argument("--workdir", default=".hcp-sim", help="state (default .hcp-sim)")
    p.add_argument(
        "--broker",
        choices=["mosquitto", "amqtt"],
        default=None,
        help="the broker to start (default: mosquitto where installed, else amqtt)",
    )
    p.add_argument("--mqtt-host", default="127.0.0.1", help="with --mqtt-port: a running broker")
    p.add_argument(
        "--mqtt-port",
        type=int,
        default=None,
        help="join this broker instead of starting one (needs --device-id, --key-hex)",
    )
    p.add_argument("--device-id", default=None, help=f"default {DEVICE_ID}")
    p.add_argument("--key-hex", default=None, help="the device's key (64 hex digits)")
    p.add_argument("--font", default=None, help="CJK font for the display's bitmap font")
    p.add_argument("--roster", action="append", default=[], help="more texts for the font")
    p.add_argument("--frames", default=None, help="save every changed frame here as PNG")
    p.add_argument("--scale", type=int, default=4, help="display pixels per screen pixel")
    p.add_argument(
        "--confirm-ms",
        type=int,
        default=4000,
        help="the follow-up window after a key press (tag screen, thank-you)",
    )
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    p.set_defaults(handler=run)


class Session:
    """The keypad, its pty and (unless joining a broker) the stack it talks to."""

    def __init__(self, args):
        from hcp.demo import DEMO_TAGS, demo_password, publish_configs
        from hcp.stack import Device, LocalStack
        from simulators.keypad import SimKeypad
        from simulators.uart import PtyUART
        from tools import fontgen

        self.workdir = Path(args.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stack = None
        self.web_url = self.admin_password = None
        self.uart = self.keypad = None
        try:
            if args.mqtt_port:
                if not (args.device_id and args.key_hex):
                    raise SystemExit("hcp sim keypad: --mqtt-port needs --device-id and --key-hex")
                host, port = args.mqtt_host, args.mqtt_port
                device_id, key_hex = args.device_id, args.key_hex
                roster = {}
            else:
                device_id, key_hex = self._device(args.device_id)
                self.stack = LocalStack(
                    self.workdir, args.broker, devices=[Device(device_id, key_hex, "A01")], web=True
                ).start()
                host, port = self.stack.broker.host, self.stack.broker.port
                self.web_url = self.stack.web_url
                self.admin_password = demo_password(self.workdir, self.stack.engine)
                publish_configs(
                    host, port, [{"device_id": device_id, "key_hex": key_hex, **WINDOW}]
                )
                roster = {**WINDOW, "tags": DEMO_TAGS["tags"]}
            texts = fontgen.firmware_texts() + fontgen.roster_texts(roster)
            texts += [device_id]
            for path in args.roster:
                texts += fontgen.read_roster(path)
            data, _, self.missing = fontgen.build(texts, args.font)
            self.font_file = self.workdir / "font.bin"
            self.font_file.write_bytes(data)
            self.uart = PtyUART()
            self.keypad = SimKeypad(
                device_id,
                key_hex,
                host,
                port,
                str(self.workdir / device_id),
                display=True,
                frames_dir=args.frames,
                font_file=str(self.font_file),
                uart=self.uart,
                confirm_ms=args.confirm_ms,
            ).start()
        except BaseException:
            self.close()
            raise
        self.device_id = device_id
        self.display = self.keypad.display

    def _device(self, wanted):
        path = self.workdir / "device.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        if not known or (wanted and known["device_id"] != wanted):
            known = {"device_id": wanted or DEVICE_ID, "key_hex": secrets.token_hex(32)}
            path.write_text(json.dumps(known))
            path.chmod(0o600)
        return known["device_id"], known["key_hex"]

    @property
    def port(self) -> str:
        return self.uart.path

    def press(self, index: int) -> threading.Thread:
        """Press key `index` (0 = 非常满意) as a finger does, without blocking."""
        thread = threading.Thread(target=self.keypad.press_key, args=(index,), daemon=True)
        thread.start()
        return thread

    def state(self) -> dict:
        def look(device):
            return {
                "state": device.app.state if device.app else device.mode,
                "pending": len(device.store) if device.store is not None else 0,
                "online": bool(device.client and device.client.connected),
            }

        return self.keypad.call(look)

    def close(self) -> None:
        if self.keypad is not None:
            self.keypad.stop()
        if self.uart is not None:
            self.uart.close()
        if self.stack is not None:
            self.stack.stop()


class KeypadWindow:
    """The pygame window: the display scaled up and five keys. handle() takes
    pygame events (mouse clicks on a key, keys 1-5, quit), draw() paints."""

    def __init__(self, session: Session, scale: int = 4):
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame
        import pygame.freetype

        from tools import fontgen

        self.pg = pygame
        self.session = session
        self.scale = scale
        pygame.display.init()  # no pygame.init(): the keypad has no sound card to open
        pygame.freetype.init()
        display = session.display
        self.screen_rect = pygame.Rect(PAD, PAD + 28, display.width * scale, display.height * scale)
        width = max(self.screen_rect.width + 2 * PAD, 5 * 112 + 6 * 8)
        self.screen_rect.centerx = width // 2
        height = self.screen_rect.bottom + PAD + KEY_HEIGHT + PAD + 24
        self.surface = pygame.display.set_mode((width, height))
        pygame.display.set_caption(f"hcp 模拟评价器 {session.device_id}")
        self.font = pygame.freetype.Font(fontgen.find_font(), 16)
        gap = 8
        key_width = (width - 6 * gap) // 5
        top = self.screen_rect.bottom + PAD
        self.key_rects = [
            pygame.Rect(gap + i * (key_width + gap), top, key_width, KEY_HEIGHT) for i in range(5)
        ]
        self.running = True
        self.presses = 0
        self._frame = None
        self._image = None
        self._lit_until = [0.0] * 5

    def key_at(self, pos) -> int | None:
        for i, rect in enumerate(self.key_rects):
            if rect.collidepoint(pos):
                return i
        return None

    def handle(self, event) -> None:
        pg = self.pg
        index = None
        if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key == pg.K_ESCAPE):
            self.running = False
        elif event.type == pg.MOUSEBUTTONDOWN and event.button == 1:
            index = self.key_at(event.pos)
        elif event.type == pg.KEYDOWN and pg.K_1 <= event.key <= pg.K_5:
            index = event.key - pg.K_1
        if index is not None:
            self.presses += 1
            self._lit_until[index] = time.monotonic() + 0.2
            self.session.press(index)

    def _display_image(self):
        display = self.session.display
        frame = display.frame
        if frame != self._frame:
            pixels = bytearray()
            for row in display.rows(frame, 1):
                for value in row:
                    pixels += bytes(OLED) if value else b"\x00\x00\x00"
            image = self.pg.image.frombytes(bytes(pixels), (display.width, display.height), "RGB")
            self._image = self.pg.transform.scale(image, self.screen_rect.size)
            self._frame = frame
        return self._image

    def draw(self) -> None:
        pg, surface = self.pg, self.surface
        surface.fill((32, 36, 40))
        self.font.render_to(
            surface, (PAD, PAD), f"{self.session.device_id}   窗口PC串口 {self.session.port}",
            (220, 220, 220),
        )  # fmt: skip
        pg.draw.rect(surface, (90, 90, 90), self.screen_rect.inflate(8, 8), border_radius=4)
        surface.blit(self._display_image(), self.screen_rect)
        now = time.monotonic()
        for i, rect in enumerate(self.key_rects):
            colour = KEY_COLOURS[i]
            if now < self._lit_until[i]:
                colour = tuple(min(255, c + 60) for c in colour)
            pg.draw.rect(surface, colour, rect, border_radius=8)
            label = f"{i + 1} {KEY_LABELS[i]}"
            bounds = self.font.get_rect(label)
            bounds.center = rect.center
            self.font.render_to(surface, bounds, label, (255, 255, 255))
        info = self.session.state()
        line = "状态 {state}   待发 {pending}   {net}".format(
            state=info["state"], pending=info["pending"],
            net="已连接平台" if info["online"] else "未连接平台",
        )  # fmt: skip
        self.font.render_to(surface, (PAD, self.key_rects[0].bottom + 8), line, (200, 200, 200))
        pg.display.flip()

    def step(self) -> None:
        """One frame: take the events, paint."""
        for event in self.pg.event.get():
            self.handle(event)
        self.draw()

    def close(self) -> None:
        self.pg.display.quit()


def _print_start(session: Session) -> None:
    print(f"hcp 模拟评价器 / simulated keypad {session.device_id}")
    print(f"  窗口PC串口 window-PC serial port: {session.port}")
    print(f"    hcp window --port {session.port}")
    if session.web_url:
        print(f"  网页 web: {session.web_url}   (admin / {session.admin_password})")
    if session.missing:
        print("  字库缺字 not in the font: " + "".join(session.missing))
    print("  按键 keys: 1-5 (非常满意 .. 非常不满意); Esc / Ctrl-C 停止 to stop", flush=True)


def run(args: argparse.Namespace) -> int:
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    session = Session(args)
    window = None
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        _print_start(session)
        if args.gui:
            window = KeypadWindow(session, args.scale)
            clock = window.pg.time.Clock()
        shown = None
        while deadline is None or time.monotonic() < deadline:
            if window is not None:
                window.step()
                if not window.running:
                    break
                clock.tick(30)
            else:
                lines = session.display and session.keypad.call(lambda d: d.screen())
                if lines != shown:
                    print("  屏幕 screen: " + " / ".join(lines), flush=True)
                    shown = lines
                time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        if window is not None:
            window.close()
        session.close()
    return 0
