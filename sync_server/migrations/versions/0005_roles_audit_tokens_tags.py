"""Roles scoped to the organisation, login limits, the audit log, API tokens
and the content tag table. Existing viewers become supervisors (督查): they
keep seeing every unit's ratings and devices, and nothing more.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("unit_id", sa.String(64)))
        batch.add_column(sa.Column("disabled_at", sa.String(32)))
    op.execute("UPDATE users SET role = 'supervisor' WHERE role = 'viewer'")
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
    )
    op.create_index("ix_login_failures_username", "login_failures", ["username", "at"])
    op.create_index("ix_login_failures_address", "login_failures", ["address", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64)),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(200)),
        sa.Column("before", sa.Text),
        sa.Column("after", sa.Text),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_target", "audit_log", ["target"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("unit_id", sa.String(64)),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32)),
        sa.Column("last_used_at", sa.String(32)),
    )
    op.create_table(
        "tag_versions",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("in_force_from", sa.String(20)),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(64)),
        sa.Column("updated_at", sa.String(32)),
    )
    op.create_table(
        "content_tags",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
    )


def downgrade() -> None:
    for table in ("content_tags", "tag_versions", "api_tokens", "audit_log", "login_failures"):
        op.drop_table(table)
    op.execute("UPDATE users SET role = 'viewer' WHERE role <> 'admin'")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("unit_id")
