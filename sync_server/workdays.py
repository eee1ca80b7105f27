"""Working days in mainland China: weekends, public holidays and the adjusted
working weekends (调休) the State Council publishes each year.

Three sources, strongest first:

1. the admin's calendar (`calendar_days`, edited on the deadline settings
   page): one row per date that is a holiday (working=False) or a working day
   (working=True), e.g. next year's schedule as soon as it is published, or a
   local correction;
2. the `chinese_calendar` package, which knows the published schedules of the
   years it was released with (1.11: 2004–2026) and raises
   NotImplementedError for any other year;
3. Monday to Friday, for a year neither of the above covers. Such a year is
   reported by `uncovered_years` so the settings page and the digest can warn
   ("2027年节假日安排尚未录入") until the admin enters the year's schedule.

Every function takes an optional open connection `conn`: without one only
sources 2 and 3 are used (what the tests of pure date arithmetic want).
"""

from __future__ import annotations

import datetime as dt
import functools

import chinese_calendar
from sqlalchemy import select

# at most this many days are walked looking for working days: a bound against
# a calendar typed in with every day a holiday
MAX_SPAN_DAYS = 3660


@functools.lru_cache(maxsize=64)
def library_covers(year: int) -> bool:
    """Whether chinese_calendar has the published schedule for `year`."""
    try:
        chinese_calendar.is_workday(dt.date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def _library_or_weekday(day: dt.date) -> bool:
    if library_covers(day.year):
        return chinese_calendar.is_workday(day)
    return day.weekday() < 5


def admin_days(conn, first: dt.date | None = None, last: dt.date | None = None) -> dict:
    """The admin's entries {date: working} (optionally only first..last)."""
    if conn is None:
        return {}
    from sync_server.schema_rankings import calendar_days

    c = calendar_days.c
    query = select(c.day, c.working)
    if first is not None:
        query = query.where(c.day >= first.isoformat())
    if last is not None:
        query = query.where(c.day <= last.isoformat())
    return {dt.date.fromisoformat(row.day): bool(row.working) for row in conn.execute(query)}


class Calendar:
    """One read of the admin's entries, then any number of questions."""

    def __init__(self, conn=None):
        self.overrides = admin_days(conn)

    def is_working_day(self, day: dt.date) -> bool:
        entered = self.overrides.get(day)
        if entered is not None:
            return entered
        return _library_or_weekday(day)

    def add_working_days(self, day: dt.date, n: int) -> dt.date:
        if n < 0:
            raise ValueError(f"n: must be 0 or more, got {n}")
        current, found = day, 0
        for _step in range(MAX_SPAN_DAYS):
            if found == n:
                return current
            current += dt.timedelta(days=1)
            if self.is_working_day(current):
                found += 1
        raise ValueError(f"no {n} working days within {MAX_SPAN_DAYS} days after {day}")

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        if b < a:
            return -self.working_days_between(b, a)
        if (b - a).days > MAX_SPAN_DAYS:
            raise ValueError(f"span: more than {MAX_SPAN_DAYS} days from {a} to {b}")
        count, current = 0, a
        while current < b:
            current += dt.timedelta(days=1)
            if self.is_working_day(current):
                count += 1
        return count


def is_working_day(d: dt.date, conn=None) -> bool:
    """Whether `d` is a working day (admin entry, else the published schedule,
    else Monday–Friday)."""
    return Calendar(conn).is_working_day(d)


def add_working_days(d: dt.date, n: int, conn=None) -> dt.date:
    """The n-th working day after `d` (`d` itself when n is 0); `d` need not
    be a working day: the count starts on the next day."""
    return Calendar(conn).add_working_days(d, n)


def working_days_between(a: dt.date, b: dt.date, conn=None) -> int:
    """How many working days lie after `a` up to and including `b` (negative
    when b is before a): add_working_days(a, n) == b gives n when b is a
    working day."""
    return Calendar(conn).working_days_between(a, b)


def uncovered_years(conn, years) -> list[int]:
    """Of `years`, those the package does not know and the admin has entered
    nothing for: their deadlines fall back to Monday–Friday."""
    missing = []
    for year in sorted(set(years)):
        if library_covers(year):
            continue
        if admin_days(conn, dt.date(year, 1, 1), dt.date(year, 12, 31)):
            continue
        missing.append(year)
    return missing


def warnings(conn, today: dt.date | None = None) -> list[str]:
    """The calendar warnings to show now: this year and next (deadlines run
    into the next year from November on), in the UI language."""
    from flask_babel import gettext as _

    today = today or dt.date.today()
    return [
        _("The %(year)s public holiday schedule has not been entered yet", year=year)
        for year in uncovered_years(conn, (today.year, today.year + 1))
    ]
