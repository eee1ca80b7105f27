"""Pre-aggregated figures maintained by ingest (issue 8).

A database that already holds ratings gets an empty figures table here; the
collector fills it on its next start (sync_server/figures.py, `init_app`), or
`hcp collector rebuild-figures` does at once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "figures_daily",
        sa.Column("dim", sa.String(8), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("unit_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(100), primary_key=True),
        *(sa.Column(f"n{s}", sa.Integer, nullable=False) for s in range(1, 6)),
    )
    op.create_index("ix_figures_daily_unit", "figures_daily", ["dim", "unit_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_figures_daily_unit", table_name="figures_daily")
    op.drop_table("figures_daily")
