"""Tables of pre-aggregated figures maintained by ingest (issue 8).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0006_figures.py.

`figures_daily` holds one row per (dimension, local day, unit, key) with the
number of counting ratings at each level (n1 = 非常不满意 ... n5 = 非常满意).
The day is the rating's local day in Asia/Shanghai (from `effective_at`), the
unit the one the rating resolved to at its own time (`org.resolved_unit`;
"" when none), and the key depends on the dimension:

    unit     the rating's channel (so figures by unit can be filtered by channel,
             and figures by channel and by day are sums of these rows)
    window   window_id        staff   staff_id        item   item_code
    hour     the local hour of day, "00".."23"
    tag      one content tag code (a rating with three tags adds to three rows)

Ratings without a window, staff member or item count in their unit's rows
only. sync_server/figures.py keeps the table; nothing else writes it.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table

from sync_server.db import metadata

LEVEL_COLUMNS = ("n1", "n2", "n3", "n4", "n5")

figures_daily = Table(
    "figures_daily",
    metadata,
    Column("dim", String(8), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, Asia/Shanghai
    Column("unit_id", String(64), primary_key=True),  # "" when the unit is unknown
    Column("key", String(100), primary_key=True),
    *(Column(name, Integer, nullable=False, default=0) for name in LEVEL_COLUMNS),
    # a unit manager's figures: the rows of a few units over a period
    Index("ix_figures_daily_unit", "dim", "unit_id", "day"),
)
