"""The collector's web app for tests: an app with an admin and a viewer, and
logging in the way a browser does (fetch the form, send back its CSRF token)."""

from __future__ import annotations

import contextlib
import functools
import re

import pytest
from werkzeug.security import generate_password_hash

from sync_server import create_app, db

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')
ADMIN = ("admin", "admin-pass-1")
VIEWER = ("viewer", "viewer-pass-1")


def make_app(tmp_path, database_url=None, **config):
    """A collector app on its own instance folder (SQLite in tmp_path by default)."""
    settings = {
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'collector.db'}",
    }
    settings.update(config)
    return create_app(settings, instance_path=str(tmp_path / "instance"))


@functools.cache
def _password_hash(password):
    """A cheap hash for test users: checking the collector's scrypt costs a
    quarter of a second per login, and the tests log in thousands of times.
    werkzeug reads the method from the hash, so logging in works the same;
    users made through the collector itself still get scrypt."""
    return generate_password_hash(password, method="pbkdf2:sha256:1000")


def add_users(app):
    """The admin and the viewer (their hashes made once per run)."""
    with app.extensions["hcp_engine"].begin() as conn:
        for (username, password), role in ((ADMIN, "admin"), (VIEWER, "supervisor")):
            conn.execute(
                db.users.insert().values(
                    username=username,
                    password_hash=_password_hash(password),
                    role=role,
                    created_at=db.utc_now(),
                )
            )


class AuthActions:
    """Logs in the way a browser does: fetch the form, send back its CSRF token."""

    def __init__(self, client):
        self.client = client

    def csrf_token(self, path="/login"):
        page = self.client.get(path).get_data(as_text=True)
        return CSRF_FIELD.search(page).group(1)

    def login(self, username="admin", password=None, next_path=None):
        password = password or dict([ADMIN, VIEWER]).get(username, "")
        token = self.csrf_token()
        url = "/login" + (f"?next={next_path}" if next_path else "")
        return self.client.post(
            url, data={"username": username, "password": password, "csrf_token": token}
        )

    def logout(self):
        token = self.csrf_token("/")
        return self.client.post("/logout", data={"csrf_token": token})


@contextlib.contextmanager
def app_with_users(tmp_path, database_url=None, **config):
    app = make_app(tmp_path, database_url, **config)
    add_users(app)
    yield app
    app.extensions["hcp_engine"].dispose()


@pytest.fixture
def app(tmp_path):
    """The collector app on SQLite with an admin and a viewer; a test module
    may override it (tests/test_api.py runs it on each database)."""
    with app_with_users(tmp_path) as app:
        yield app


@pytest.fixture
def engine_app(engine, tmp_path):
    """The collector app on the `engine` fixture's database (SQLite, PostgreSQL)."""
    with app_with_users(tmp_path, engine.url.render_as_string(hide_password=False)) as app:
        yield app


@pytest.fixture
def client(app):
    """A test client of the module's `app` fixture."""
    return app.test_client()


@pytest.fixture
def admin(client):
    """The test client, logged in as the admin."""
    AuthActions(client).login("admin")
    return client


@pytest.fixture
def viewer(client):
    """The test client, logged in as the viewer."""
    AuthActions(client).login("viewer")
    return client


@contextlib.contextmanager
def running_ingest(broker, tmp_path, client_id: str, database_url: str | None = None):
    """The collector's MQTT ingest on `broker`, storing in SQLite under
    tmp_path (or `database_url`); yields the running IngestService.

    It logs in with the broker's collector login (none on an open broker);
    on a broker with access control the devices let in are made those the
    database holds (none in a new one), as revocation does."""
    from sync_server.ingest import IngestService

    engine = db.make_engine(database_url or f"sqlite:///{tmp_path / 'collector.db'}")
    db.init(engine)
    broker.allow(db.device_keys(engine))
    user, password = broker.collector_login()
    service = IngestService(
        engine, broker.host, broker.port, client_id=client_id, username=user, password=password
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()
        engine.dispose()


def provision(broker, engine, device_id, key_hex, **fields):
    """Register a device with the collector (db.add_device, `fields` passed
    on) and let the devices the database holds into `broker` (a reload of
    its password file on a broker with access control; nothing on an open
    one), as `hcp provision` and the admins' pages leave them."""
    db.add_device(engine, device_id, key_hex, **fields)
    broker.allow(db.device_keys(engine))
