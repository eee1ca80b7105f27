"""Figures per channel for every dimension; a leaner figures table (issue 8).

`figures_daily` gets the rating's channel in its key (so windows, staff,
items, tags and hours can be read for one channel), loses its second index,
and on SQLite becomes a WITHOUT ROWID table (one B-tree per upsert instead of
three). The old rows cannot be split by channel, so the table is made anew,
empty: the collector rebuilds the figures from the evaluations on its next
start (sync_server/figures.py, `init_app`), or `hcp collector
rebuild-figures` does at once. The downgrade likewise leaves an empty table
of the old shape, which the older version rebuilds the same way.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _levels() -> list:
    return [sa.Column(f"n{s}", sa.Integer, nullable=False) for s in range(1, 6)]


def upgrade() -> None:
    op.drop_index("ix_figures_daily_unit", table_name="figures_daily")
    op.drop_table("figures_daily")
    op.create_table(
        "figures_daily",
        sa.Column("dim", sa.String(8), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("unit_id", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(100), primary_key=True),
        *_levels(),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("figures_daily")
    op.create_table(
        "figures_daily",
        sa.Column("dim", sa.String(8), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("unit_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(100), primary_key=True),
        *_levels(),
    )
    op.create_index("ix_figures_daily_unit", "figures_daily", ["dim", "unit_id", "day"])
