"""Schema changes for reporting upward and gaming (issue 13).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27
"""

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
