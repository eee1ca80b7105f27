"""Pre-aggregated figures kept by ingest: exact counts per local day, unit,
window, staff, item, channel, tag and hour; voids and repeats; a moved window
keeps its past; rebuild equals the incremental figures after any mix of
ingest, repeats and voids; two collectors committing at once on PostgreSQL
lose no increment."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from sync_server import db, features, figures, org
from sync_server.schema_figures import figures_daily


def row(id, stars, at="2026-11-26T08:30:00Z", **fields):
    """An evaluation row as the ingest stores it."""
    base = {
        "id": id,
        "stars": stars,
        "channel": "keypad",
        "rated_at": at,
        "clock": "ntp",
        "origin": "citizen",
        "attempt": 1,
        "received_at": db.utc_now(),
        "excluded": False,
        "reason_owed": False,
        "effective_at": at,
        "time_source": "device",
        **dict.fromkeys(("window_id", "staff_id", "org_id", "item_code", "tags", "repeat_of")),
    }
    base.update(fields)
    return base


def store(engine, *rows):
    with engine.begin() as conn:
        features.store_evaluations(conn, engine, list(rows))


def place(engine):
    """Two streets, a hall each, a window each, a member of staff in 闻韶."""
    with engine.begin() as conn:
        org.add(conn, "units", "D", "区", None, kind="district")
        org.add(conn, "units", "S1", "闻韶街道", "D", kind="street")
        org.add(conn, "units", "S2", "雪宫街道", "D", kind="street")
        org.add(conn, "units", "H1", "闻韶大厅", "S1", kind="hall")
        org.add(conn, "units", "H2", "雪宫大厅", "S2", kind="hall")
        org.add(conn, "windows", "A01", "一号窗", "H1")
        org.add(conn, "windows", "B01", "二号窗", "H2")
        org.add(conn, "staff", "P1", "张三", "H1")


def totals(engine, dimension, start=None, end=None, **kw):
    with engine.connect() as conn:
        found = figures.totals(conn, dimension, start, end, **kw)
    return {key: (value["by_stars"], value["valid"], value["bad"], value["good_rate"]) for key, value in found.items()}  # fmt: skip


def stars(n1=0, n2=0, n3=0, n4=0, n5=0):
    return {1: n1, 2: n2, 3: n3, 4: n4, 5: n5}


def test_each_dimension_counts_the_ratings_of_its_local_day(engine):
    place(engine)
    store(
        engine,
        # 2026-11-26T17:30Z is 01:30 on the 27th in Shanghai
        row("kp:1", 5, "2026-11-26T17:30:00Z", window_id="A01", staff_id="P1", item_code="I1", tags='["501","502"]'),
        row("kp:2", 1, "2026-11-26T08:30:00Z", window_id="A01", tags='["101"]'),
        row("kp:3", 2, "2026-11-26T09:10:00Z", window_id="B01", channel="kiosk", item_code="I1"),
        row("web:1", 4, "2026-11-26T10:00:00Z", channel="web", org_id="S2"),
        row("web:2", 3, "2026-11-26T10:00:00Z", channel="web"),  # no unit at all
        row("kp:4", 9, "2026-11-26T10:00:00Z", window_id="A01"),  # no level: no rating
    )  # fmt: skip
    assert totals(engine, "unit") == {
        "H1": (stars(n1=1, n5=1), 2, 1, 0.5),
        "H2": (stars(n2=1), 1, 1, 0.0),
        "S2": (stars(n4=1), 1, 0, 1.0),
        "": (stars(n3=1), 1, 0, 1.0),
    }
    assert totals(engine, "day") == {
        "2026-11-26": (stars(n1=1, n2=1, n3=1, n4=1), 4, 2, 0.5),
        "2026-11-27": (stars(n5=1), 1, 0, 1.0),
    }
    assert totals(engine, "hour") == {
        "01": (stars(n5=1), 1, 0, 1.0),
        "16": (stars(n1=1), 1, 1, 0.0),
        "17": (stars(n2=1), 1, 1, 0.0),
        "18": (stars(n3=1, n4=1), 2, 0, 1.0),
    }
    assert totals(engine, "window") == {"A01": (stars(n1=1, n5=1), 2, 1, 0.5), "B01": (stars(n2=1), 1, 1, 0.0)}  # fmt: skip
    assert totals(engine, "staff") == {"P1": (stars(n5=1), 1, 0, 1.0)}
    assert totals(engine, "item") == {"I1": (stars(n2=1, n5=1), 2, 1, 0.5)}
    assert totals(engine, "tag") == {"501": (stars(n5=1), 1, 0, 1.0), "502": (stars(n5=1), 1, 0, 1.0), "101": (stars(n1=1), 1, 1, 0.0)}  # fmt: skip
    assert totals(engine, "channel") == {
        "keypad": (stars(n1=1, n5=1), 2, 1, 0.5),
        "kiosk": (stars(n2=1), 1, 1, 0.0),
        "web": (stars(n3=1, n4=1), 2, 0, 1.0),
    }
    # a subtree sums its units' rows; a period picks local days
    assert totals(engine, "unit", unit="S1") == {"H1": (stars(n1=1, n5=1), 2, 1, 0.5)}
    assert totals(engine, "window", "2026-11-27", "2026-11-27", unit="D") == {"A01": (stars(n5=1), 1, 0, 1.0)}  # fmt: skip
    assert totals(engine, "channel", unit="D", channel="web") == {"web": (stars(n4=1), 1, 0, 1.0)}
    # a scope (a unit manager's units) bounds whatever unit is asked
    assert totals(engine, "unit", unit="D", scope={"S2", "H2"}) == {"H2": (stars(n2=1), 1, 1, 0.0), "S2": (stars(n4=1), 1, 0, 1.0)}  # fmt: skip
    assert totals(engine, "unit", unit="S1", scope={"S2", "H2"}) == {}
    # the good-rate formula is a setting
    assert totals(engine, "unit", unit="H1", rate_stars=(5,))["H1"][3] == 0.5
    assert totals(engine, "unit", unit="H2", rate_stars=(5,))["H2"][3] == 0.0
    # every dimension can be narrowed to one channel
    assert totals(engine, "window", channel="kiosk") == {"B01": (stars(n2=1), 1, 1, 0.0)}
    assert totals(engine, "window", channel="keypad") == {"A01": (stars(n1=1, n5=1), 2, 1, 0.5)}
    assert totals(engine, "item", channel="kiosk") == {"I1": (stars(n2=1), 1, 1, 0.0)}
    assert totals(engine, "hour", channel="web") == {"18": (stars(n3=1, n4=1), 2, 0, 1.0)}
    assert totals(engine, "tag", channel="web") == {}
    assert totals(engine, "staff", channel="keypad") == {"P1": (stars(n5=1), 1, 0, 1.0)}
    assert totals(engine, "day", channel="kiosk") == {"2026-11-26": (stars(n2=1), 1, 1, 0.0)}
    assert totals(engine, "unit", channel="web") == {"S2": (stars(n4=1), 1, 0, 1.0), "": (stars(n3=1), 1, 0, 1.0)}  # fmt: skip
    with pytest.raises(ValueError) as caught:
        totals(engine, "colour")
    assert str(caught.value) == "dimension: must be one of unit, window, staff, item, channel, tag, hour, day, month"  # fmt: skip


def test_voided_and_repeated_ratings_count_nowhere_and_a_restore_counts_again(engine):
    place(engine)
    store(
        engine,
        row("kp:1", 1, window_id="A01", tags='["101"]'),
        row("kp:2", 5, window_id="A01"),
        row("kp:3", 5, window_id="A01", repeat_of="kp:2"),
        row("kp:4", 4, window_id="A01", excluded=True),
    )
    assert totals(engine, "window") == {"A01": (stars(n1=1, n5=1), 2, 1, 0.5)}
    with engine.begin() as conn:
        assert figures.set_excluded(conn, ["kp:1", "kp:3", "nothing"], True) == 2
    assert totals(engine, "window") == {"A01": (stars(n5=1), 1, 0, 1.0)}
    assert totals(engine, "tag") == {}
    with engine.begin() as conn:
        assert figures.set_excluded(conn, ["kp:1"], True) == 0  # voided already: no change
        assert figures.set_excluded(conn, ["kp:1", "kp:4"], False) == 2
    assert totals(engine, "window") == {"A01": (stars(n1=1, n4=1, n5=1), 3, 1, 0.6667)}
    assert totals(engine, "tag") == {"101": (stars(n1=1), 1, 1, 0.0)}
    # kp:3 (a repeat) came back from its void and still counts nowhere
    with engine.begin() as conn:
        assert figures.set_excluded(conn, ["kp:3"], False) == 1
    assert totals(engine, "unit") == {"H1": (stars(n1=1, n4=1, n5=1), 3, 1, 0.6667)}


def test_a_window_moved_to_another_street_keeps_its_past_figures(engine):
    place(engine)
    store(engine, row("kp:1", 5, "2026-11-20T01:00:00Z", window_id="A01"))
    with engine.begin() as conn:
        org.move(conn, "windows", "A01", "H2", at="2026-11-25T00:00:00Z")
    store(engine, row("kp:2", 1, "2026-11-26T01:00:00Z", window_id="A01"))
    assert totals(engine, "unit") == {"H1": (stars(n5=1), 1, 0, 1.0), "H2": (stars(n1=1), 1, 1, 0.0)}  # fmt: skip
    assert totals(engine, "window", unit="S1") == {"A01": (stars(n5=1), 1, 0, 1.0)}
    assert totals(engine, "window", unit="S2") == {"A01": (stars(n1=1), 1, 1, 0.0)}
    before = _rows(engine)
    with engine.begin() as conn:
        figures.rebuild(conn)
    assert _rows(engine) == before


def test_the_events_give_the_active_rating_rate(engine):
    from sync_server.schema_channels import service_events

    place(engine)
    with engine.begin() as conn:
        for n, (window, at, rating) in enumerate(
            [
                ("A01", "2026-11-26T01:00:00Z", "kp:1"),
                ("A01", "2026-11-26T02:00:00Z", None),
                ("A01", "2026-11-26T15:59:59Z", None),  # 23:59:59 local: still the 26th
                ("A01", "2026-11-26T16:00:00Z", "kp:2"),  # the 27th in Shanghai
                ("B01", "2026-11-26T03:00:00Z", None),
            ]
        ):
            values = dict(
                case_no=f"C{n}", service_no="1", item_code="I1",
                unit_id="H1" if window == "A01" else "H2", window_id=window,
                handled_at=at, registered_at=db.utc_now(), source="api", rating_id=rating,
            )  # fmt: skip
            for column in service_events.columns:  # what the channels feature requires else
                if not (column.nullable or column.primary_key or column.name in values):
                    if column.default is None and column.server_default is None:
                        values[column.name] = f"x{n}"
            conn.execute(service_events.insert().values(**values))
        on_26th = figures.activity(conn, "window", "2026-11-26", "2026-11-26")
        assert on_26th == {
            "A01": {"handled": 3, "rated": 1, "active_rate": 0.3333},
            "B01": {"handled": 1, "rated": 0, "active_rate": 0.0},
        }
        assert figures.activity(conn, "unit", None, None, unit="S1") == {
            "H1": {"handled": 4, "rated": 2, "active_rate": 0.5}
        }
        assert figures.activity(conn, "item", "2026-11-27", None, scope={"H2"}) == {}


def _rows(engine):
    with engine.connect() as conn:
        return figures.all_rows(conn)


# --- rebuild == incremental, whatever happened ----------------------------------------

WINDOWS = ["A01", "B01", None]
STAFF = ["P1", None]
TAGS = ['["101"]', '["201","202"]', None, "not json"]
TIMES = ["2026-11-25T15:59:59Z", "2026-11-25T16:00:00Z", "2026-11-26T08:00:00Z", "2026-11-27T23:00:00Z"]  # fmt: skip

rating = st.fixed_dictionaries(
    {
        "stars": st.integers(1, 5),
        "window_id": st.sampled_from(WINDOWS),
        "staff_id": st.sampled_from(STAFF),
        "org_id": st.sampled_from(["S1", "S2", None, "elsewhere"]),
        "channel": st.sampled_from(["keypad", "web", "paper"]),
        "item_code": st.sampled_from(["I1", "I2", None]),
        "tags": st.sampled_from(TAGS),
        "effective_at": st.sampled_from(TIMES),
        "excluded": st.booleans(),
        "repeat": st.booleans(),
    }
)
step = st.one_of(
    st.tuples(st.just("store"), st.lists(rating, min_size=1, max_size=6)),
    st.tuples(st.just("void"), st.lists(st.integers(0, 40), max_size=4), st.booleans()),
    st.tuples(st.just("move"), st.sampled_from(["A01", "B01"])),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_rebuild_equals_the_figures_kept_by_ingest(engine, steps):
    with engine.begin() as conn:
        conn.execute(delete(db.evaluations))
        conn.execute(delete(figures_daily))
        conn.execute(delete(db.placements))
        conn.execute(delete(db.windows))
        conn.execute(delete(db.staff))
        conn.execute(delete(db.org_units))
    place(engine)
    stored: list[str] = []
    moved = 0
    for action, *args in steps:
        if action == "store":
            rows = []
            for ratings in args[0]:
                fields = dict(ratings)
                repeat = fields.pop("repeat")
                id = f"r:{len(stored)}"
                fields["repeat_of"] = stored[0] if repeat and stored else None
                rows.append(row(id, fields.pop("stars"), fields["effective_at"], **fields))
                stored.append(id)
            store(engine, *rows)
        elif action == "void":
            picks, flag = args
            with engine.begin() as conn:
                figures.set_excluded(conn, [f"r:{n}" for n in picks], flag)
        else:  # a move now: after every rating's time
            moved += 1
            target = {"A01": ["H2", "H1"], "B01": ["H1", "H2"]}[args[0]][moved % 2]
            with engine.begin() as conn:
                if org.get(conn, "windows", args[0])["unit"] != target:
                    org.move(conn, "windows", args[0], target, at=f"2027-01-{moved:02d}T00:00:00Z")
    incremental = _rows(engine)
    with engine.begin() as conn:
        figures.rebuild(conn)
    assert _rows(engine) == incremental


# --- two collectors at once -----------------------------------------------------------


def test_two_collectors_committing_at_once_lose_no_increment(engine):
    """Each thread stores 40 batches of its own device's ratings into the
    same day, unit, window and tag rows; on PostgreSQL the transactions
    really overlap (SQLite takes them one at a time)."""
    place(engine)
    barrier = threading.Barrier(2)
    errors = []

    def collector(device):
        try:
            barrier.wait()
            for batch in range(40):
                rows = [
                    row(f"{device}:{batch}:{n}", 1 + n % 5, window_id="A01", tags='["101"]')
                    for n in range(5)
                ]
                store(engine, *rows)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=collector, args=(d,)) for d in ("kp-a", "kp-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert totals(engine, "window") == {"A01": (stars(80, 80, 80, 80, 80), 400, 160, 0.6)}
    assert totals(engine, "tag") == {"101": (stars(80, 80, 80, 80, 80), 400, 160, 0.6)}


# --- a long period reads month rows, and they add up to the days ------------------------


def test_period_segments_split_whole_months_from_the_days_around_them():
    segments = figures.period_segments
    assert segments("window", "2026-01-15", "2026-04-10") == [
        ("window.m", "2026-02", "2026-03"),
        ("window", "2026-01-15", "2026-01-31"),
        ("window", "2026-04-01", "2026-04-10"),
    ]
    assert segments("tag", "2026-02-01", "2026-02-28") == [("tag.m", "2026-02", "2026-02")]
    assert segments("tag", "2026-02-02", "2026-02-27") == [("tag", "2026-02-02", "2026-02-27")]
    assert segments("unit", None, None) == [("unit.m", None, None)]
    assert segments("unit", None, "2026-12-30") == [("unit.m", None, "2026-11"), ("unit", "2026-12-01", "2026-12-30")]  # fmt: skip
    assert segments("unit", "2025-12-31", None) == [("unit.m", "2026-01", None), ("unit", "2025-12-31", "2025-12-31")]  # fmt: skip


PERIODS = {
    "start": st.one_of(st.none(), st.dates(dt.date(2025, 12, 1), dt.date(2026, 5, 31))),
    "days": st.integers(0, 200),
    "open_end": st.booleans(),
}


def _day_rows_in(engine, conn, start, days, open_end):
    """(start_day, end_day, the day rows of that period): the spread stored
    once, a period from hypothesis's start, length and open end."""
    if not conn.execute(select(figures_daily.c.dim).limit(1)).first():
        _spread(engine)
    end = None if open_end else ((start or dt.date(2026, 1, 1)) + dt.timedelta(days=days))
    low, high = (start.isoformat() if start else None), (end.isoformat() if end else None)
    rows = [
        row for row in figures.all_rows(conn)
        if (not low or row[1] >= low) and (not high or row[1] <= high)
    ]  # fmt: skip
    return low, high, rows


def _added(expected, key, levels):
    kept = expected.setdefault(key, [0] * 5)
    for i in range(5):
        kept[i] += levels[i]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(**PERIODS)
def test_any_period_sums_to_the_same_as_its_days(engine, start, days, open_end):
    with engine.connect() as conn:
        low, high, rows = _day_rows_in(engine, conn, start, days, open_end)
        found = figures.level_counts(conn, "window", low, high)
    expected: dict = {}
    for dim, _day, _unit, _channel, key, *levels in rows:
        if dim == "window":
            _added(expected, key, levels)
    assert found == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(**PERIODS, channel=st.sampled_from([None, "keypad", "web"]))
def test_by_month_any_period_sums_to_the_same_as_its_days(engine, start, days, open_end, channel):
    """The month trend reads month rows for whole months and day rows at the
    edges: the same as the period's day rows added up by month."""
    with engine.connect() as conn:
        low, high, rows = _day_rows_in(engine, conn, start, days, open_end)
        found = figures.level_counts(conn, "month", low, high, channel=channel)
    expected: dict = {}
    for dim, day, _unit, row_channel, _key, *levels in rows:
        if dim == "unit" and (not channel or row_channel == channel):
            _added(expected, day[:7], levels)
    assert found == {month: levels for month, levels in expected.items() if any(levels)}


def _spread(engine):
    """Ratings on every 3rd day from December 2025 to June 2026."""
    with engine.begin() as conn:
        for table in (db.evaluations, figures_daily, db.placements, db.windows, db.staff, db.org_units):  # fmt: skip
            conn.execute(delete(table))
    place(engine)
    day = dt.date(2025, 12, 1)
    rows = []
    while day < dt.date(2026, 7, 1):
        at = f"{day.isoformat()}T02:00:00Z"
        rows.append(row(f"s:{day}", 1 + day.day % 5, at, window_id="A01" if day.day % 2 else "B01"))
        day += dt.timedelta(days=3)
    store(engine, *rows)
