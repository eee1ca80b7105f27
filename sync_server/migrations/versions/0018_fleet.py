"""Schema changes for the fleet (issue 11): ratings known to be lost with a
wiped or swapped board (fleet_seq_gaps, sync_server/schema_fleet.py).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_seq_gaps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("first_seq", sa.Integer, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("noted_at", sa.String(32), nullable=False),
        sa.Column("noted_by", sa.String(80), nullable=False),
    )
    op.create_index("ix_fleet_seq_gaps_device", "fleet_seq_gaps", ["device_id", "first_seq"])


def downgrade() -> None:
    op.drop_index("ix_fleet_seq_gaps_device", table_name="fleet_seq_gaps")
    op.drop_table("fleet_seq_gaps")
