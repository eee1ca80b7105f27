"""Schema changes for reporting upward and gaming (issue 13).

- `window_pauses`: the pause intervals the window PC reports (the gaming
  rule `while_paused`);
- a 差评 stored with `reason_owed` waits in the outbox (`held`) until its
  reason is recorded: rows of such ratings still pending, or refused by the
  province for want of a reason, are held now.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

HELD_REASON = "held: reason owed (the rater gave none; the call-back records it)"


def upgrade() -> None:
    op.create_table(
        "window_pauses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("window_id", sa.String(64), nullable=False),
        sa.Column("paused_at", sa.String(32), nullable=False),
        sa.Column("resumed_at", sa.String(32)),
        sa.Column("reported_by", sa.String(80), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
    )
    op.create_index(
        "ux_window_pauses_start", "window_pauses", ["window_id", "paused_at"], unique=True
    )
    op.execute(
        sa.text(
            "UPDATE outbox SET state = 'held', payload = NULL, reason = :reason "
            "WHERE kind = 'rating' AND (state = 'pending' OR (state = 'dead' AND reason LIKE "
            "'%needs a reason%')) AND ref IN (SELECT id FROM evaluations WHERE reason_owed)"
        ).bindparams(reason=HELD_REASON)
    )


def downgrade() -> None:
    op.execute(
        "UPDATE outbox SET state = 'pending', reason = NULL WHERE state IN ('held', 'overdue')"
    )
    op.drop_index("ux_window_pauses_start", table_name="window_pauses")
    op.drop_table("window_pauses")
