"""The final version-1 contract: the fields channels, the 差评 loop and
reporting upward need; contacts kept apart from evaluations; the pf table in
force; a bounded quarantine.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from protocols.levels import CHANNEL_TO_PF

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_COLUMNS = (
    ("follows", sa.String(100)),
    ("case_staff_id", sa.String(64)),
    ("case_org_id", sa.String(64)),
    ("handled_at", sa.String(20)),
    ("client", sa.String(8)),
    ("entered_by", sa.String(64)),
    ("entered_at", sa.String(20)),
    ("card_date", sa.String(10)),
)


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("record_id", sa.String(100), primary_key=True),
        sa.Column("contact", sa.String(20), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
    )
    op.execute(
        "INSERT INTO contacts (record_id, contact, received_at)"
        " SELECT id, contact, received_at FROM evaluations WHERE contact IS NOT NULL"
    )
    with op.batch_alter_table("evaluations") as batch:
        for name, kind in NEW_COLUMNS:
            batch.add_column(sa.Column(name, kind))
        batch.add_column(
            sa.Column("reason_owed", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.drop_column("contact")
    # existing 差评 with neither tag nor text owe their reason
    op.execute(
        "UPDATE evaluations SET reason_owed = "
        + ("true" if op.get_bind().dialect.name == "postgresql" else "1")
        + " WHERE stars <= 2 AND tags IS NULL AND comment IS NULL"
    )
    pf_map = op.create_table(
        "pf_map",
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("client", sa.String(8), primary_key=True),
        sa.Column("pf", sa.SmallInteger),
        sa.Column("updated_by", sa.String(64)),
        sa.Column("updated_at", sa.String(32)),
    )
    op.bulk_insert(
        pf_map,
        [{"channel": c, "client": client, "pf": pf} for c, client, pf in CHANNEL_TO_PF],
    )
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("payload_bytes", sa.Integer))
        batch.add_column(sa.Column("payload_sha256", sa.String(64)))
        batch.create_index("ix_quarantine_device", ["device_id", "received_at"])
    op.create_table(
        "quarantine_dropped",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("dropped", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quarantine_dropped")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_index("ix_quarantine_device")
        batch.drop_column("payload_sha256")
        batch.drop_column("payload_bytes")
    op.drop_table("pf_map")
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("contact", sa.String(20)))
        batch.drop_column("reason_owed")
        for name, _kind in reversed(NEW_COLUMNS):
            batch.drop_column(name)
    op.execute(
        "UPDATE evaluations SET contact = "
        "(SELECT contact FROM contacts WHERE contacts.record_id = evaluations.id)"
    )
    op.drop_table("contacts")
