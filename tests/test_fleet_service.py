"""Opening hours and the staff roster on the keypad (issue 11; device/service.py,
docs/protocol.md §3.4 and §4).

The desired config carries `hours` and `roster`; the keypad shows the roster's
name for a signed-in 工号 and refuses one not on it; outside the hours it shows
"非服务时间", refuses the window PC's `start` and ignores walk-up level keys,
while a case already started and a rating in its follow-up window run to
their end. The same script runs on CPython and under the real MicroPython
interpreter and must print the same.
"""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device.app import KeypadApp
from device.link import WindowLink
from device.service import CLOSED_SCREEN, Service
from device.store import Store
from protocols import serial as proto
from tests.harness.records import seeded

ROOT = Path(__file__).resolve().parent.parent
KEY = b"k" * 32
HOURS = [[1, 5, "08:30", "12:00"], [1, 5, "13:30", "17:30"]]
ROSTER = [["1001", "张敏"], ["1002", "李强"]]


def utc(*local):
    """Seconds since 1970 of a local time in the hall (UTC+8)."""
    moment = dt.datetime(*local, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return int(moment.timestamp())


MONDAY = (2026, 11, 23)  # a Monday
SATURDAY = (2026, 11, 28)


@pytest.mark.parametrize(
    "local, closed",
    [
        ((*MONDAY, 8, 29), True),
        ((*MONDAY, 8, 30), False),
        ((*MONDAY, 11, 59), False),
        ((*MONDAY, 12, 0), True),  # the closing minute is closed
        ((*MONDAY, 13, 30), False),
        ((*MONDAY, 17, 29, 59), False),
        ((*MONDAY, 17, 30), True),
        ((2026, 11, 27, 9, 0), False),  # Friday
        ((*SATURDAY, 9, 0), True),
        ((2026, 11, 29, 9, 0), True),  # Sunday
    ],
)
def test_the_hours_are_the_halls_local_time(local, closed):
    assert Service({"hours": HOURS}).closed(utc(*local), "ntp") is closed


def test_an_unset_clock_or_no_hours_never_closes():
    saturday = utc(*SATURDAY, 9, 0)
    assert Service({"hours": HOURS}).closed(saturday, "unset") is False
    assert Service({"hours": HOURS}).closed(86400 * 3, "rtc") is False  # 1970: never set
    assert Service({"hours": []}).closed(saturday, "ntp") is False
    assert Service({"roster": ROSTER}).closed(saturday, "ntp") is False


def test_rows_that_break_the_rules_are_skipped():
    bad = [
        "08:30",
        [1, 5, "08:30"],
        [0, 5, "08:30", "12:00"],
        [1, 8, "08:30", "12:00"],
        [5, 1, "08:30", "12:00"],
        [1, 5, "12:00", "08:30"],
        [1, 5, "8:30", "12:00"],
        [1, 5, "08:61", "12:00"],
        [1, 5, "08:30", "24:01"],
        [True, 5, "08:30", "12:00"],
    ]
    service = Service({"hours": [*bad, [6, 7, "09:00", "24:00"]], "roster": [
        ["1001", "张敏"], ["1002"], ["", "x"], ["1003", ""], [1004, "王"], ["1" * 65, "x"],
    ]})  # fmt: skip
    assert service.hours == [[6, 7, "09:00", "24:00"]]
    assert service.roster == "\n1001\t张敏\n"
    assert Service({"hours": bad}).hours == []  # all bad: no hours, open
    assert Service({"hours": "1-5 08:30-12:00", "roster": "1001"}).roster is None
    assert Service({"roster": [["10\t01", "x"], ["1002", "a\nb"]]}).roster == "\n"


def test_the_roster_gives_a_name_only_for_a_whole_staff_no():
    service = Service({"roster": [["1001", "张敏"], ["10011", "李强"], ["2", "王芳"]]})
    assert [service.name(n) for n in ("1001", "10011", "2", "100", "001", "1", "")] == [
        "张敏", "李强", "王芳", None, None, None, None,
    ]  # fmt: skip
    assert Service({"roster": []}).name("1001") is None  # an empty roster: nobody
    assert Service({"hours": []}).name("1001") is None


def app_at(tmp_path, clock, walk_up=False, config=None):
    app = KeypadApp("kp-01", KEY, Store(seeded(tmp_path)), lambda: (clock[0], "ntp"), "b00t", 0,
                    1000, walk_up=walk_up)  # fmt: skip
    app.configure(config or {"window_id": "A01", "hours": HOURS, "roster": ROSTER})
    return app


def answers(link, now, *messages):
    for message in messages:
        link.uart.inbox.extend(proto.encode_frame(message))
    link.poll(now)
    out = proto.FrameDecoder().feed(bytes(link.uart.outbox))
    link.uart.outbox = bytearray()
    return out


class UART:
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


def test_signin_takes_the_rosters_name_and_refuses_an_unknown_staff_no(tmp_path):
    clock = [utc(*MONDAY, 9, 0)]
    app = app_at(tmp_path, clock)
    link = WindowLink(UART(), app, "kp-01")
    signin = proto.message("signin", 1, name="随便", staff_no="1002")
    assert answers(link, 0, signin) == [proto.ack(1)]
    assert app.assignment["staff_name"] == "李强"  # the roster's, not the PC's
    assert app.screen() == ("A01 李强 1002", "欢迎光临")
    stranger = proto.message("signin", 2, name="张敏", staff_no="9999")
    assert answers(link, 0, stranger) == [proto.nak(2, "unknown staff_no 9999")]
    assert app.assignment["staff_no"] == "1002"  # nothing changed
    long_no = "8" * 32  # the longest a signin carries (protocols/serial.py)
    assert answers(link, 0, proto.message("signin", 3, name="x", staff_no=long_no)) == [
        proto.nak(3, "unknown staff_no " + long_no)
    ]


def test_without_a_roster_any_staff_no_signs_in(tmp_path):
    app = app_at(tmp_path, [utc(*MONDAY, 9, 0)], config={"window_id": "A01", "hours": HOURS})
    link = WindowLink(UART(), app, "kp-01")
    assert answers(link, 0, proto.message("signin", 1, name="张敏", staff_no="7")) == [proto.ack(1)]
    assert app.assignment["staff_name"] == "张敏"


def test_a_new_config_without_hours_or_roster_drops_them(tmp_path):
    clock = [utc(*SATURDAY, 9, 0)]
    app = app_at(tmp_path, clock)
    assert app.closed() is True
    app.configure({"window_id": "A01"})
    assert app.service is None and app.closed() is False
    assert app.screen() == ("A01", "欢迎光临")


def test_outside_the_hours_a_start_is_refused_and_a_case_open_runs_to_its_end(tmp_path):
    clock = [utc(*MONDAY, 11, 59, 50)]
    app = app_at(tmp_path, clock)
    link = WindowLink(UART(), app, "kp-01")
    assert answers(link, 0, proto.message("start", 1, case_no="C1")) == [proto.ack(1)]
    clock[0] = utc(*MONDAY, 12, 0, 5)  # closing time passes while the citizen decides
    assert app.screen()[1] == "请您评价"  # the open case, not the closed screen
    record = app.press(0, 100)
    assert record["case_no"] == "C1" and record["stars"] == 5
    app.tick(1100)
    refused, result = answers(link, 1100, proto.message("start", 2, case_no="C2"))
    assert refused == proto.nak(2, "closed: outside service hours")
    assert result["t"] == "result" and result["case_no"] == "C1"
    assert app.screen() == CLOSED_SCREEN == ("非服务时间", "暂停评价")
    clock[0] = utc(*MONDAY, 13, 30)
    reopened = answers(link, 1200, proto.ack(result["id"]), proto.message("start", 3, case_no="C3"))
    assert reopened == [proto.ack(3)]


def test_outside_the_hours_a_walk_up_press_makes_no_rating(tmp_path):
    clock = [utc(*SATURDAY, 10, 0)]
    app = app_at(tmp_path, clock, walk_up=True)
    assert app.screen() == CLOSED_SCREEN
    assert app.press(0, 10) is None and len(app.store) == 0 and app.state == "idle"
    clock[0] = utc(*MONDAY, 10, 0)
    assert app.press(0, 20)["stars"] == 5 and len(app.store) == 1


def test_a_rating_in_its_window_at_closing_time_is_kept(tmp_path):
    clock = [utc(*MONDAY, 17, 29, 59)]
    app = app_at(tmp_path, clock, walk_up=True)
    app.press(4, 0)  # 1 star, no tags configured: written at once
    clock[0] = utc(*MONDAY, 17, 30, 1)
    assert app.screen() == ("感谢您的评价",)
    app.tick(1000)
    assert len(app.store) == 1 and app.events[-1][0] == "result"
    assert app.screen() == CLOSED_SCREEN


SCRIPT = r"""
from device.app import KeypadApp
from device.link import WindowLink
from device.store import Store, seed
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

seed("data")
clock = [OPEN_AT]
app = KeypadApp("kp-01", b"k" * 32, Store("data"), lambda: (clock[0], "ntp"), "b00t", 0, 1000)
app.configure({"window_id": "A01", "hours": HOURS, "roster": ROSTER})
uart = UART()
link = WindowLink(uart, app, "kp-01")

def send(now, *messages):
    for message in messages:
        uart.inbox.extend(proto.encode_frame(message))
    link.poll(now)
    out = bytes(uart.outbox)
    uart.outbox = bytearray()
    print(out.decode().strip())

send(0, proto.message("signin", 1, name="x", staff_no="1001"))
print(" | ".join(app.screen()))
send(0, proto.message("signin", 2, name="x", staff_no="42"))
send(0, proto.message("start", 3, case_no="C1"))
clock[0] = CLOSED_AT
print(" | ".join(app.screen()))
print(app.press(1, 10)["case_no"])
app.tick(1010)
send(1010, proto.message("start", 4, case_no="C2"))
print(" | ".join(app.screen()), app.closed(), len(app.store))
"""


def script():
    return (
        SCRIPT.replace("OPEN_AT", str(utc(*MONDAY, 11, 59)))
        .replace("CLOSED_AT", str(utc(*MONDAY, 12, 0)))
        .replace("HOURS", repr(HOURS))
        .replace("ROSTER", repr(ROSTER))
    )


@pytest.mark.micropython
def test_hours_and_roster_answer_the_same_under_micropython(tmp_path):
    from tests.harness.micropython import run_micropython

    result = run_micropython(script())
    result.check()
    here = subprocess.run(
        [sys.executable, "-c", script()],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == here.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == proto.encode_frame(proto.ack(1)).decode().strip()
    assert lines[1] == "A01 张敏 1001 | 欢迎评价"  # the roster's name
    assert lines[2] == proto.encode_frame(proto.nak(2, "unknown staff_no 42")).decode().strip()
    assert lines[3] == proto.encode_frame(proto.ack(3)).decode().strip()
    assert lines[4] == "A01 张敏 1001 | 请您评价"  # closed, but the case C1 is open
    assert lines[5] == "C1"  # rated after closing time: kept
    nak = proto.nak(4, "closed: outside service hours")
    assert lines[6] == proto.encode_frame(nak).decode().strip()
    assert '"case_no":"C1"' in lines[7] and '"t":"result"' in lines[7]
    assert lines[8] == "非服务时间 | 暂停评价 True 1"
