"""Reporting upward: the outbox to the provincial platform (issue 13).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("ref", sa.String(140), nullable=False),
        sa.Column("case_no", sa.String(64)),
        sa.Column("service_no", sa.String(64)),
        sa.Column("stored_at", sa.String(32), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_try_at", sa.String(32)),
        sa.Column("last_error", sa.Text),
        sa.Column("payload", sa.Text),
        sa.Column("acked_at", sa.String(32)),
        sa.Column("province_ref", sa.String(64)),
        sa.Column("flags", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("resends", sa.Integer, nullable=False),
        sa.Column("handled_by", sa.String(80)),
        sa.Column("handled_at", sa.String(32)),
    )
    op.create_index("ux_outbox_ref", "outbox", ["kind", "ref"], unique=True)
    op.create_index("ix_outbox_state", "outbox", ["state", "id"])
    op.create_index("ix_outbox_case", "outbox", ["case_no", "service_no"])
    op.create_index("ix_outbox_stored", "outbox", ["stored_at"])
    op.create_table(
        "outbox_sender",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("last_ack_at", sa.String(32)),
        sa.Column("holder", sa.String(80)),
        sa.Column("lease_until", sa.String(32)),
    )
    op.create_table(
        "gaming_flags",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("record_id", sa.String(100)),
        sa.Column("subject", sa.String(100)),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("flagged_at", sa.String(32), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("handled_by", sa.String(80)),
        sa.Column("handled_at", sa.String(32)),
    )
    op.create_index("ux_gaming_flags_key", "gaming_flags", ["rule", "key"], unique=True)
    op.create_index("ix_gaming_flags_state", "gaming_flags", ["state", "flagged_at"])


def downgrade() -> None:
    op.drop_table("gaming_flags")
    op.drop_table("outbox_sender")
    op.drop_table("outbox")
