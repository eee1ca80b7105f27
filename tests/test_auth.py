"""Users, passwords, login and logout of the collector's web app."""

from __future__ import annotations

import stat

import pytest
from werkzeug.security import check_password_hash

from sync_server import create_app, db
from sync_server.auth import create_user
from tests.harness.collector import ADMIN, AuthActions


@pytest.fixture
def auth(client):
    return AuthActions(client)


# --- create_user -----------------------------------------------------------


def test_create_user_stores_a_hash_not_the_password(app):
    engine = app.extensions["hcp_engine"]
    create_user(engine, "clerk.01", "long-enough-8", "supervisor")
    with engine.connect() as conn:
        row = conn.execute(db.users.select().where(db.users.c.username == "clerk.01")).one()
    assert row.role == "supervisor"
    assert "long-enough-8" not in row.password_hash
    assert check_password_hash(row.password_hash, "long-enough-8")


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("admin", "another-pass", "admin", "username: 'admin' already exists"),
        ("newbie", "short77", "supervisor", "password: must be at least 8 characters"),
        (
            "newbie",
            "good-password",
            "owner",
            "role: must be one of admin, supervisor, unit_manager, technician, clerk",
        ),
        (
            "",
            "good-password",
            "supervisor",
            "username: must be 1..64 characters of A-Z a-z 0-9 . _ -",
        ),
        (
            "张三",
            "good-password",
            "supervisor",
            "username: must be 1..64 characters of A-Z a-z 0-9 . _ -",
        ),
        (
            "x" * 65,
            "good-password",
            "supervisor",
            "username: must be 1..64 characters of A-Z a-z 0-9 . _ -",
        ),
        ("newbie", "NEWBIE", "supervisor", "password: must be at least 8 characters"),
        (
            "newbie99",
            "NEWBIE99",
            "supervisor",
            "password: must not be the username or start/end with spaces",
        ),
        (
            "newbie",
            " padded-pass",
            "supervisor",
            "password: must not be the username or start/end with spaces",
        ),
    ],
)
def test_create_user_refuses_with_a_clear_message(app, username, password, role, message):
    with pytest.raises(ValueError) as caught:
        create_user(app.extensions["hcp_engine"], username, password, role)
    assert str(caught.value) == message


def test_a_refused_user_is_not_stored(app):
    engine = app.extensions["hcp_engine"]
    with pytest.raises(ValueError):
        create_user(engine, "admin", "another-pass", "supervisor")
    with engine.connect() as conn:
        rows = conn.execute(db.users.select().where(db.users.c.username == "admin")).all()
    assert [r.role for r in rows] == ["admin"]


# --- login and logout --------------------------------------------------------


def test_pages_send_a_stranger_to_the_login_form(client):
    response = client.get("/evaluations?stars=1")
    assert response.status_code == 302
    assert response.location == "/login?next=/evaluations?stars%3D1"


def test_api_answers_a_stranger_with_json_401(client):
    response = client.get("/api/v1/evaluations")
    assert response.status_code == 401
    assert response.get_json() == {"error": "login required"}


def test_login_then_dashboard_then_logout(client, auth):
    response = auth.login("viewer")
    assert response.status_code == 302
    assert response.location == "/"
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/evaluations").status_code == 200

    assert auth.logout().location == "/login"
    assert client.get("/").status_code == 302
    assert client.get("/api/v1/evaluations").status_code == 401


def test_login_returns_to_the_page_asked_for(auth):
    assert auth.login("admin", next_path="/devices").location == "/devices"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_login_never_redirects_to_another_site(auth, target):
    assert auth.login("admin", next_path=target).location == "/"


def test_wrong_password_is_refused_in_chinese(client, auth):
    response = auth.login("admin", "not-the-password")
    assert response.status_code == 401
    assert "用户名或密码错误。" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_unknown_user_gets_the_same_message(auth):
    response = auth.login("nobody", "whatever-pass")
    assert response.status_code == 401
    assert "用户名或密码错误。" in response.get_data(as_text=True)


def test_empty_form_asks_for_both_fields(client, auth):
    token = auth.csrf_token()
    response = client.post("/login?lang=en", data={"username": "", "csrf_token": token})
    assert response.status_code == 401
    assert "Please enter your username and password." in response.get_data(as_text=True)


def test_login_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"username": "admin", "password": ADMIN[1]})
    assert response.status_code == 400
    assert "The CSRF token is missing." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_logout_needs_a_post(client, auth):
    auth.login("admin")
    assert client.get("/logout").status_code == 405
    assert client.get("/").status_code == 200


def test_a_deleted_user_loses_the_session(app, client, auth):
    auth.login("viewer")
    with app.extensions["hcp_engine"].begin() as conn:
        conn.execute(db.users.delete().where(db.users.c.username == "viewer"))
    assert client.get("/api/v1/devices").status_code == 401


# --- secret key ---------------------------------------------------------------


def test_secret_key_is_made_once_per_instance_and_kept_private(tmp_path):
    first = create_app({"DATABASE_URL": "sqlite://"}, instance_path=str(tmp_path / "inst"))
    key_file = tmp_path / "inst" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.config["SECRET_KEY"]) == 64
    second = create_app({"DATABASE_URL": "sqlite://"}, instance_path=str(tmp_path / "inst"))
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    other = create_app({"DATABASE_URL": "sqlite://"}, instance_path=str(tmp_path / "other"))
    assert other.config["SECRET_KEY"] != first.config["SECRET_KEY"]


def test_an_empty_secret_key_file_is_an_error(tmp_path):
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "secret_key").write_text("\n")
    with pytest.raises(RuntimeError) as caught:
        create_app({"DATABASE_URL": "sqlite://"}, instance_path=str(tmp_path / "inst"))
    assert (
        str(caught.value)
        == f"{tmp_path / 'inst' / 'secret_key'} is empty: delete it to have a new key made"
    )


def test_default_database_is_in_the_instance_folder(tmp_path):
    app = create_app({"SECRET_KEY": "k"}, instance_path=str(tmp_path / "inst"))
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'inst' / 'hcp.db'}"
    assert (tmp_path / "inst" / "hcp.db").exists()
