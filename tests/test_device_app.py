"""The keypad's state machine: ratings only from key presses, privacy at the window."""

import pytest

from device.app import KeypadApp
from device.store import Store
from protocols import record, sign

KEY = b"k" * 32
CONFIG = {
    "window_id": "A01",
    "staff_name": "张敏",
    "staff_no": "1001",
    "content_version": "demo-1",
    "tags": [[2, "D201", "等候时间长"], [1, "D101", "服务态度差"], [1, "D102", "多次跑动"]],
}


@pytest.fixture
def app(tmp_path):
    keypad = KeypadApp("kp-01", KEY, Store(str(tmp_path)), lambda: (1764145800, "ntp"), "b00t")
    keypad.configure(CONFIG)
    return keypad


def press_stars(app, stars, now):
    return app.press(5 - stars, now)


@pytest.mark.parametrize("stars", [5, 4, 3])
def test_a_good_rating_is_signed_stored_and_valid(app, stars):
    rec = press_stars(app, stars, 1000)
    assert rec["stars"] == stars and rec["seq"] == 1 and rec["id"] == "kp-01:1"
    assert rec["window_id"] == "A01" and rec["rated_at"] == "2025-11-26T08:30:00Z"
    assert record.validate(rec) and sign.verify(rec, KEY)
    assert [r["id"] for r in app.store.pending(5)] == ["kp-01:1"]


def test_a_bad_rating_asks_for_a_reason_offered_for_that_level(app):
    assert press_stars(app, 1, 1000) is None
    assert app.screen() == ("请选择不满意的原因", "1 服务态度差", "2 多次跑动")
    rec = app.press(1, 1500)
    assert rec["stars"] == 1 and rec["tags"] == ["D102"] and rec["content_version"] == "demo-1"


def test_a_walked_away_bad_rating_is_kept_without_an_invented_reason(app):
    press_stars(app, 2, 1000)
    app.tick(1000 + 19999)
    assert len(app.store) == 0
    app.tick(1000 + 20000)
    (rec,) = app.store.pending(5)
    assert rec["stars"] == 2 and "tags" not in rec


def test_the_thank_you_is_the_same_for_every_level(app):
    screens = set()
    now = 0
    for stars in (5, 4, 3, 2, 1):
        now += 10000
        press_stars(app, stars, now)
        if app.state == "reason":
            app.press(0, now)
        screens.add(app.screen())
        app.tick(now + 3000)
    assert screens == {("感谢您的评价",)}


def test_repeat_presses_during_the_thank_you_are_ignored(app):
    press_stars(app, 5, 1000)
    for key in range(5):
        assert app.press(key, 1100 + key) is None
    assert len(app.store) == 1
    app.tick(4000)
    assert app.state == "idle"
    press_stars(app, 4, 4100)
    assert len(app.store) == 2


def test_a_case_that_times_out_makes_no_rating(app):
    app.start_case({"case_no": "LZ2026112600001", "timeout_s": 30}, 0)
    assert app.screen() == ("A01 张敏 1001", "请您评价")
    app.tick(30000)
    assert app.state == "idle" and len(app.store) == 0
    assert app.events == [("timeout", {"case_no": "LZ2026112600001"})]


def test_a_case_rating_carries_the_case_and_the_event_has_no_level(app):
    app.start_case({"case_no": "LZ1", "service_no": "2", "item_code": "11370305MB"}, 0)
    rec = press_stars(app, 4, 500)
    assert (rec["case_no"], rec["service_no"], rec["item_code"]) == ("LZ1", "2", "11370305MB")
    kind, fields = app.events[-1]
    assert kind == "result" and fields == {
        "record_id": "kp-01:1",
        "case_no": "LZ1",
        "service_no": "2",
    }


def test_paused_keypad_takes_no_ratings(app):
    app.pause()
    assert app.screen() == ("暂停服务",)
    assert press_stars(app, 5, 100) is None
    assert app.start_case({"case_no": "x"}, 100) is False
    app.resume()
    assert press_stars(app, 5, 200)["seq"] == 1
