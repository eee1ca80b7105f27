"""The window-PC link: the keypad's end (device/link.py) with a fake UART, and
end to end over a pseudo-terminal with `hcp window` (hcp/window.py)."""

import http.client
import json
import os
import queue
import random
import select
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import pytest

from device.app import KeypadApp
from device.link import MAX_SENDS, WindowLink, attach
from device.store import Store
from hcp.window import NoAnswer, Refused, WindowPort
from protocols import levels
from protocols import serial as proto
from tests.harness.records import seeded
from tests.harness.window_pc import running_window

KEY = b"k" * 32


class FakeUART:
    """Bytes in (the window PC's) and bytes out (the keypad's)."""

    def __init__(self):
        self.inbox = bytearray()
        self.outbox = bytearray()

    def any(self):
        return len(self.inbox)

    def read(self, n):
        data = bytes(self.inbox[:n])
        del self.inbox[:n]
        return data or None

    def write(self, data):
        self.outbox.extend(data)
        return len(data)

    def sent(self):
        """The messages the keypad wrote since the last call."""
        items = proto.FrameDecoder().feed(bytes(self.outbox))
        self.outbox = bytearray()
        assert not any(isinstance(item, proto.FrameError) for item in items)
        return items


def make_app(tmp_path, confirm_ms=1000):
    app = KeypadApp(
        "kp-01", KEY, Store(seeded(tmp_path)), lambda: (1764145800, "ntp"), "b00t", 0, confirm_ms
    )
    app.configure({"window_id": "A01", "tags": [[1, "D101", "服务态度差"]]})
    return app


@pytest.fixture
def link(tmp_path):
    return WindowLink(FakeUART(), make_app(tmp_path), "kp-01")


def cmd(link, t, id, now=0, **fields):
    link.uart.inbox.extend(proto.encode_frame(proto.message(t, id, **fields)))
    link.poll(now)
    return link.uart.sent()


def test_hello_info_status_are_acked_with_their_data(link):
    assert cmd(link, "hello", 1) == [proto.ack(1, device_id="kp-01")]
    (info,) = cmd(link, "info", 2)
    assert info["t"] == "ack" and info["window_id"] == "A01"
    (status,) = cmd(link, "status", 3)
    assert status["state"] == "idle" and status["cases_started"] == 0


def test_signin_and_signout_set_the_staff_on_the_assignment(link):
    assert cmd(link, "signin", 1, name="张敏", staff_no="1001") == [proto.ack(1)]
    assert link.app.screen()[0] == "A01 张敏 1001"
    assert cmd(link, "signout", 2) == [proto.ack(2)]
    assert "staff_name" not in link.app.assignment


def test_start_then_a_key_press_sends_one_result_without_the_level(link):
    assert cmd(link, "start", 1, case_no="C1", service_no="S1") == [proto.ack(1)]
    assert link.app.state == "ask"
    rec = link.app.press(levels.KEY_STARS.index(5), 100)
    link.app.tick(1100)
    link.poll(1100)
    (event,) = link.uart.sent()
    assert event == proto.message("result", 1, record_id=rec["id"], case_no="C1", service_no="S1")
    assert "stars" not in event and "tags" not in event
    assert cmd(link, "status", 2, 1200)[0]["cases_rated"] == 1


def test_an_unacked_event_goes_again_and_then_is_given_up(link):
    cmd(link, "start", 1, case_no="C1", timeout_s=10)
    link.app.tick(10000)
    sends = 0
    for now in range(10000, 20000, 500):
        link.poll(now)
        sends += len(link.uart.sent())
    assert sends == MAX_SENDS and link.events_lost == 1
    assert link.cases_timed_out == 1


def test_an_acked_event_is_not_repeated(link):
    cmd(link, "start", 1, case_no="C1", timeout_s=10)
    link.app.tick(10000)
    link.poll(10000)
    (event,) = link.uart.sent()
    assert event == proto.message("timeout", 1, case_no="C1")
    link.uart.inbox.extend(proto.encode_frame(proto.ack(1)))
    for now in range(10000, 20000, 500):
        link.poll(now)
    assert link.uart.sent() == [] and link.events_lost == 0


def test_a_second_start_while_a_case_is_open_is_refused(link):
    cmd(link, "start", 1, case_no="C1")
    assert cmd(link, "start", 2, case_no="C1") == [proto.ack(2)]  # the same case: open
    (answer,) = cmd(link, "start", 3, case_no="C2")
    assert answer["t"] == "nak" and answer["ref"] == 3 and "busy" in answer["reason"]
    assert link.app.case["case_no"] == "C1" and link.cases_started == 1


@pytest.mark.parametrize("stars", [5, 4, 3, 2, 1])
def test_a_start_during_the_window_is_accepted_for_every_level(link, stars):
    cmd(link, "start", 1, case_no="C1")
    link.app.press(levels.KEY_STARS.index(stars), 100)
    assert cmd(link, "start", 2, 200, case_no="C2") == [proto.ack(2)]
    (status,) = cmd(link, "status", 3, 300)
    assert status["state"] == "window"  # tag screen or not, the same


def test_a_repeated_command_gets_the_same_answer_and_acts_once(link):
    cmd(link, "start", 1, case_no="C1")
    assert cmd(link, "start", 1, case_no="C1") == [proto.ack(1)]
    assert link.cases_started == 1


def test_a_start_while_paused_is_refused(link):
    assert cmd(link, "pause", 1) == [proto.ack(1)]
    assert cmd(link, "start", 2, case_no="C1")[0]["t"] == "nak"
    assert cmd(link, "resume", 3) == [proto.ack(3)]
    assert cmd(link, "start", 4, case_no="C1") == [proto.ack(4)]
    assert cmd(link, "cancel", 5) == [proto.ack(5)] and link.app.state == "idle"


def test_garbage_before_a_frame_is_skipped(link):
    link.uart.inbox.extend(b"\x00\xffnoise\r\n" + proto.encode_frame(proto.message("hello", 9)))
    link.poll(0)
    assert link.uart.sent() == [proto.ack(9, device_id="kp-01")]


def test_a_bad_crc_gets_an_error_event_and_never_an_exception(link):
    frame = bytearray(proto.encode_frame(proto.message("hello", 4)))
    frame[-3:-1] = b"00" if frame[-3:-1] != b"00" else b"11"
    link.uart.inbox.extend(frame)
    link.poll(0)
    (error,) = link.uart.sent()
    assert error["t"] == "error" and error["code"] == "frame" and "checksum" in error["text"]


def test_an_oversize_frame_is_dropped_and_the_next_one_answered(link):
    link.uart.inbox.extend(b"$" + b"x" * 2000 + b"\n")
    link.uart.inbox.extend(proto.encode_frame(proto.message("hello", 5)))
    for _ in range(20):  # READ_MAX bytes a poll
        link.poll(0)
    error, ack = link.uart.sent()
    assert error["t"] == "error" and "too long" in error["text"]
    assert ack == proto.ack(5, device_id="kp-01")
    assert link.decoder.buffered <= proto.MAX_FRAME


def test_an_unknown_command_is_naked(link):
    body = b'{"id":6,"t":"reboot","v":1}'
    link.uart.inbox.extend(b"$" + body + b"*%04X\n" % proto.crc16(body))
    link.poll(0)
    (nak,) = link.uart.sent()
    assert nak["t"] == "nak" and nak["ref"] == 6 and "reboot" in nak["reason"]


def test_an_event_sent_to_the_keypad_is_naked(link):
    (nak,) = cmd(link, "timeout", 7, case_no="C1")
    assert nak["t"] == "nak" and nak["ref"] == 7


def test_a_bad_start_field_is_naked_naming_the_field(link):
    body = b'{"attempt":3,"case_no":"C1","id":8,"t":"start","v":1}'
    link.uart.inbox.extend(b"$" + body + b"*%04X\n" % proto.crc16(body))
    link.poll(0)
    (nak,) = link.uart.sent()
    assert nak["ref"] == 8 and nak["reason"].startswith("start.attempt")
    assert link.app.state == "idle"


def test_a_uart_that_fails_does_not_stop_the_loop(link):
    def broken(*args):
        raise OSError(5)

    link.uart.any = broken
    link.uart.write = broken
    link.poll(0)
    link.app.start_case({"case_no": "C1", "timeout_s": 10}, 0)
    link.app.tick(10000)
    link.poll(10000)
    assert link.write_errors == 1


def test_attach_polls_after_each_step(tmp_path):
    class Dev:
        def __init__(self, app):
            self.app = app
            self.steps = []

        def step(self, now_ms):
            self.steps.append(now_ms)

    dev = Dev(make_app(tmp_path))
    uart = FakeUART()
    link = attach(dev, uart)
    uart.inbox.extend(proto.encode_frame(proto.message("hello", 1)))
    dev.step(5)
    assert dev.steps == [5] and dev.window_link is link
    assert uart.sent() == [proto.ack(1, device_id="kp-01")]
    dev.app = None
    assert attach(dev, uart) is None


# --- end to end: `hcp window` over a pseudo-terminal -------------------------

SPEED = 20  # the keypad's clock runs this much faster than the wall's


class PtyUART:
    """The keypad's UART as the master side of a pseudo-terminal."""

    def __init__(self, fd):
        self.fd = fd
        os.set_blocking(fd, False)

    def any(self):
        readable, _, _ = select.select([self.fd], [], [], 0)
        return 256 if readable else 0

    def read(self, n):
        try:
            return os.read(self.fd, n)
        except BlockingIOError:
            return None

    def write(self, data):
        return os.write(self.fd, data)


class Keypad(threading.Thread):
    """A KeypadApp and its WindowLink in a main loop of their own."""

    def __init__(self, app, uart):
        super().__init__(daemon=True)
        self.app = app
        self.link = WindowLink(uart, app, "kp-01", resend_ms=20000)
        self.presses = queue.Queue()
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def now(self):
        return int((time.monotonic() - self.t0) * 1000 * SPEED)

    def run(self):
        while not self.stop.is_set():
            now = self.now()
            while not self.presses.empty():
                self.app.press(self.presses.get(), now)
            self.app.tick(now)
            self.link.poll(now)
            time.sleep(0.002)


def request(port, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.fixture
def window(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    keypad = Keypad(make_app(tmp_path, confirm_ms=2000), PtyUART(master))
    keypad.pc_tty = os.ttyname(slave)  # the PC's end of the line
    keypad.start()
    try:
        with running_window(os.ttyname(slave)) as http_port:
            yield keypad, http_port
    finally:
        keypad.stop.set()
        keypad.join(timeout=2)
        os.close(master)
        os.close(slave)


def wait_for(predicate, seconds=5):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("stars", [5, 1])  # 1 star shows the tag screen, 5 does not
def test_a_start_over_http_returns_the_record_id_of_the_rating(window, stars):
    keypad, port = window
    assert request(port, "POST", "/signin", {"name": "张敏", "staff_no": "1001"}) == (
        200,
        {"ok": True},
    )
    assert keypad.app.assignment["staff_no"] == "1001"
    answers = []
    case = {"case_no": "C1", "service_no": "S1", "timeout_s": 30, "staff_id": "u7"}
    asking = threading.Thread(target=lambda: answers.append(request(port, "POST", "/start", case)))
    asking.start()
    wait_for(lambda: keypad.app.state == "ask")
    assert keypad.app.case["staff_id"] == "u7"
    keypad.presses.put(levels.KEY_STARS.index(stars))
    asking.join(timeout=10)
    assert answers == [(200, {"case_no": "C1", "result": "rated", "record_id": "kp-01:1"})]
    (rec,) = keypad.app.store.pending(5)
    assert rec["stars"] == stars and rec["case_no"] == "C1" and rec["case_staff_id"] == "u7"
    status, data = request(port, "GET", "/status")
    assert status == 200 and data["cases_started"] == 1 and data["cases_rated"] == 1
    assert data["state"] == "idle" and data["link"]["no_answer"] == 0


def test_garbage_on_the_line_both_ways_leaves_the_link_working(window):
    """Noise on a real pseudo-terminal, into the keypad and into `hcp window`
    (random bytes, a torn frame, an oversize run without a delimiter), then a
    case started over HTTP is rated as usual."""
    keypad, port = window
    rng = random.Random(11)
    noise = bytes(rng.randrange(256) for _ in range(300)) + b"\x7e\x01\x02" + b"A" * 3000
    os.write(keypad.link.uart.fd, noise)  # from the keypad's end: hcp window reads it
    into_keypad = os.open(keypad.pc_tty, os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(into_keypad, noise)  # from the PC's end: the keypad reads it
    finally:
        os.close(into_keypad)
    time.sleep(0.3)
    answers = []
    asking = threading.Thread(
        target=lambda: answers.append(request(port, "POST", "/start", {"case_no": "C9"}))
    )
    asking.start()
    wait_for(lambda: keypad.app.state == "ask")
    keypad.presses.put(levels.KEY_STARS.index(4))
    asking.join(timeout=10)
    assert answers == [(200, {"case_no": "C9", "result": "rated", "record_id": "kp-01:1"})]
    assert request(port, "GET", "/status")[0] == 200


def test_a_case_nobody_rates_returns_timeout(window):
    keypad, port = window
    status, answer = request(port, "POST", "/start", {"case_no": "C2", "timeout_s": 10})
    assert (status, answer) == (200, {"case_no": "C2", "result": "timeout"})
    assert len(keypad.app.store.pending(5)) == 0  # no default rating
    assert request(port, "GET", "/status")[1]["cases_timed_out"] == 1


def test_pause_refuses_a_start_until_resume_and_cancel_answers_cancelled(window):
    keypad, port = window
    assert request(port, "POST", "/pause") == (200, {"ok": True})
    status, answer = request(port, "POST", "/start", {"case_no": "C3"})
    assert status == 409 and "paused" in answer["error"]
    assert request(port, "POST", "/resume") == (200, {"ok": True})
    answers = []
    case = {"case_no": "C4", "timeout_s": 600}
    asking = threading.Thread(target=lambda: answers.append(request(port, "POST", "/start", case)))
    asking.start()
    wait_for(lambda: keypad.app.state == "ask")
    assert request(port, "POST", "/cancel") == (200, {"ok": True})
    asking.join(timeout=10)
    assert answers == [(200, {"case_no": "C4", "result": "cancelled"})]


BAD_REQUESTS = [
    ("/start", b"{not json", "body: not valid JSON"),
    ("/start", b"[" * 2000 + b"]" * 2000, "body: not valid JSON"),  # too deep for json.loads
    ("/start", b"[1]", "body: must be a JSON object"),
    ("/start", b"{}", "start.case_no: missing"),
    (
        "/start",
        b'{"case_no":"C1","attempt":3}',
        "start.attempt: must be an integer 1..2, got 3",
    ),
    (
        "/start",
        b'{"case_no":"C1","stars":5}',
        "start.stars: the rating never goes to the window PC",
    ),
    ("/start", b'{"case_no":"C1","id":5}', "start.id: set by the link, not allowed"),
    ("/signin", b'{"name":"x"}', "signin.staff_no: missing"),
    ("/cancel", b'{"x":1}', "cancel: takes no fields, got x"),
]


def test_bad_requests_are_refused_naming_the_field(window):
    _keypad, port = window
    for path, body, message in BAD_REQUESTS:
        assert request(port, "POST", path, raw=body) == (400, {"error": message})


# --- the window PC's end alone ------------------------------------------------


class LossyPort:
    """A serial port whose far end is a WindowLink, called on each write;
    the writes listed in `drop` (0 = the first) are lost on the way."""

    def __init__(self, link, drop=()):
        self.link = link
        self.drop = set(drop)
        self.writes = 0
        self.now = 0
        self.inbox = queue.Queue()

    def write(self, data):
        n, self.writes = self.writes, self.writes + 1
        if n not in self.drop:
            self.link.uart.inbox.extend(data)
        self.pump()

    def pump(self, ms=0):
        self.now += ms
        self.link.app.tick(self.now)
        self.link.poll(self.now)
        out = bytes(self.link.uart.outbox)
        self.link.uart.outbox = bytearray()
        if out:
            self.inbox.put(out)

    def read(self, n):
        try:
            return self.inbox.get(timeout=0.02)
        except queue.Empty:
            return b""


@pytest.fixture
def lossy(tmp_path):
    ports = []

    def make(drop=()):
        port = LossyPort(WindowLink(FakeUART(), make_app(tmp_path), "kp-01"), drop)
        ports.append(WindowPort(port, reply_timeout=0.1))
        return port, ports[-1]

    yield make
    for window_port in ports:
        window_port.close()


def test_a_command_that_got_no_answer_is_sent_again(lossy):
    port, window_port = lossy(drop=[0])
    assert window_port.command("hello") == proto.ack(1, device_id="kp-01")
    assert window_port.counters["repeats"] == 1 and port.writes == 2


def test_a_lost_ack_does_not_start_the_case_twice(lossy):
    port, window_port = lossy()
    port.link.uart.write = lambda data: None  # the keypad's answers are lost...
    with pytest.raises(NoAnswer):
        window_port.command("start", case_no="C1")
    assert port.link.cases_started == 1 and window_port.counters["no_answer"] == 1
    assert port.link.app.case["case_no"] == "C1"


def test_a_refused_command_raises_with_the_reason(lossy):
    _port, window_port = lossy()
    window_port.command("pause")
    with pytest.raises(Refused, match="paused"):
        window_port.command("start", case_no="C1")


def test_an_event_sent_again_is_taken_once(lossy):
    port, window_port = lossy()
    window_port.command("start", case_no="C1", timeout_s=10)
    port.drop = {port.writes}  # the PC's ack of the timeout event is lost
    port.pump(10000)
    wait_for(lambda: port.writes > 1)
    port.pump(1000)  # the keypad sends it again; the PC acks once more
    wait_for(lambda: port.link._pending is None)
    assert window_port._outcomes == {"C1": proto.message("timeout", 1, case_no="C1")}
    assert port.link.events_sent == 1 and port.link.events_lost == 0
    assert port.writes == 3  # start, the lost ack, the ack of the repeat


# --- the keypad's end under MicroPython ------------------------------------------

LINK_SCRIPT = r"""
from device.app import KeypadApp
from device.link import WindowLink
from device.store import Store
from protocols import serial as proto

class UART:
    def __init__(self):
        self.inbox = bytearray()
        self.outbox = bytearray()
    def any(self):
        return len(self.inbox)
    def read(self, n):
        data = bytes(self.inbox[:n])
        self.inbox = self.inbox[n:]
        return data or None
    def write(self, data):
        self.outbox.extend(data)
        return len(data)

from device.store import seed
seed("data")
app = KeypadApp("kp-01", b"k" * 32, Store("data"), lambda: (1764145800, "ntp"), "b00t", 0, 1000)
app.configure({"window_id": "A01", "tags": [[1, "D101", "x"]]})
uart = UART()
link = WindowLink(uart, app, "kp-01")

def send(now, *frames):
    for frame in frames:
        uart.inbox.extend(frame)
    for _ in range(12):
        link.poll(now)
    out = bytes(uart.outbox)
    uart.outbox = bytearray()
    print(out.decode())

def frame(t, id, **fields):
    return proto.encode_frame(proto.message(t, id, **fields))

bad = bytearray(frame("hello", 2))
bad[-2] = 0x30 if bad[-2] != 0x30 else 0x31
body = b'{"id":4,"t":"reboot","v":1}'
send(0, b"noise\x00\xff", frame("hello", 1), bytes(bad), b"$" + b"y" * 700 + b"\n")
send(0, b"$" + body + b"*" + ("%04X" % proto.crc16(body)).encode() + b"\n")
send(0, frame("signin", 5, name="张敏", staff_no="1001"), frame("start", 6, case_no="C1"))
send(0, frame("start", 6, case_no="C1"), frame("start", 7, case_no="C2"))
app.press(4, 100)
send(100, frame("start", 8, case_no="C3"), frame("status", 9))
app.tick(1100)
send(1100, frame("status", 10))
"""


@pytest.mark.micropython
def test_the_keypad_end_answers_the_same_under_micropython(tmp_path):
    from tests.harness.micropython import run_micropython

    result = run_micropython(LINK_SCRIPT)
    result.check()
    here = subprocess.run(
        [sys.executable, "-c", LINK_SCRIPT],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == here.stdout
    lines = [line for line in result.stdout.splitlines() if line]
    assert '"t":"error"' in lines[1] and "checksum" in lines[1]  # bad CRC
    assert "too long" in lines[2]
    assert '"reason":"t: unknown message type \'reboot\'","ref":4' in result.stdout
    assert '"reason":"busy: case C1 is open","ref":7' in result.stdout
    assert '"record_id":"kp-01:1","t":"result"' in lines[-1]
    assert '"cases_rated":1' in lines[-2] and '"ref":10' in lines[-2]
    assert "stars" not in result.stdout and "D101" not in result.stdout


def test_a_noisy_line_gives_at_most_one_error_event_a_poll(link):
    link.uart.inbox.extend(b"$x\n" * 200)  # 600 bytes: more than one poll reads
    link.poll(0)
    link.poll(1)
    errors = link.uart.sent()
    assert len(errors) == 2 and all(e["t"] == "error" for e in errors)
    assert link.bad_frames == 512 // 3  # every line read is counted


def test_a_failing_port_gives_no_answer_not_a_crash():
    class Broken:
        opened = 0

        def read(self, n):
            raise OSError(5, "gone")

        def write(self, data):
            raise OSError(5, "gone")

        def close(self):
            pass

        def open(self):
            self.opened += 1

    port = Broken()
    window_port = WindowPort(port, reply_timeout=0.02)
    try:
        with pytest.raises(NoAnswer):
            window_port.command("hello")
        assert window_port.counters["port_errors"] >= 3
    finally:
        window_port.close()
    assert port.opened >= 1


def built_keypad(tmp_path, uart=None, **overrides):
    """The firmware built by device.main.build on simulated parts; with `uart`,
    the board has that UART and the settings name it as the window-PC link."""
    from device import config as device_config
    from device.main import build
    from hardware.boards import sim as sim_board
    from simulators.machine import SimMachine
    from simulators.network import SimNetwork

    opened = []

    class BoardWithUART(SimMachine):
        def UART(self, number, baudrate, **pins):  # noqa: N802 - machine.UART's name
            opened.append((number, baudrate, pins))
            return uart

    values = {"device_id": "kp-01", "key": KEY.hex(), "broker_host": "127.0.0.1",
              "broker_port": 1, "data_dir": str(tmp_path / "data"), "board": "sim",
              "timeout_ms": 200}  # fmt: skip
    if uart is not None:
        values["window_uart"] = 1
    values.update(overrides)
    network = SimNetwork()
    network.link_up = False
    machine = BoardWithUART() if uart is not None else SimMachine()
    seeded(values["data_dir"])
    dev = build(machine, network, sim_board, device_config.load(None, values),
                check_filesystem=False)  # fmt: skip
    return dev, opened


def test_a_keypad_built_with_window_uart_polls_its_link_each_pass(tmp_path):
    uart = FakeUART()
    dev, opened = built_keypad(tmp_path, uart)
    assert opened == [(1, 115200, {})] and dev.window_link is not None
    uart.inbox.extend(proto.encode_frame(proto.message("start", 1, case_no="C-1")))
    dev.step(1000)
    assert dev.app.state == "ask"
    (answer,) = uart.sent()
    assert answer["t"] == "ack" and answer["ref"] == 1


def test_a_keypad_without_window_uart_has_no_link(tmp_path):
    dev, opened = built_keypad(tmp_path)
    assert dev.window_link is None and opened == []


def test_the_status_counts_cases_started_and_rated(tmp_path):
    from protocols import messages

    uart = FakeUART()
    dev, _opened = built_keypad(tmp_path, uart)
    uart.inbox.extend(proto.encode_frame(proto.message("start", 1, case_no="C-1")))
    dev.step(1000)
    status = messages.decode(messages.encode(dev.sync.status()))
    assert (status["cases_started"], status["cases_rated"]) == (1, 0)
    dev.app.press(0, 1100)  # the citizen rates
    dev.step(1100 + dev.app.confirm_ms)  # the follow-up window ends: result goes out
    status = messages.decode(messages.encode(dev.sync.status()))
    assert (status["cases_started"], status["cases_rated"]) == (1, 1)


def test_a_wired_keypad_rates_only_started_cases_unless_walk_up_is_allowed(tmp_path):
    uart = FakeUART()
    (tmp_path / "wired").mkdir()
    (tmp_path / "walk-up").mkdir()
    dev, _ = built_keypad(tmp_path / "wired", uart)
    assert dev.app.screen()[-1] == "欢迎光临"
    for key in range(5):
        assert dev.app.press(key, 1000 + key) is None, "no case started: no rating"
    assert len(dev.store) == 0 and dev.app.state == "idle"
    uart.inbox.extend(proto.encode_frame(proto.message("start", 1, case_no="C-9")))
    dev.step(2000)
    assert dev.app.screen()[-1] == "请您评价"
    record = dev.app.press(1, 2100)
    assert record["case_no"] == "C-9" and record["stars"] == 4

    walk_up, _ = built_keypad(tmp_path / "walk-up", FakeUART(), walk_up=True)
    assert walk_up.app.screen()[-1] == "欢迎评价"
    record = walk_up.app.press(1, 1000)
    assert record["stars"] == 4 and "case_no" not in record


def test_a_keypad_without_a_window_pc_rates_walk_up_whatever_the_setting(tmp_path):
    dev, _ = built_keypad(tmp_path, walk_up=False)
    assert dev.app.walk_up is True and dev.app.screen()[-1] == "欢迎评价"
    assert dev.app.press(0, 1000)["stars"] == 5
