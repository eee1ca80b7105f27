"""The organisation: units, windows, staff, service items and their placements
in the tree over time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _entity(name: str, *extra) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        *extra,
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("retired_at", sa.String(32)),
    )


def upgrade() -> None:
    _entity("org_units", sa.Column("kind", sa.String(16), nullable=False))
    _entity("windows")
    _entity(
        "staff",
        sa.Column("photo", sa.LargeBinary),
        sa.Column("photo_type", sa.String(32)),
    )
    _entity("service_items")
    op.create_table(
        "placements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("unit_id", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.String(20), nullable=False),
        sa.Column("valid_to", sa.String(20)),
    )
    op.create_index("ix_placements_subject", "placements", ["kind", "subject_id", "valid_from"])
    op.create_index("ix_placements_unit", "placements", ["unit_id"])


def downgrade() -> None:
    for table in ("placements", "service_items", "staff", "windows", "org_units"):
        op.drop_table(table)
