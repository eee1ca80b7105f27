"""Schema changes for the citizen channels (issue 10).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
