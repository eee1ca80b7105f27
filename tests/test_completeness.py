"""Completeness of a device day by day: gaps inside a day and between days."""

import datetime as dt

import pytest

from protocols import messages
from sync_server import completeness, db
from tests.harness.records import add_evaluation, set_status

TODAY = dt.date(2026, 11, 26)


@pytest.fixture
def app(engine_app):
    """These tests run the app on each kind of database."""
    return engine_app


@pytest.fixture
def device(engine):
    db.add_device(engine, "kp-01", "aa" * 32)
    # Linzi days (UTC+8): 25th has seqs 1, 2, 4; 26th has 7, 8 (5 and 6 missing
    # between the days); 16:30 UTC on the 25th is already the 26th in Linzi.
    for seq, at in (
        (1, "2026-11-25T01:00:00Z"),
        (2, "2026-11-25T02:00:00Z"),
        (4, "2026-11-25T03:00:00Z"),
        (7, "2026-11-25T16:30:00Z"),
        (8, "2026-11-26T02:00:00Z"),
    ):
        add_evaluation(engine, f"kp-01:{seq}", 5, at)
    set_status(engine, "kp-01", messages.status(True, last_seq=9))
    return engine


def test_days_show_gaps_within_and_between_days(device):
    report = completeness.device_days(device, "kp-01", 7, "Asia/Shanghai", today=TODAY)
    assert report["last_seq_reported"] == 9 and report["timezone"] == "Asia/Shanghai"
    assert report["days"] == [
        {"day": "2026-11-26", "stored": 2, "first_seq": 7, "last_seq": 8, "missing": 0,
         "missing_before": 2},
        {"day": "2026-11-25", "stored": 3, "first_seq": 1, "last_seq": 4, "missing": 1,
         "missing_before": 0},
    ]  # fmt: skip


def test_the_window_of_days_is_counted_in_local_days(device):
    report = completeness.device_days(device, "kp-01", 1, "Asia/Shanghai", today=TODAY)
    assert [d["day"] for d in report["days"]] == ["2026-11-26"]


def test_an_unknown_device_is_an_error(engine):
    with pytest.raises(completeness.UnknownDevice):
        completeness.device_days(engine, "kp-77", 7, "Asia/Shanghai")


def test_the_api_answers_and_checks_its_parameter(device, viewer):
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    add_evaluation(device, "kp-01:12", 4, now)
    answer = viewer.get("/api/v1/devices/kp-01/days?days=1").get_json()
    assert answer["device_id"] == "kp-01" and answer["last_seq_reported"] == 9
    assert [(d["first_seq"], d["last_seq"]) for d in answer["days"]] == [(12, 12)]
    bad = viewer.get("/api/v1/devices/kp-01/days?days=93")
    assert bad.status_code == 400 and bad.get_json() == {"error": "days: must be 1..92"}
    unknown = viewer.get("/api/v1/devices/kp-77/days")
    assert unknown.status_code == 404
    assert unknown.get_json() == {"error": "device_id: unknown device 'kp-77'"}


def test_the_device_page_shows_the_days_in_chinese(device, viewer):
    page = viewer.get("/devices/kp-01").get_data(as_text=True)
    assert "逐日完整性" in page and "此前缺失" in page
    assert viewer.get("/devices/kp-77").status_code == 404


# --- whatever the devices table holds ------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "null",
        "42",
        "[1, 2]",
        '"text"',
        '{"last_seq": NaN}',
        '{"counts": {"1": Infinity}}',
        '{"last_seq": 1e400}',
        '{"last_seq": ' + "9" * 5000 + "}",
        "[" * 100_000 + "]" * 100_000,
        '{"a": ' * 9 + "1" + "}" * 9,
    ],
    ids=lambda text: repr(text)[:24],
)
def test_a_status_that_cannot_be_shown_reads_as_none(text):
    assert completeness.read_status(text) is None


def test_a_status_object_reads_as_it_is():
    assert completeness.read_status('{"online": true, "x": {"y": [1]}}') == {
        "online": True,
        "x": {"y": [1]},
    }


@pytest.mark.parametrize(
    ("last_seq", "read"),
    [(0, 0), (9, 9), (2147483647, 2147483647), (2147483648, None), (10**30, None), (-1, None),
     (True, None), ("9", None), (9.0, None), (None, None)],
)  # fmt: skip
def test_only_a_seq_number_counts_as_the_reported_last_seq(last_seq, read):
    assert completeness.reported_last_seq({"last_seq": last_seq}) == read


@pytest.mark.parametrize("last_seq", [10**30, 2**63, -(2**63) - 1, "9", [9], {"n": 9}])
def test_an_odd_last_seq_leaves_the_days_and_the_devices_working(engine, viewer, last_seq):
    db.add_device(engine, "kp-01", "aa" * 32)
    add_evaluation(engine, "kp-01:1", 5, "2026-11-25T01:00:00Z")
    set_status(engine, "kp-01", {"online": True, "last_seq": last_seq})
    report = completeness.device_days(engine, "kp-01", 7, "Asia/Shanghai", today=TODAY)
    assert report["last_seq_reported"] is None and len(report["days"]) == 1
    (item,) = viewer.get("/api/v1/devices").get_json()["items"]
    assert (item["counts_upto_seq"], item["counts_match"], item["missing"]) == (None, None, 0)
    assert viewer.get("/devices").status_code == 200
    assert viewer.get("/devices/kp-01").status_code == 200


def test_a_time_past_the_calendar_s_end_keeps_its_utc_day(engine):
    """23:59:59 UTC on 9999-12-31 has no local day in Linzi (UTC+8)."""
    db.add_device(engine, "kp-01", "aa" * 32)
    add_evaluation(engine, "kp-01:1", 5, "9999-12-31T23:59:59Z")
    report = completeness.device_days(engine, "kp-01", 1, "Asia/Shanghai", today=TODAY)
    assert report["days"] == [
        {"day": "9999-12-31", "stored": 1, "first_seq": 1, "last_seq": 1, "missing": 0,
         "missing_before": 0},
    ]  # fmt: skip


@pytest.mark.parametrize("device_id", ["kp\x00", "x" * 65, "\ud800"])
def test_a_device_id_no_database_takes_is_unknown(engine, device_id):
    with pytest.raises(completeness.UnknownDevice):
        completeness.device_days(engine, device_id, 7, "Asia/Shanghai")
