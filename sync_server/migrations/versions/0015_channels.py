"""Schema changes for the citizen channels (issue 10): a device's contact is
kept sealed (sync_server/contacts.py), so its column is widened to hold the
sealed value, and a keyed hash of the number (`lookup`) is kept beside it.

The rows already there are sealed by the app when it starts
(contacts.seal_clear_rows, from citizen.init_app): the key lives in the
instance folder, which a migration running on a bare connection does not
know; a value is sealed once and recognised by its prefix.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.alter_column(
            "contact", existing_type=sa.String(20), type_=sa.String(128), existing_nullable=False
        )
        batch.add_column(sa.Column("lookup", sa.String(64)))


def downgrade() -> None:
    # sealed values do not fit the old width: a downgrade keeps the wide column
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("lookup")
