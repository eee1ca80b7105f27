# ruff: noqa: F811 (the world and site fixtures are imported from test_rankings)
"""Periods other than a month: quarters, years and ranges of days, and the
units near the bottom for periods running (连续排名靠后) in each kind, on
test_rankings.py's hand-built September and October 2026.

With one place at the bottom: in the fourth quarter 闻韶 and 雪宫 have 0.75
and 齐都 5 3 2 1, a 5 on 1 October and a 1 on 1 November: 3/6 = 0.5, last.
In the third quarter (September) 雪宫 has a 5, 闻韶 a 1 and 齐都 a 2: 闻韶 and
齐都 tie for last at 0.0. So 齐都 is near the bottom two quarters running.
"""

from __future__ import annotations

import pytest

from sync_server import deadlines, rankings_data
from tests.harness.records import add_evaluation
from tests.test_rankings import NOW, _login, site, world  # noqa: F401 (fixtures)
from tests.test_rankings_api import answer


@pytest.mark.parametrize(
    ("period", "earlier"),
    [
        ("2026-10", "2026-09"),
        ("2026-01", "2025-12"),
        ("2026-Q1", "2025-Q4"),
        ("2026-Q3", "2026-Q2"),
        ("2026", "2025"),
        ("2026-08-01..2026-09-30", "2026-06-01..2026-07-31"),  # whole months: months back
        ("2026-03-01..2026-03-31", "2026-02-01..2026-02-28"),
        ("2026-01-01..2026-12-31", "2025-01-01..2025-12-31"),
        ("2026-10-11..2026-10-20", "2026-10-01..2026-10-10"),  # days: as many days back
        ("2026-03-01..2026-03-01", "2026-02-28..2026-02-28"),
    ],
)
def test_the_period_before_is_of_the_same_kind(period, earlier):
    assert rankings_data.previous_period(period) == earlier


def test_quarters_and_years_read_as_their_days_and_bad_ones_are_refused():
    assert rankings_data.parse_period("2026-Q4")[1:] == (
        rankings_data.dt.date(2026, 10, 1), rankings_data.dt.date(2026, 12, 31),
    )  # fmt: skip
    assert [d.isoformat() for d in rankings_data.parse_period("2024")[1:]] == [
        "2024-01-01", "2024-12-31",
    ]  # fmt: skip
    for text, message in (
        ("2026-Q5", "period: must be YYYY-MM, YYYY-Qn, YYYY or YYYY-MM-DD..YYYY-MM-DD"),
        ("1999", "period: no year '1999'"),
        ("2101-Q1", "period: no year '2101-Q1'"),
    ):
        with pytest.raises(rankings_data.PeriodError) as caught:
            rankings_data.parse_period(text)
        assert str(caught.value) == message
    with pytest.raises(rankings_data.PeriodError) as caught:
        rankings_data.previous_period("2000")
    assert str(caught.value) == "period: no year '1999'"


def _one_place(conn):
    deadlines.set_setting(conn, "praise_places", 1)
    deadlines.set_setting(conn, "bottom_places", 1)


def test_two_quarters_running_and_the_same_days_as_a_range(world):
    with world.begin() as conn:
        _one_place(conn)
        quarter = rankings_data.compute(conn, "2026-Q4", now_utc=NOW)
        days = rankings_data.compute(conn, "2026-10-01..2026-12-31", now_utc=NOW)
    for data in (quarter, days):
        assert [r["id"] for r in data["notices"]["unit"]["bottom"]] == ["hall-qd"]
        assert [r["id"] for r in data["consecutive"]["unit"]] == ["hall-qd"]
        assert [r["id"] for r in data["consecutive"]["town"]] == ["370305100"]
    with world.begin() as conn:  # three quarters: the second quarter is empty
        deadlines.set_setting(conn, "bottom_periods", 3)
        assert rankings_data.compute(conn, "2026-Q4", now_utc=NOW)["consecutive"] == {
            "unit": [], "town": [],
        }  # fmt: skip


def test_a_year_with_nothing_before_it_lists_nobody(world):
    with world.begin() as conn:
        _one_place(conn)
        data = rankings_data.compute(conn, "2026", now_utc=NOW)
    assert [r["id"] for r in data["notices"]["unit"]["bottom"]] == ["hall-qd"]
    assert data["consecutive"]["unit"] == []  # 2025 has no ratings


def test_the_period_before_is_read_from_its_snapshot_whatever_its_name(world):
    """The third quarter stored as 2026-Q3; later good ratings for 齐都 in
    September would lift it off the bottom if it were computed again, but
    the range of the same days finds what was published."""
    with world.begin() as conn:
        _one_place(conn)
        rankings_data.compute(conn, "2026-Q3", now_utc=NOW)
    for n in range(3):
        add_evaluation(world, f"late:{n}", 5, rated_at="2026-09-21T02:00:00Z", window_id="C01")
    with world.begin() as conn:
        stored = rankings_data.compute(conn, "2026-10-01..2026-12-31", now_utc=NOW)
    assert [r["id"] for r in stored["consecutive"]["unit"]] == ["hall-qd"]
    with world.begin() as conn:  # computed afresh, September no longer puts 齐都 last
        conn.execute(rankings_data.ranking_snapshots.delete())
        fresh = rankings_data.compute(conn, "2026-10-01..2026-12-31", now_utc=NOW)
    assert fresh["consecutive"]["unit"] == []


def test_the_page_and_the_api_name_the_quarter(site):
    engine = site.extensions["hcp_engine"]
    with engine.begin() as conn:
        _one_place(conn)
    admin = _login(site, "admin")
    page = admin.get("/rankings?period=2026-Q4").get_data(as_text=True)
    assert "连续 2 期排名靠后" in page
    found = answer(admin, "?period=2026-Q4")
    assert (found["first_day"], found["last_day"]) == ("2026-10-01", "2026-12-31")
    assert [r["id"] for r in found["notices"]["consecutive"]] == ["hall-qd"]
