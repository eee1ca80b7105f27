"""Service events and every rating channel (issue 10).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("repeat_of", sa.String(100)))
    op.create_table(
        "service_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_no", sa.String(64), nullable=False),
        sa.Column("service_no", sa.String(64), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("unit_id", sa.String(64), nullable=False),
        sa.Column("window_id", sa.String(64)),
        sa.Column("staff_id", sa.String(64)),
        sa.Column("handled_at", sa.String(20), nullable=False),
        sa.Column("registered_at", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("registered_by", sa.String(80)),
        sa.Column("rating_id", sa.String(100)),
        sa.Column("appended_id", sa.String(100)),
        sa.Column("phone_ref", sa.String(64)),
    )
    op.create_index(
        "ux_service_events_case", "service_events", ["case_no", "service_no"], unique=True
    )
    op.create_index("ix_service_events_window", "service_events", ["window_id", "handled_at"])
    op.create_index("ix_service_events_unit", "service_events", ["unit_id", "handled_at"])
    op.create_table(
        "event_ratings",
        sa.Column("rating_id", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("late", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("at", sa.String(32), nullable=False),
    )
    op.create_index("ix_event_ratings_event", "event_ratings", ["event_id"])
    op.create_table(
        "unbound_ratings",
        sa.Column("rating_id", sa.String(100), primary_key=True),
        sa.Column("case_no", sa.String(64), nullable=False),
        sa.Column("service_no", sa.String(64), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.Column("repeat_of", sa.String(100)),
    )
    op.create_index("ix_unbound_ratings_case", "unbound_ratings", ["case_no", "service_no"])
    op.create_index("ix_unbound_ratings_received", "unbound_ratings", ["received_at"])


def downgrade() -> None:
    op.drop_table("unbound_ratings")
    op.drop_table("event_ratings")
    op.drop_table("service_events")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("repeat_of")
