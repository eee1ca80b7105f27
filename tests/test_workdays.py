"""The working-day calendar: chinese_calendar's published schedules, the
admin's entries over them, and Monday–Friday with a warning for a year
nobody has entered. The 2026 facts below are chinese_calendar 1.11's data:
National Day holidays 1–7 October (8 October is a working day), adjusted
working weekends Sunday 20 September and Saturday 10 October; Mid-Autumn
25–27 September."""

from __future__ import annotations

import datetime as dt

import pytest

from sync_server import workdays
from sync_server.schema_rankings import calendar_days

D = dt.date


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (D(2026, 9, 20), True),  # Sunday, adjusted working day for National Day
        (D(2026, 9, 25), False),  # Friday, Mid-Autumn
        (D(2026, 9, 30), True),
        (D(2026, 10, 1), False),
        (D(2026, 10, 5), False),  # Monday inside the holiday
        (D(2026, 10, 7), False),
        (D(2026, 10, 8), True),
        (D(2026, 10, 10), True),  # Saturday, adjusted working day
        (D(2026, 10, 11), False),  # Sunday
        (D(2026, 10, 17), False),  # an ordinary Saturday
    ],
)
def test_2026_national_day_schedule(day, working):
    assert workdays.is_working_day(day) is working


def test_adding_working_days_across_national_day():
    assert workdays.add_working_days(D(2026, 9, 30), 0) == D(2026, 9, 30)
    assert workdays.add_working_days(D(2026, 9, 30), 1) == D(2026, 10, 8)
    # 8, 9, 10 (Saturday, adjusted), 12, 13
    assert workdays.add_working_days(D(2026, 9, 30), 5) == D(2026, 10, 13)
    # the count starts the day after, even from a holiday
    assert workdays.add_working_days(D(2026, 10, 3), 2) == D(2026, 10, 9)


def test_an_adjusted_working_weekend_counts():
    assert workdays.add_working_days(D(2026, 10, 9), 1) == D(2026, 10, 10)
    assert workdays.add_working_days(D(2026, 9, 18), 1) == D(2026, 9, 20)  # Friday -> Sunday


def test_working_days_between_is_the_inverse_of_adding():
    assert workdays.working_days_between(D(2026, 9, 30), D(2026, 10, 13)) == 5
    assert workdays.working_days_between(D(2026, 10, 13), D(2026, 9, 30)) == -5
    assert workdays.working_days_between(D(2026, 10, 1), D(2026, 10, 7)) == 0
    assert workdays.working_days_between(D(2026, 10, 1), D(2026, 10, 1)) == 0


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match=r"^n: must be 0 or more, got -1$"):
        workdays.add_working_days(D(2026, 10, 1), -1)


def test_a_year_without_data_falls_back_to_weekdays(engine):
    assert workdays.library_covers(2026) is True
    assert workdays.library_covers(2027) is False
    with engine.connect() as conn:
        # 1 January 2027 is a Friday: a working day until someone says otherwise
        assert workdays.is_working_day(D(2027, 1, 1), conn) is True
        assert workdays.is_working_day(D(2027, 1, 2), conn) is False
        # 31 December 2026 (Thursday, from the data), 1, 4, 5, 6 January 2027
        assert workdays.add_working_days(D(2026, 12, 30), 5, conn) == D(2027, 1, 6)
        assert workdays.uncovered_years(conn, [2026, 2027]) == [2027]
        assert workdays.warnings(conn, D(2026, 11, 27)) == [
            "The 2027 public holiday schedule has not been entered yet"
        ]


def test_admin_entries_override_the_fallback_and_the_data(engine):
    with engine.begin() as conn:
        conn.execute(
            calendar_days.insert(),
            [
                {"day": "2027-01-01", "working": False, "note": "元旦"},
                {"day": "2026-10-08", "working": False, "note": "a local correction"},
            ],
        )
    with engine.connect() as conn:
        assert workdays.is_working_day(D(2027, 1, 1), conn) is False
        assert workdays.add_working_days(D(2026, 12, 30), 5, conn) == D(2027, 1, 7)
        assert workdays.uncovered_years(conn, [2026, 2027]) == []
        assert workdays.warnings(conn, D(2026, 11, 27)) == []
        assert workdays.is_working_day(D(2026, 10, 8), conn) is False
        assert workdays.add_working_days(D(2026, 9, 30), 1, conn) == D(2026, 10, 9)
    # without a connection the admin's entries are not seen
    assert workdays.is_working_day(D(2026, 10, 8)) is True
