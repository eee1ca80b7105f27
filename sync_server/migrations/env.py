"""Alembic environment: migrations run on the connection that db.init() opens."""

from alembic import context

from sync_server.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through sync_server.db.init(engine)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
