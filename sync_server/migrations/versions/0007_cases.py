"""The bad-review loop: cases, workflow, appeals, ledger (issue 9).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(100), nullable=False, unique=True),
        sa.Column("unit_id", sa.String(64)),
        sa.Column("assigned_by", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16)),
        sa.Column("deadline_kind", sa.String(16)),
        sa.Column("due_at", sa.String(20)),
        sa.Column("stars", sa.SmallInteger, nullable=False),
        sa.Column("effective_at", sa.String(20), nullable=False),
        sa.Column("item_code", sa.String(64)),
        sa.Column("window_id", sa.String(64)),
        sa.Column("staff_id", sa.String(64)),
        sa.Column("reason_owed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("reason", sa.Text),
        sa.Column("problem", sa.Text),
        sa.Column("visit_verdict", sa.String(16)),
        sa.Column("appeal_state", sa.String(16)),
        sa.Column("reopened", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("verified_at", sa.String(32)),
        sa.Column("classified_at", sa.String(32)),
        sa.Column("rectified_at", sa.String(32)),
        sa.Column("fed_back_at", sa.String(32)),
        sa.Column("visited_at", sa.String(32)),
        sa.Column("closed_at", sa.String(32)),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_cases_unit_state", "cases", ["unit_id", "state"])
    op.create_index("ix_cases_state_due", "cases", ["state", "due_at"])
    op.create_index("ix_cases_effective_at", "cases", ["effective_at"])
    op.create_table(
        "case_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_case_steps_case", "case_steps", ["case_id", "id"])
    op.create_table(
        "case_appeals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("record_id", sa.String(100), nullable=False),
        sa.Column("unit_id", sa.String(64)),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("file_name", sa.String(200)),
        sa.Column("file_type", sa.String(100)),
        sa.Column("file_data", sa.LargeBinary),
        sa.Column("file_bytes", sa.Integer),
        sa.Column("filed_by", sa.String(80), nullable=False),
        sa.Column("filed_at", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(80)),
        sa.Column("decided_at", sa.String(32)),
        sa.Column("decision_reason", sa.Text),
    )
    op.create_index("ix_case_appeals_state", "case_appeals", ["state", "filed_at"])
    op.create_index("ix_case_appeals_case", "case_appeals", ["case_id"])
    op.create_table(
        "case_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("match_kind", sa.String(8), nullable=False),
        sa.Column("match_id", sa.String(64), nullable=False),
        sa.Column("unit_id", sa.String(64), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ux_case_rules_match", "case_rules", ["match_kind", "match_id"], unique=True)
    op.create_table(
        "duty_contacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("unit_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(20)),
        sa.Column("email", sa.String(200)),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_duty_contacts_unit", "duty_contacts", ["unit_id"])
    op.create_table(
        "case_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, nullable=False),
        sa.Column("unit_id", sa.String(64)),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("sent_at", sa.String(32)),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_case_alerts_state", "case_alerts", ["state", "id"])
    op.create_index("ix_case_alerts_unit", "case_alerts", ["unit_id", "id"])


def downgrade() -> None:
    for table in (
        "case_alerts",
        "duty_contacts",
        "case_rules",
        "case_appeals",
        "case_steps",
        "cases",
    ):
        op.drop_table(table)
