"""When a rating was made, as best known: effective_at and its source, and the
boot clock references that estimate it for devices whose clock was not set.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("effective_at", sa.String(20), nullable=True))
        batch.add_column(sa.Column("time_source", sa.String(12), nullable=True))
    # existing rows keep the device's own time: they predate the estimate
    op.execute("UPDATE evaluations SET effective_at = rated_at, time_source = 'device'")
    with op.batch_alter_table("evaluations") as batch:
        batch.alter_column("effective_at", existing_type=sa.String(20), nullable=False)
        batch.alter_column("time_source", existing_type=sa.String(12), nullable=False)
        batch.create_index("ix_evaluations_effective_at", ["effective_at"])
        batch.create_index("ix_evaluations_boot", ["device_id", "boot_id"])
    op.create_table(
        "boot_clocks",
        sa.Column("device_id", sa.String(32), primary_key=True),
        sa.Column("boot_id", sa.String(32), primary_key=True),
        sa.Column("uptime_ms", sa.BigInteger, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("boot_clocks")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_index("ix_evaluations_boot")
        batch.drop_index("ix_evaluations_effective_at")
        batch.drop_column("time_source")
        batch.drop_column("effective_at")
