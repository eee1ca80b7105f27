"""The citizen channels: QR pages, web portal, SMS, paper cards, phones (issue 10).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = (
    "followup_remarks",
    "used_forms",
    "paper_entries",
    "paper_serials",
    "sms_reasons",
    "sms_messages",
    "sms_conversations",
    "portal_failures",
    "event_phones",
    "rater_phones",
)


def upgrade() -> None:
    op.create_table(
        "rater_phones",
        sa.Column("record_id", sa.String(100), primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "event_phones",
        sa.Column("case_no", sa.String(64), primary_key=True),
        sa.Column("service_no", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("lookup", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(32), nullable=False),
        sa.Column("registered_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_event_phones_lookup", "event_phones", ["lookup"])
    op.create_index("ux_event_phones_ref", "event_phones", ["ref"], unique=True)
    op.create_table(
        "portal_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_no", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
    )
    op.create_index("ix_portal_failures_case", "portal_failures", ["case_no", "at"])
    op.create_index("ix_portal_failures_address", "portal_failures", ["address", "at"])
    op.create_table(
        "sms_conversations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_no", sa.String(64), nullable=False),
        sa.Column("service_no", sa.String(64), nullable=False),
        sa.Column("lookup", sa.String(64), nullable=False),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("invited_at", sa.String(32)),
        sa.Column("closes_on", sa.String(10)),
        sa.Column("record_id", sa.String(100)),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_index(
        "ux_sms_conversations_event", "sms_conversations", ["case_no", "service_no"], unique=True
    )
    op.create_index("ix_sms_conversations_lookup", "sms_conversations", ["lookup", "id"])
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.Integer),
        sa.Column("lookup", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("at", sa.String(32), nullable=False),
    )
    op.create_index("ix_sms_messages_conversation", "sms_messages", ["conversation_id"])
    op.create_table(
        "sms_reasons",
        sa.Column("record_id", sa.String(100), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "paper_serials",
        sa.Column("window_id", sa.String(64), primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
        sa.Column("updated_by", sa.String(64)),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "paper_entries",
        sa.Column("card_no", sa.String(80), primary_key=True),
        sa.Column("record_id", sa.String(100), nullable=False),
        sa.Column("window_id", sa.String(64), nullable=False),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("entered_by", sa.String(64), nullable=False),
        sa.Column("entered_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_paper_entries_record", "paper_entries", ["record_id"])
    op.create_table(
        "used_forms",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(100), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("window_id", sa.String(64)),
        sa.Column("address", sa.String(64)),
    )
    op.create_index("ix_used_forms_window", "used_forms", ["window_id", "address", "at"])
    op.create_table(
        "followup_remarks",
        sa.Column("record_id", sa.String(100), primary_key=True),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
