"""The keypad's state machine: ratings only from key presses, privacy at the window."""

import pytest

from device import config as device_config
from device.app import CONFIRM_MS, MAX_EVENTS, KeypadApp
from device.store import Store
from protocols import levels, record, serial, sign
from tests.harness.records import seeded

KEY = b"k" * 32
CONFIG = {
    "window_id": "A01",
    "staff_name": "张敏",
    "staff_no": "1001",
    "content_version": "demo-1",
    "tags": [[2, "D201", "等候时间长"], [1, "D101", "服务态度差"], [1, "D102", "多次跑动"]],
}
WINDOW = CONFIRM_MS  # the follow-up window after every level key press


@pytest.fixture
def app(tmp_path):
    keypad = KeypadApp("kp-01", KEY, Store(seeded(tmp_path)), lambda: (1764145800, "ntp"), "b00t")
    keypad.configure(CONFIG)
    return keypad


def press_stars(app, stars, now):
    return app.press(levels.KEY_STARS.index(stars), now)


def test_the_default_window_is_the_device_setting():
    assert device_config.DEFAULTS["confirm_ms"] == CONFIRM_MS == 10000


@pytest.mark.parametrize("bad", [0, -1, 600001, 3000.0, None])
def test_a_window_that_ticks_cannot_time_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="confirm_ms"):
        KeypadApp("kp-01", KEY, Store(seeded(tmp_path)), lambda: (0, "unset"), "b", 0, bad)


@pytest.mark.parametrize("stars", [5, 4, 3])
def test_a_good_rating_is_signed_stored_and_valid(app, stars):
    rec = press_stars(app, stars, 1000)
    assert rec["stars"] == stars and rec["seq"] == 1 and rec["id"] == "kp-01:1"
    assert rec["window_id"] == "A01" and rec["rated_at"] == "2025-11-26T08:30:00Z"
    assert rec["attempt"] == 1 and rec["uptime_ms"] == 1000
    assert "content_version" not in rec  # no tag set was shown for this level
    assert record.validate(rec) and sign.verify(rec, KEY)
    assert [r["id"] for r in app.store.pending(5)] == ["kp-01:1"]


def test_a_bad_rating_asks_for_a_reason_offered_for_that_level(app):
    assert press_stars(app, 1, 1000) is None
    assert app.screen() == ("请选不满意原因", "1 服务态度差", "2 多次跑动")
    rec = app.press(1, 1500)
    assert rec["stars"] == 1 and rec["tags"] == ["D102"] and rec["content_version"] == "demo-1"
    assert record.validate(rec) and sign.verify(rec, KEY)
    assert app.screen() == ("感谢您的评价",)


def test_a_walked_away_bad_rating_is_kept_without_an_invented_reason(app):
    press_stars(app, 2, 1000)
    app.tick(1000 + app.tags_ms - 1)
    assert len(app.store) == 0
    app.tick(1000 + app.tags_ms)
    (rec,) = app.store.pending(5)
    assert rec["stars"] == 2 and "tags" not in rec and rec["content_version"] == "demo-1"
    assert record.validate(rec) and sign.verify(rec, KEY)


def test_the_tag_screen_closes_before_the_window_ends(app):
    assert app.tags_ms == WINDOW - 1000
    press_stars(app, 1, 0)
    assert app.tags_left_ms(WINDOW - 1500) == 500
    app.tick(WINDOW - 1000)
    assert app.state == "thanks" and app.tags_left_ms(WINDOW - 999) == 0
    assert app.press(0, WINDOW - 500) is None  # too late for a tag: ignored
    assert "tags" not in app.store.pending(1)[0]


def test_the_thank_you_is_the_same_for_every_level(app):
    screens = set()
    now = 0
    for stars in (5, 4, 3, 2, 1):
        now += 20000
        press_stars(app, stars, now)
        if app.state == "tags":
            app.press(0, now)
        screens.add(app.screen())
        app.tick(now + WINDOW)
        assert app.state == "idle"
    assert screens == {("感谢您的评价",)}


def test_repeat_presses_during_the_window_are_ignored(app):
    press_stars(app, 5, 1000)
    for key in range(5):
        assert app.press(key, 1100 + key) is None
    assert len(app.store) == 1
    assert app.press(0, 1000 + WINDOW - 1) is None
    app.tick(1000 + WINDOW)
    assert app.state == "idle"
    press_stars(app, 4, 1000 + WINDOW + 100)
    assert len(app.store) == 2


def test_a_press_just_when_the_window_ends_is_a_new_rating(app):
    press_stars(app, 5, 1000)
    rec = press_stars(app, 3, 1000 + WINDOW)  # the window ends first, then the key counts
    assert rec["seq"] == 2 and [kind for kind, _ in app.events] == ["result"]


def test_a_case_that_times_out_makes_no_rating(app):
    app.start_case({"case_no": "LZ2026112600001", "timeout_s": 30}, 0)
    assert app.screen() == ("A01 张敏 1001", "请您评价")
    app.tick(29999)
    assert app.state == "ask"
    app.tick(30000)
    assert app.state == "idle" and len(app.store) == 0
    assert app.events == [("timeout", {"case_no": "LZ2026112600001"})]


def test_a_case_rating_carries_the_case_and_the_event_has_no_level(app):
    app.start_case({"case_no": "LZ1", "service_no": "2", "item_code": "11370305MB"}, 0)
    rec = press_stars(app, 4, 500)
    assert (rec["case_no"], rec["service_no"], rec["item_code"]) == ("LZ1", "2", "11370305MB")
    assert app.events == []  # nothing before the window ends
    app.tick(500 + WINDOW - 1)
    assert app.events == []
    app.tick(500 + WINDOW)
    assert app.events == [("result", {"record_id": "kp-01:1", "case_no": "LZ1", "service_no": "2"})]
    serial.validate(serial.message("result", 1, **app.events[0][1]))


START = {
    "v": 1,
    "t": "start",
    "id": 7,
    "case_no": "LZ2026112600042",
    "service_no": "1",
    "staff_id": "GH-0042",
    "org_id": "11370305MB0000000X",
    "handled_at": "2026-11-26T08:10:00Z",
    "attempt": 2,
    "follows": "kp-01:40",
}


def test_the_case_fields_of_a_start_land_in_the_record(app):
    case = {k: v for k, v in serial.validate(dict(START)).items() if k not in ("v", "t", "id")}
    assert app.start_case(case, 0) is True
    press_stars(app, 2, 1000)
    app.press(0, 2000)
    (rec,) = app.store.pending(1)
    assert rec["case_no"] == "LZ2026112600042" and rec["service_no"] == "1"
    assert rec["case_staff_id"] == "GH-0042" and rec["case_org_id"] == "11370305MB0000000X"
    assert rec["handled_at"] == "2026-11-26T08:10:00Z"
    assert rec["attempt"] == 2 and rec["follows"] == "kp-01:40"
    assert "staff_id" not in rec  # the device's standing assignment has none here
    assert rec["tags"] == ["D201"] and rec["content_version"] == "demo-1"
    assert record.validate(rec) and sign.verify(rec, KEY)


def test_an_appended_rating_may_follow_the_case_alone(app):
    app.start_case({"case_no": "LZ7", "attempt": 2}, 0)
    rec = press_stars(app, 5, 100)
    assert rec["attempt"] == 2 and "follows" not in rec and record.validate(rec)


def test_the_standing_assignment_and_the_case_staff_are_kept_apart(app):
    app.configure({"staff_id": "1001", "org_id": "370305"})
    app.start_case({"case_no": "LZ8", "staff_id": "2002", "org_id": "370305001"}, 0)
    rec = press_stars(app, 3, 100)
    assert (rec["staff_id"], rec["org_id"]) == ("1001", "370305")
    assert (rec["case_staff_id"], rec["case_org_id"]) == ("2002", "370305001")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"staff_id": ""}, "start.staff_id: must be a string of 1..64 characters, got a string of length 0"),
        ({"org_id": "x" * 65}, "start.org_id: must be a string of 1..64 characters, got a string of length 65"),
        ({"staff_id": "a\x00b"}, "start.staff_id: contains a control character"),
        ({"case_no": "LZ\n1"}, "start.case_no: contains a control character"),
        ({"handled_at": "2026-11-26"}, "start.handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ, got a string of length 10"),
        ({"handled_at": "2026-02-30T08:00:00Z"}, "start.handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ, got a string of length 20"),
        ({"handled_at": 1764145800}, "start.handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ, got 1764145800"),
        ({"attempt": 3}, "start.attempt: must be an integer 1..2, got 3"),
        ({"attempt": True}, "start.attempt: must be an integer 1..2, got true"),
        ({"follows": "abc"}, "start.follows: must be a rating's record id, got a string of length 3"),
        ({"follows": "kp-01:01"}, "start.follows: must be a rating's record id, got a string of length 8"),
        ({"attempt": 1}, "start.follows: only on an appended rating (attempt 2)"),
        ({"attempt": None}, "start.attempt: must be an integer 1..2, got null"),
    ],
)  # fmt: skip
def test_the_case_fields_of_a_start_are_checked(changes, error):
    msg = {**START, **changes}
    with pytest.raises(serial.SerialError) as caught:
        serial.validate(msg)
    assert str(caught.value) == error


def test_follows_needs_attempt_2():
    msg = {k: v for k, v in START.items() if k != "attempt"}
    with pytest.raises(serial.SerialError, match=r"^start\.follows: only on an appended rating"):
        serial.validate(msg)
    assert serial.validate({**START, "follows": "web/w-1"})  # server-made ids too
    frame = serial.encode_frame(START)
    assert serial.FrameDecoder().feed(frame) == [START]


def test_a_start_during_the_window_is_accepted_and_asked_when_it_ends(app):
    press_stars(app, 1, 0)
    assert app.start_case({"case_no": "NEXT", "timeout_s": 30}, 100) is True
    assert app.state == "tags"  # the citizen keeps the tag screen
    rec = app.press(0, 200)
    assert "case_no" not in rec  # the rating belongs to no case
    app.tick(WINDOW)
    assert app.events == [("result", {"record_id": "kp-01:1"})]
    assert app.state == "ask" and app.case["case_no"] == "NEXT"
    app.tick(WINDOW + 30000)  # the case's time counts from when it was asked
    assert app.events[-1] == ("timeout", {"case_no": "NEXT"})


def test_a_later_start_replaces_the_queued_one_and_cancel_drops_it(app):
    app.start_case({"case_no": "RATED"}, 0)
    press_stars(app, 5, 10)
    assert app.start_case({"case_no": "A"}, 20) and app.start_case({"case_no": "B"}, 30)
    app.tick(10 + WINDOW)
    assert app.case["case_no"] == "B"
    press_stars(app, 4, 20000)
    assert app.start_case({"case_no": "C"}, 20100) and app.cancel_case(20200)
    app.tick(20000 + WINDOW)
    assert app.state == "idle" and app.case is None
    results = [fields["case_no"] for kind, fields in app.events if kind == "result"]
    assert results == ["RATED", "B"]  # a cancel never takes back a rating made


def test_paused_keypad_takes_no_ratings(app):
    app.pause()
    assert app.screen() == ("暂停服务",)
    assert press_stars(app, 5, 100) is None
    assert app.start_case({"case_no": "x"}, 100) is False
    app.resume()
    assert press_stars(app, 5, 200)["seq"] == 1


def test_a_pause_during_the_window_takes_effect_when_it_ends(app):
    press_stars(app, 2, 0)
    assert app.pause(100) is True
    assert app.state == "tags"  # the citizen may still give the reason
    assert app.start_case({"case_no": "x"}, 200) is False  # refused, as while paused
    assert app.press(0, 300)["tags"] == ["D201"]
    app.tick(WINDOW)
    assert app.state == "paused" and [kind for kind, _ in app.events] == ["result"]
    assert app.resume(WINDOW + 1) and app.state == "idle"


def test_the_events_for_an_absent_window_pc_stay_bounded(app):
    now = 0
    for _ in range(MAX_EVENTS + 10):
        press_stars(app, 5, now)
        now += WINDOW
        app.tick(now)
    assert len(app.events) == MAX_EVENTS and app.events_dropped == 10
    newest = [fields["record_id"] for _, fields in app.events]
    assert newest[0] == "kp-01:11" and newest[-1] == f"kp-01:{MAX_EVENTS + 10}"


def test_uptime_keeps_counting_past_the_tick_wrap(tmp_path, monkeypatch):
    import device.app as device_app

    period = 1 << 30
    monkeypatch.setattr(device_app, "ticks_add", lambda t, d: (t + d) % period)
    monkeypatch.setattr(
        device_app, "ticks_diff", lambda a, b: (a - b + period // 2) % period - period // 2
    )
    boot = period - 1000
    app = KeypadApp("kp-01", KEY, Store(seeded(tmp_path)), lambda: (0, "unset"), "b", boot, 3000)
    now = boot
    for _ in range(5):  # two and a half periods, a tick every 2^28 ms
        now = (now + (1 << 28)) % period
        app.tick(now)
    rec = app.press(0, (now + 5) % period)
    assert rec["uptime_ms"] == 5 * (1 << 28) + 5 > period
    app.tick((now + 5 + 3000) % period)
    assert app.state == "idle" and app.events[-1][0] == "result"
