"""Schema changes for a cheaper ingest (issue 12).

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27
"""

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
