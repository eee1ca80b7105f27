"""Ratings made before a keypad's clock was set get an estimated time.

rated_at is kept as the device sent it; effective_at is what lists, filters
and figures use, with time_source saying where it came from."""

import datetime as dt
import secrets

import pytest
from sqlalchemy import select

from protocols import messages, topics
from sync_server import clock, db
from sync_server.ingest import Ingestor
from tests.harness.records import batch, signed
from tests.harness.records import stored_times as stored

KEY_HEX = secrets.token_hex(32)
EV = topics.topic("kp-01", topics.UP_EV)
STATUS = topics.topic("kp-01", topics.UP_STATUS)


@pytest.fixture
def ingestor(engine):
    db.add_device(engine, "kp-01", KEY_HEX)
    return Ingestor(engine)


def record(seq, clock_state="unset", uptime_ms=40_000, boot_id="b00t0001"):
    rated_at = "2000-01-01T00:00:40Z" if clock_state == "unset" else "2026-11-26T08:30:00Z"
    rec = signed(seq, 4, key=bytes.fromhex(KEY_HEX), rated_at=rated_at, clock=clock_state,
                 boot_id=boot_id, uptime_ms=uptime_ms)  # fmt: skip
    return batch([rec], seq)


def status(uptime_ms, boot_id="b00t0001"):
    return messages.encode(
        messages.status(True, boot_id=boot_id, uptime_ms=uptime_ms, clock="unset")
    )


def seconds_between(later, earlier):
    return (clock._parse(later) - clock._parse(earlier)).total_seconds()


def test_a_trusted_clock_is_taken_as_it_is(engine, ingestor):
    ingestor.process(EV, record(1, clock_state="ntp"))
    row = stored(engine, 1)
    assert (row.effective_at, row.time_source) == ("2026-11-26T08:30:00Z", "device")


def test_a_live_status_pins_the_boot_and_later_records_are_estimated(engine, ingestor):
    ingestor.process(STATUS, status(uptime_ms=100_000))
    with engine.connect() as conn:
        ref_at = conn.execute(select(db.boot_clocks.c.at)).scalar()
    ingestor.process(EV, record(1, uptime_ms=40_000))
    row = stored(engine, 1)
    assert row.rated_at == "2000-01-01T00:00:40Z"  # what the device said stays
    assert row.time_source == "estimated"
    assert seconds_between(ref_at, row.effective_at) == pytest.approx(60, abs=1)


def test_records_waiting_for_a_reference_are_estimated_when_it_comes(engine, ingestor):
    ingestor.process(EV, record(1, uptime_ms=5_000))
    row = stored(engine, 1)
    assert row.time_source == "received"
    assert row.effective_at == row.received_at[:19] + "Z"
    ingestor.process(STATUS, status(uptime_ms=65_000))
    row = stored(engine, 1)
    assert row.time_source == "estimated"
    # made 60 s before the status arrived, and never later than it was received
    assert seconds_between(row.received_at[:19] + "Z", row.effective_at) >= 0


def test_a_retained_status_is_no_reference(engine, ingestor):
    ingestor.process(STATUS, status(uptime_ms=100_000), retained=True)
    ingestor.process(EV, record(1))
    assert stored(engine, 1).time_source == "received"


def test_another_boot_is_not_estimated_from_this_one(engine, ingestor):
    ingestor.process(STATUS, status(uptime_ms=100_000, boot_id="b00t0002"))
    ingestor.process(EV, record(1, boot_id="b00t0001"))
    assert stored(engine, 1).time_source == "received"


def test_an_estimate_is_never_later_than_the_arrival():
    now = "2026-11-26T08:00:00.000000Z"
    # a reference that claims the device ran longer than it did
    assert clock.estimate(now, 1_000, 90_000, now) == "2026-11-26T08:00:00Z"
    assert clock.estimate(now, 90_000, 30_000, "2026-11-26T09:00:00.000000Z") == (
        "2026-11-26T07:59:00Z"
    )


def test_filters_and_order_use_the_effective_time(engine, ingestor):
    ingestor.process(EV, record(1, clock_state="ntp"))  # 2026-11-26T08:30:00Z
    ingestor.process(STATUS, status(uptime_ms=100_000))
    ingestor.process(EV, record(2, uptime_ms=99_000))  # about now
    from sync_server import queries

    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if recent < "2026-11-26T08:30:00Z":
        pytest.skip("the machine's clock is before the trusted record's time")
    items = queries.list_evaluations(engine, {"since": recent})["items"]
    assert [item["id"] for item in items] == ["kp-01:2"]  # by rated_at it would be 2000-01-01
    assert items[0]["time_source"] == "estimated"
    everything = queries.list_evaluations(engine, {})["items"]
    assert [item["id"] for item in everything] == ["kp-01:2", "kp-01:1"]  # newest first
