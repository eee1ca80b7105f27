"""Schema changes for the fleet's desired configuration (issue 11).

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-27
"""

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
