"""Schema changes for the bad-review loop (issue 9): an index on the cases'
deadlines, for the daily digest, the overdue filter and the rankings' cases
due in a period (each asks by due_at alone, across states).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_due_at", "cases", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_due_at", table_name="cases")
