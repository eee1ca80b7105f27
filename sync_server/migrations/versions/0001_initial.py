"""The first schema: evaluations, quarantine, devices, users.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("device_id", sa.String(32)),
        sa.Column("seq", sa.BigInteger),
        sa.Column("stars", sa.SmallInteger, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("tags", sa.Text),
        sa.Column("content_version", sa.String(32)),
        sa.Column("comment", sa.Text),
        sa.Column("case_no", sa.String(64)),
        sa.Column("service_no", sa.String(64)),
        sa.Column("item_code", sa.String(64)),
        sa.Column("window_id", sa.String(64)),
        sa.Column("staff_id", sa.String(64)),
        sa.Column("org_id", sa.String(64)),
        sa.Column("rated_at", sa.String(20), nullable=False),
        sa.Column("clock", sa.String(8), nullable=False),
        sa.Column("boot_id", sa.String(32)),
        sa.Column("uptime_ms", sa.BigInteger),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("attempt", sa.SmallInteger, nullable=False),
        sa.Column("contact", sa.String(20)),
        sa.Column("sig", sa.String(64)),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.Column("excluded", sa.Boolean, nullable=False),
    )
    op.create_index("ix_evaluations_device_seq", "evaluations", ["device_id", "seq"], unique=True)
    for column in ("rated_at", "stars", "window_id", "staff_id", "org_id"):
        op.create_index(f"ix_evaluations_{column}", "evaluations", [column])
    op.create_table(
        "quarantine",
        sa.Column("qid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("device_id", sa.String(64)),
        sa.Column("record_id", sa.String(100)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(32), primary_key=True),
        sa.Column("key_hex", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("org_id", sa.String(64)),
        sa.Column("window_id", sa.String(64)),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("last_seen", sa.String(32)),
        sa.Column("status", sa.Text),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    for table in ("users", "devices", "quarantine", "evaluations"):
        op.drop_table(table)
