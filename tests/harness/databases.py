"""Database fixtures: every collector test runs on SQLite and on PostgreSQL.

PostgreSQL is the machine's own server (127.0.0.1:5432, user postgres); each
test process migrates one database once and puts it back to that state before
each test (`engine`); a module-scoped world takes a database of its own. Where no server
answers, the PostgreSQL cases are skipped, except in CI (CI=true), where a
missing server is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import pytest

from sync_server import db

PG_ADMIN_URL = os.environ.get("HCP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_admin():
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


@contextlib.contextmanager
def postgres_database():
    """A new, empty PostgreSQL database for as long as the block runs (dropped
    afterwards). A module-scoped world that must outlive the per-test
    `engine` fixture's resets takes its own database from here."""
    try:
        admin = _pg_admin()
    except Exception as exc:  # any failure to connect means no usable server here
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but did not answer: {exc}")
        pytest.skip(f"no PostgreSQL server here: {exc}")
    name = "hcp_test_" + uuid.uuid4().hex[:12]
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite database, made once per run and copied for each test
    (running every migration costs a tenth of a second per test)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "collector.db"
    eng = db.make_engine(f"sqlite:///{path}")
    db.init(eng)
    eng.dispose()
    return path


class MigratedPostgres:
    """A PostgreSQL database migrated once, with what the migrations left in
    it: `reset` puts it back to that state (much cheaper than dropping the
    schema and running every migration again: about a second a test, two or
    three on a loaded machine)."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.url = url
        eng = db.make_engine(url)
        try:
            db.init(eng)
            self.metadata = sa.MetaData()
            self.metadata.reflect(eng)
            self.tables = sorted(self.metadata.tables)
            with eng.connect() as conn:
                self.rows = {
                    table.name: [dict(row._mapping) for row in conn.execute(table.select())]
                    for table in self.metadata.sorted_tables
                }
                self.sequences = conn.exec_driver_sql(
                    "SELECT sequencename, COALESCE(last_value, start_value), last_value IS NOT NULL"
                    " FROM pg_sequences WHERE schemaname = 'public'"
                ).all()
        finally:
            eng.dispose()

    def reset(self, eng) -> None:
        """Back to the state right after the migrations, in one transaction:
        every row deleted, the rows the migrations wrote (alembic_version, the
        seeded pf_map) put back, every sequence set back."""
        with eng.begin() as conn:
            for table in reversed(self.metadata.sorted_tables):
                conn.execute(table.delete())
            for table in self.metadata.sorted_tables:
                if self.rows[table.name]:
                    conn.execute(table.insert(), self.rows[table.name])
            for name, value, called in self.sequences:
                conn.exec_driver_sql(
                    "SELECT setval(%(name)s::regclass, %(value)s, %(called)s)",
                    {"name": f'"{name}"', "value": value, "called": called},
                )

    def check(self, eng) -> None:
        """A test that changed the schema fails, rather than leak it to the next."""
        import sqlalchemy as sa

        now = sorted(sa.inspect(eng).get_table_names())
        assert now == self.tables, "a test changed the schema of the shared database"


_MIGRATED: dict[str, MigratedPostgres] = {}  # this process's (one per xdist worker)


@pytest.fixture(scope="module")
def migrated_postgres(request):
    """The PostgreSQL database migrated once per test process and shared by
    every module (each test using `engine` empties it first); dropped when
    the run ends."""
    if "postgresql" not in _MIGRATED:
        stack = contextlib.ExitStack()
        url = stack.enter_context(postgres_database())  # skips (or fails in CI) without a server
        try:
            _MIGRATED["postgresql"] = MigratedPostgres(url)
        except BaseException:
            stack.close()
            raise
        request.config.add_cleanup(stack.close)
    return _MIGRATED["postgresql"]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """A fresh, migrated collector database of each kind: SQLite copied from
    the run's migrated template, PostgreSQL the process's migrated database
    put back to its just-migrated state."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "collector.db")
        eng = db.make_engine(f"sqlite:///{tmp_path / 'collector.db'}")
        db.init(eng)
        yield eng
        eng.dispose()
        return
    migrated = request.getfixturevalue("migrated_postgres")
    eng = db.make_engine(migrated.url)
    migrated.reset(eng)
    yield eng
    migrated.check(eng)
    eng.dispose()
