"""An index on the service event a rating names (gaming rules, case pages).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_evaluations_case_no", "evaluations", ["case_no", "service_no"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_case_no", table_name="evaluations")
