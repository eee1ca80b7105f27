"""Schema changes for the fleet (issue 11).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
