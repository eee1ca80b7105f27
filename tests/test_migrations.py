"""The Alembic migrations build exactly the schema that db.py describes."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from sync_server import db


def test_migrations_match_the_schema_in_code(engine):
    # `engine` was initialised through db.init(), i.e. by the migrations
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == "0001"
        assert compare_metadata(context, db.metadata) == []


def test_init_is_idempotent(engine):
    db.init(engine)
    db.init(engine)
    names = set(inspect(engine).get_table_names())
    assert {"evaluations", "quarantine", "devices", "users", "alembic_version"} <= names
