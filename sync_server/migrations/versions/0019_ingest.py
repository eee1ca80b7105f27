"""Schema changes for a cheaper ingest (issue 12).

The index on evaluations.rated_at is dropped: no query filters, orders or
groups on rated_at (the device's own claim of the time; every period, list
and export reads effective_at, which has its own index), so it only cost
each stored rating one more index entry. The other secondary indexes each
serve a query (docs/architecture.md, "Ingest").

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_evaluations_rated_at", table_name="evaluations")


def downgrade() -> None:
    op.create_index("ix_evaluations_rated_at", "evaluations", ["rated_at"])
