"""`hcp sim keypad --gui`, headless (SDL_VIDEODRIVER=dummy), end to end: the
window's business system starts a case through `hcp window`'s HTTP API on the
keypad's pseudo-terminal, a citizen clicks a key in the pygame window (a real
MOUSEBUTTONDOWN event), and the collector stores the rating with its case.
Real broker, real collector (ingest on SQLite), the firmware itself; on
Mosquitto with access control on (the keypad logs in with its id and derived
password), on amqtt open."""

import http.client
import json
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from hcp.cli import build_parser
from sync_server import db
from tests.harness.broker import assert_access_control
from tests.harness.collector import provision, running_ingest
from tests.harness.window_pc import running_window

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def broker(secured_broker):
    """Mosquitto locked down as in production, amqtt open (secured_broker)."""
    return secured_broker


@pytest.fixture
def collector(broker, tmp_path):
    with running_ingest(broker, tmp_path, "collector-gui-test") as service:
        yield service.ingestor.engine


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                 headers={"Content-Type": "application/json"})  # fmt: skip
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.fixture
def gui(broker, collector, tmp_path, monkeypatch):
    """The keypad window as `hcp sim keypad --gui --headless` opens it, joined
    to the test's broker for a device the collector knows."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    from hcp import sim_keypad

    key_hex = secrets.token_hex(32)
    provision(broker, collector, "kp-gui-01", key_hex)
    assert_access_control(broker, ("kp-gui-01", key_hex))
    args = build_parser().parse_args(
        ["sim", "keypad", "--gui", "--headless", "--workdir", str(tmp_path / "sim"),
         "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
         "--device-id", "kp-gui-01", "--key-hex", key_hex, "--confirm-ms", "1500",
         "--frames", str(tmp_path / "frames")]
    )  # fmt: skip
    assert args.handler is sim_keypad.run
    session = sim_keypad.Session(args)
    window = sim_keypad.KeypadWindow(session, args.scale)
    yield session, window
    window.close()
    session.close()
    assert session.keypad.errors == []


@pytest.fixture
def window_pc(gui):
    """`hcp window --port /dev/pts/N` on the keypad's pseudo-terminal."""
    session, _ = gui
    with running_window(session.port, extra_wait=5) as http_port:
        yield http_port


def pump(window, until, seconds=20, what="condition"):
    """Run the window's frames (events, painting) until `until()` holds."""
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        window.step()
        time.sleep(0.01)


def test_a_case_started_over_http_and_a_clicked_key_reach_the_collector(
    gui, window_pc, collector, tmp_path
):
    import pygame

    session, window = gui
    answers = []
    case = {"case_no": "GA-2026-0001", "service_no": "S-17", "timeout_s": 60}
    asking = threading.Thread(
        target=lambda: answers.append(request(window_pc, "POST", "/start", case))
    )
    asking.start()
    pump(window, lambda: session.state()["state"] == "ask", what="the keypad to ask")
    pump(window, lambda: window._frame == session.display.frame, what="the 请您评价 frame")
    # a citizen clicks 满意 (key index 1, 4 stars) in the window
    click = window.key_rects[1].center
    assert window.key_at(click) == 1
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=click, button=1))
    pump(window, lambda: not asking.is_alive(), what="the answer to /start")
    assert window.presses == 1
    assert answers == [
        (200, {"case_no": "GA-2026-0001", "result": "rated", "record_id": "kp-gui-01:1"})
    ]  # the level is not in the answer: staff never learn it

    def stored():
        with collector.connect() as conn:
            return conn.execute(
                select(db.evaluations.c.id, db.evaluations.c.stars, db.evaluations.c.case_no)
            ).all()

    pump(window, lambda: stored(), what="the rating in the collector")
    assert stored() == [("kp-gui-01:1", 4, "GA-2026-0001")]
    # the frames the firmware drew were saved as PNG: idle, asking, thank-you at least
    frames = sorted((tmp_path / "frames").glob("frame-*.png"))
    assert len(frames) >= 3
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in frames)


def test_keys_1_to_5_on_the_keyboard_press_the_keypad_keys(gui):
    import pygame

    session, window = gui
    pressed = []
    session.press = lambda index: pressed.append(index)
    for key in (pygame.K_1, pygame.K_5, pygame.K_6):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))
    window.step()
    assert pressed == [0, 4]  # 6 is no key
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(1, 1), button=1))
    window.step()
    assert pressed == [0, 4]  # a click beside the keys presses nothing


def test_the_window_shows_the_firmware_frame_scaled_up(gui):
    session, window = gui
    pump(window, lambda: session.display.shown > 0 and window._frame == session.display.frame,
         what="the first frame")  # fmt: skip
    surface = window.surface
    rect = window.screen_rect
    display = session.display
    for y in range(0, display.height, 3):
        for x in range(0, display.width, 3):
            colour = surface.get_at((rect.x + x * 4 + 1, rect.y + y * 4 + 1))[:3]
            assert (colour != (0, 0, 0)) == display.lit(x, y), (x, y)
