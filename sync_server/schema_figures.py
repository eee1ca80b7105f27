"""Tables of pre-aggregated figures maintained by ingest (issue 8).

They live in db.metadata (db.py imports this module), so the migrations test
compares them with migrations/versions/0006_figures.py and 0017_figures.py.

`figures_daily` holds one row per (dimension, local day, unit, channel, key)
with the number of counting ratings at each level (n1 = 非常不满意 ... n5 =
非常满意). The day is the rating's local day in Asia/Shanghai (from
`effective_at`), or its month ("YYYY-MM") in the rows of a dimension whose
name ends in ".m"; the unit the one the rating resolved to at its own time
(`org.resolved_unit`; "" when none), the channel the rating's, and the key
depends on the dimension:

    unit     "" (figures by unit, by channel and by day are sums of these rows)
    window   window_id        staff   staff_id        item   item_code
    hour     the local hour of day, "00".."23"
    tag      one content tag code (a rating with three tags adds to three rows)

Ratings without a window, staff member or item count in their unit's rows
only. sync_server/figures.py keeps the table; nothing else writes it.

The primary key is the only index (reads give the dimension and a range of
days; a unit manager's rows are a part of the district's, never more to
read), and on SQLite the table is WITHOUT ROWID: an upsert then writes one
B-tree instead of three (docs/figures.md, "Cost on ingest").
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table

from sync_server.db import metadata

LEVEL_COLUMNS = ("n1", "n2", "n3", "n4", "n5")

figures_daily = Table(
    "figures_daily",
    metadata,
    Column("dim", String(8), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, Asia/Shanghai
    Column("unit_id", String(64), primary_key=True),  # "" when the unit is unknown
    Column("channel", String(16), primary_key=True),  # the rating's channel
    Column("key", String(100), primary_key=True),
    *(Column(name, Integer, nullable=False, default=0) for name in LEVEL_COLUMNS),
    sqlite_with_rowid=False,
)
