"""Cheaper worlds for the channel and reporting test files.

Each gives a test the same state as the slower way it replaces:

- `engine` (a test module takes it with the fixture it uses:
  `engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres`):
  the same fresh, migrated database per test as tests/harness/databases.py,
  but PostgreSQL is migrated once per test process and emptied between tests
  instead of dropping its schema and running every migration again (about a
  second per test, two or three on a loaded machine). Emptying deletes every
  row, puts back the rows the migrations themselves wrote (alembic_version,
  the seeded pf_map) and sets every sequence back where the migrations left
  it; afterwards the table list is checked against the migrated one, so a
  test that changed the schema fails rather than leaking it to the next.
  SQLite copies the run's migrated template as before.
- `module_world(request, tmp_path_factory, build)`: one app per database for
  the whole module, for the cases that only read or whose change the app
  refuses (tests/test_access.py `reading_world`, tests/test_api.py
  `reading`). A refusal that wrongly went through fails its own case. On
  PostgreSQL the world lives in a schema of its own in the shared migrated
  database; on SQLite it starts from the run's migrated template.
- `serve_web(app)`: the collector app served over HTTP as
  sync_server.cli.serve_web does (werkzeug's threaded server in a daemon
  thread), but polling for shutdown every 50 ms instead of every 500 ms, so
  stopping it after each test does not wait half a second.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import uuid

import pytest
from werkzeug.serving import make_server

from sync_server import db
from tests.harness.collector import app_with_users
from tests.harness.databases import (  # noqa: F401 - fixtures re-exported
    MigratedPostgres,
    engine,
    migrated_postgres,
    postgres_database,
)

# the per-test `engine` and the process's migrated database now live in
# tests/harness/databases.py for every test file; the names stay importable here
_Migrated = MigratedPostgres


@contextlib.contextmanager
def _schema_of(migrated: _Migrated):
    """A URL of the module's PostgreSQL database whose tables live in a schema
    of their own (search_path), apart from the public schema the per-test
    `engine` empties; creating and dropping a schema is much cheaper than a
    database (dropping a database waits for a checkpoint)."""
    name = "world_" + uuid.uuid4().hex[:12]
    admin = db.make_engine(migrated.url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        try:
            yield f"{migrated.url}?options=-csearch_path%3D{name}"
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        admin.dispose()


@contextlib.contextmanager
def module_world(request, tmp_path_factory, build, **config):
    """One app with users per database (`request.param`), built by `build(app)`.
    On PostgreSQL it uses a schema of the module's `migrated_postgres`
    database when the module has that fixture, else a database of its own."""
    folder = tmp_path_factory.mktemp("module-world")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":  # a copy of the run's migrated template
            shutil.copyfile(request.getfixturevalue("sqlite_template"), folder / "collector.db")
            url = f"sqlite:///{folder / 'collector.db'}"
        else:
            try:
                migrated = request.getfixturevalue("migrated_postgres")
            except pytest.FixtureLookupError:
                url = stack.enter_context(postgres_database())
            else:
                url = stack.enter_context(_schema_of(migrated))
        app = stack.enter_context(app_with_users(folder, url, **config))
        build(app)
        yield app


SHUTDOWN_POLL_S = 0.05


def serve_web(app, host: str = "127.0.0.1", port: int = 0):
    """(server, thread) like sync_server.cli.serve_web; `server.shutdown()`
    returns within SHUTDOWN_POLL_S."""
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": SHUTDOWN_POLL_S},
        name="hcp-web-test",
        daemon=True,
    )
    thread.start()
    return server, thread
