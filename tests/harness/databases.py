"""Database fixtures: every collector test runs on SQLite and on PostgreSQL.

PostgreSQL is the machine's own server (127.0.0.1:5432, user postgres); each
test module gets a fresh database that is dropped afterwards. Where no server
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


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """A fresh, initialised collector database of each kind."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "collector.db")
        url = f"sqlite:///{tmp_path / 'collector.db'}"
    else:
        # one database per module, emptied before each test
        url = request.getfixturevalue("postgres_url")
    eng = db.make_engine(url)
    if request.param == "postgresql":
        with eng.begin() as conn:  # empty, including Alembic's version table
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.init(eng)
    yield eng
    eng.dispose()
