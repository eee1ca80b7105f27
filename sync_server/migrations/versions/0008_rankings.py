"""Deadline rules, the holiday calendar, rankings, 通报 and the public page (issue 9).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("working", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("updated_by", sa.String(80)),
        sa.Column("updated_at", sa.String(32)),
    )
    op.create_table(
        "deadline_rules",
        sa.Column("unit_id", sa.String(64), primary_key=True),
        sa.Column("immediate_days", sa.Integer),
        sa.Column("immediate_basis", sa.String(8)),
        sa.Column("general_days", sa.Integer, nullable=False),
        sa.Column("general_basis", sa.String(8), nullable=False),
        sa.Column("complex_days", sa.Integer, nullable=False),
        sa.Column("complex_basis", sa.String(8), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("updated_by", sa.String(80)),
        sa.Column("updated_at", sa.String(32)),
    )
    op.create_table(
        "loop_settings",
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("updated_by", sa.String(80)),
        sa.Column("updated_at", sa.String(32)),
    )
    op.create_table(
        "ranking_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(24), nullable=False),
        sa.Column("first_day", sa.String(10), nullable=False),
        sa.Column("last_day", sa.String(10), nullable=False),
        sa.Column("automatic", sa.Boolean, nullable=False),
        sa.Column("computed_at", sa.String(32), nullable=False),
        sa.Column("computed_by", sa.String(80), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ux_ranking_snapshots_period", "ranking_snapshots", ["period"], unique=True)


def downgrade() -> None:
    for table in ("ranking_snapshots", "loop_settings", "deadline_rules", "calendar_days"):
        op.drop_table(table)
