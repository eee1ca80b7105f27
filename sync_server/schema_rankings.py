"""Tables of deadline rules, the holiday calendar, rankings, 通报 and the public page (issue 9).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0008_rankings.py.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text

from sync_server.db import metadata

# The admin's calendar: a date that is a holiday (working False) or a working
# day (working True, an adjusted weekend) whatever chinese_calendar or the
# weekday say (sync_server/workdays.py).
calendar_days = Table(
    "calendar_days",
    metadata,
    Column("day", String(10), primary_key=True),  # local date, YYYY-MM-DD
    Column("working", Boolean, nullable=False),
    Column("note", Text),  # e.g. 国庆节, 国庆节调休上班
    Column("updated_by", String(80)),
    Column("updated_at", String(32)),
)

# A deadline rule for a unit's subtree (the nearest rule up the tree wins;
# sync_server/deadlines.py): per kind of problem, a number of days and whether
# they are natural or working days. "immediate" (立行立改) is optional.
deadline_rules = Table(
    "deadline_rules",
    metadata,
    Column("unit_id", String(64), primary_key=True),
    Column("immediate_days", Integer),
    Column("immediate_basis", String(8)),  # natural | working
    Column("general_days", Integer, nullable=False),
    Column("general_basis", String(8), nullable=False),
    Column("complex_days", Integer, nullable=False),
    Column("complex_basis", String(8), nullable=False),
    Column("note", Text),  # where the rule comes from, e.g. 临沂 1/5/15
    Column("updated_by", String(80)),
    Column("updated_at", String(32)),
)

# Settings of the loop that are not per unit: the "due soon" threshold, how
# many places count as the bottom of a ranking and for how many consecutive
# periods (sync_server/deadlines.py SETTINGS).
loop_settings = Table(
    "loop_settings",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("updated_by", String(80)),
    Column("updated_at", String(32)),
)

# One computed ranking (通报) per period: the figures of every unit, town,
# window, staff member and item as JSON, frozen when computed
# (sync_server/rankings.py).
ranking_snapshots = Table(
    "ranking_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("period", String(24), nullable=False),  # 2026-10, or 2026-10-01..2026-10-15
    Column("first_day", String(10), nullable=False),  # local dates, inclusive
    Column("last_day", String(10), nullable=False),
    Column("automatic", Boolean, nullable=False),  # the month-end run made it
    Column("computed_at", String(32), nullable=False),
    Column("computed_by", String(80), nullable=False),
    Column("data", Text, nullable=False),
    Index("ux_ranking_snapshots_period", "period", unique=True),
)
