"""Device configuration, commands and firmware updates (issue 11).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_configs",
        sa.Column("device_id", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(80), nullable=False),
        sa.Column("published_version", sa.Integer),
        sa.Column("published_at", sa.String(32)),
        sa.Column("applied_version", sa.Integer),
        sa.Column("applied_since", sa.String(32)),
    )
    op.create_table(
        "fleet_commands",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("cmd", sa.String(16), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("sent_at", sa.String(32)),
        sa.Column("sends", sa.Integer, nullable=False),
        sa.Column("answered_at", sa.String(32)),
        sa.Column("result", sa.Text),
        sa.Column("boot_id", sa.String(32)),
        sa.Column("rollout_id", sa.Integer),
    )
    op.create_index("ix_fleet_commands_device", "fleet_commands", ["device_id", "state"])
    op.create_table(
        "firmware_bundles",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
    )
    op.create_table(
        "firmware_files",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("path", sa.String(200), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "firmware_rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("health_s", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("stopped_at", sa.String(32)),
    )
    op.create_table(
        "firmware_targets",
        sa.Column("rollout_id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("command_id", sa.String(40)),
        sa.Column("from_version", sa.String(32)),
        sa.Column("detail", sa.Text),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "firmware_targets",
        "firmware_rollouts",
        "firmware_files",
        "firmware_bundles",
    ):
        op.drop_table(name)
    op.drop_index("ix_fleet_commands_device", table_name="fleet_commands")
    op.drop_table("fleet_commands")
    op.drop_table("fleet_configs")
