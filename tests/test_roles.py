"""People and roles as user stories: users with a unit, login limits, cookie
flags, CSRF on the new forms, the admin's own forms, and the migration that
turns viewers into supervisors."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select, text

from hcp.cli import main as hcp_main
from sync_server import db, org
from sync_server.auth import create_user
from tests.harness.collector import ADMIN, AuthActions, app_with_users
from tests.test_access import PASSWORD, build_world, client_as, csrf


@pytest.fixture
def limited(tmp_path):
    with app_with_users(
        tmp_path, HCP_LOGIN_MAX_FAILURES=3, HCP_LOGIN_MAX_FAILURES_PER_ADDRESS=5
    ) as app:
        yield app


def _client_from(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _login(client, username, password, lang=""):
    token = csrf(client)
    return client.post(
        "/login" + lang, data={"username": username, "password": password, "csrf_token": token}
    )


def test_an_account_is_locked_after_repeated_failures_even_with_the_right_password(limited):
    client = limited.test_client()
    for _ in range(3):
        assert _login(client, "admin", "wrong-pass-1").status_code == 401
    locked = _login(client, "admin", ADMIN[1])
    assert locked.status_code == 429
    assert "登录失败次数过多，请 15 分钟后再试。" in locked.get_data(as_text=True)
    english = _login(client, "admin", ADMIN[1], "?lang=en")
    assert "Too many failed logins. Try again in 15 minutes." in english.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in
    # another account from the same address still logs in
    assert _login(client, "viewer", "viewer-pass-1").status_code == 302


def test_an_address_is_limited_across_accounts(limited):
    client = limited.test_client()
    for name in ("a1", "a2", "a3", "a4", "a5"):
        _login(client, name, "wrong-pass-1")
    assert _login(client, "viewer", "viewer-pass-1").status_code == 429
    elsewhere = _client_from(limited, "10.1.2.3")
    assert _login(elsewhere, "viewer", "viewer-pass-1").status_code == 302


def test_a_good_login_clears_the_account_failures(limited):
    client = limited.test_client()
    for _ in range(2):
        _login(client, "admin", "wrong-pass-1")
    assert _login(client, "admin", ADMIN[1]).status_code == 302
    other = _client_from(limited, "10.9.9.9")
    for _ in range(2):
        _login(other, "admin", "wrong-pass-1")
    assert _login(other, "admin", ADMIN[1]).status_code == 302


@pytest.mark.parametrize(("secure", "flags"), [(True, True), (False, False)])
def test_the_session_cookie_flags(tmp_path, secure, flags):
    with app_with_users(tmp_path, SESSION_COOKIE_SECURE=secure) as app:
        client = app.test_client()
        response = AuthActions(client).login("admin")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is flags


def test_the_default_session_cookie_is_secure(tmp_path):
    from sync_server import create_app

    app = create_app({"SECRET_KEY": "k"}, instance_path=str(tmp_path / "i"))
    assert app.config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "The CSRF token is missing."), ("forged-token", "The CSRF token is invalid.")],
)
@pytest.mark.parametrize(
    "path,form",
    [
        ("/org/add", {"what": "windows", "code": "Z1", "name": "窗", "unit": "370305"}),
        ("/users", {"username": "x.y", "password": "long-pass-1", "role": "technician"}),
        ("/tokens", {"name": "t", "role": "supervisor"}),
        ("/tags/save", {"version": "hcp-demo-1", "level": "2", "code": "Z2", "text": "x", "mode": "offline"}),
        ("/evaluations/contact", {"record_id": "ws:1"}),
    ],
)  # fmt: skip
def test_a_form_without_its_csrf_token_changes_nothing(app, admin, path, form, token, message):
    data = dict(form)
    if token:
        data["csrf_token"] = token
    response = admin.post(path, data=data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.extensions["hcp_engine"].connect() as conn:
        assert org.get(conn, "windows", "Z1") is None
        assert conn.execute(select(db.audit_log)).first() is None


@pytest.mark.parametrize(
    ("role", "unit", "message"),
    [
        ("unit_manager", None, "unit: required for the role unit_manager"),
        ("clerk", "370305999", "unit: unknown unit '370305999'"),
        ("supervisor", "370305001", "unit: only for the roles unit_manager, clerk"),
    ],
)
def test_a_user_with_a_unit_is_checked(app, role, unit, message):
    with pytest.raises(ValueError) as caught:
        create_user(app.extensions["hcp_engine"], "someone", "long-pass-1", role, unit)
    assert str(caught.value) == message


def test_the_admin_adds_a_unit_manager_who_then_sees_their_street(app, admin):
    page = admin.get("/users").get_data(as_text=True)
    assert "用户与令牌" in page
    response = admin.post(
        "/users",
        data={
            "csrf_token": csrf(admin),
            "username": "li.si",
            "password": "li-si-pass-1",
            "role": "unit_manager",
            "unit": "370305003",
        },
    )
    assert response.status_code == 302
    manager = app.test_client()
    assert AuthActions(manager).login("li.si", "li-si-pass-1").status_code == 302
    tree = manager.get("/org").get_data(as_text=True)
    assert "辛店街道" in tree and "闻韶街道" not in tree
    assert "li.si · 单位管理员" in tree
    refused = admin.post(
        "/users",
        data={"csrf_token": csrf(admin), "username": "li.si", "password": "x-pass-123", "role": "clerk", "unit": "370305003"},
    )  # fmt: skip
    assert refused.status_code == 400
    assert "username: &#39;li.si&#39; already exists" in refused.get_data(as_text=True)


def test_a_disabled_user_can_no_longer_log_in(app, admin):
    assert admin.post("/users/disable", data={"csrf_token": csrf(admin), "username": "viewer"}).status_code == 302  # fmt: skip
    assert AuthActions(app.test_client()).login("viewer").status_code == 401
    self_disable = admin.post("/users/disable", data={"csrf_token": csrf(admin), "username": "admin"})  # fmt: skip
    assert "用户名：不能停用自己" in self_disable.get_data(as_text=True)


def test_the_admins_tag_forms(app, admin):
    data = "version,level,code,text,online/offline\nsd-2027,2,201,等候时间长,线下\n".encode()
    response = admin.post(
        "/tags/import",
        data={"csrf_token": csrf(admin), "file": (io.BytesIO(data), "province.csv"), "in_force_from": "2026-01-01T00:00:00Z"},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert response.status_code == 302
    assert admin.get("/api/v1/tags").get_json() == {"content_version": "sd-2027", "tags": [[2, "201", "等候时间长"]]}  # fmt: skip
    bad = admin.post(
        "/tags/import",
        data={"csrf_token": csrf(admin), "file": (io.BytesIO(b"version,level,code,text,mode\nv2,7,1,x,offline\n"), "t.csv")},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert bad.status_code == 400
    assert "第 2 行，level 列：须为 1 至 5" in bad.get_data(as_text=True)
    deleted = admin.post("/tags/delete", data={"csrf_token": csrf(admin), "version": "sd-2027", "code": "201"})  # fmt: skip
    assert deleted.status_code == 302
    assert admin.get("/api/v1/tags").get_json()["tags"] == []


def test_an_org_import_through_the_page_is_refused_whole_in_chinese(app, admin):
    data = "code,name,kind,parent\nv1,一村,village,370305100\nv2,二村,village,nowhere\n".encode()
    response = admin.post(
        "/org/import",
        data={"csrf_token": csrf(admin), "what": "units", "file": (io.BytesIO(data), "u.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "第 3 行，parent 列：没有单位 &#39;nowhere&#39;" in response.get_data(as_text=True)
    with app.extensions["hcp_engine"].connect() as conn:
        assert org.get(conn, "units", "v1") is None
    good = admin.post(
        "/org/import",
        data={"csrf_token": csrf(admin), "what": "units", "file": (io.BytesIO(data.replace(b"nowhere", b"v1")), "u.csv")},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert good.status_code == 302
    assert "已导入：新增 2，改名 0，调动 0，未变 0。" in admin.get(good.location).get_data(
        as_text=True
    )


def test_an_oversized_upload_is_refused(tmp_path):
    with app_with_users(tmp_path, MAX_CONTENT_LENGTH=1024) as app:
        client = app.test_client()
        AuthActions(client).login("admin")
        response = client.post(
            "/org/import",
            data={"csrf_token": csrf(client), "what": "units", "file": (io.BytesIO(b"x" * 4096), "u.csv")},
            content_type="multipart/form-data",
        )  # fmt: skip
    assert response.status_code == 413


def test_a_staff_photo_is_uploaded_and_served_as_an_image(app, admin):
    with app.extensions["hcp_engine"].begin() as conn:
        org.add(conn, "staff", "1001", "张敏", "370305")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    for data, status in ((b"<script>alert(1)</script>", 400), (png, 302)):
        response = admin.post(
            "/org/staff/1001/photo",
            data={"csrf_token": csrf(admin), "photo": (io.BytesIO(data), "p.png")},
            content_type="multipart/form-data",
        )
        assert response.status_code == status
    served = admin.get("/org/staff/1001/photo")
    assert served.data == png and served.mimetype == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"


def test_script_in_a_name_is_shown_as_text(app, admin):
    with app.extensions["hcp_engine"].begin() as conn:
        org.add(conn, "windows", "W9", "<script>alert(1)</script>", "370305")
    page = admin.get("/org/windows/W9").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_cli_creates_users_with_a_unit_and_tokens(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    base = ["collector", "create-user", "wang", "--role", "unit_manager", "--db", url]
    assert hcp_main([*base, "--unit", "370305001", "--password", "wang-pass-1"]) == 0
    assert capsys.readouterr().out == "user wang (unit_manager) created\n"
    assert hcp_main([*base[:2], "zhao", *base[3:], "--password", "zhao-pass-1"]) == 1
    assert capsys.readouterr().err == "error: unit: required for the role unit_manager\n"
    assert hcp_main(["collector", "create-token", "business", "--role", "supervisor", "--db", url]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "token 1 (supervisor) created; it is not shown again:"
    assert out[1].startswith("hcp_") and len(out[1]) == 47


def test_upgrading_turns_viewers_into_supervisors(tmp_path):
    from alembic import command

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0004")
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, role, created_at)"
                " VALUES ('old.viewer', 'x', 'viewer', '2026-11-01T00:00:00Z'),"
                " ('old.admin', 'x', 'admin', '2026-11-01T00:00:00Z')"
            )
        )
    db.init(engine)
    with engine.connect() as conn:
        roles = dict(conn.execute(text("SELECT username, role FROM users")).all())
    assert roles == {"old.viewer": "supervisor", "old.admin": "admin"}
    engine.dispose()


def test_a_clerk_reads_but_cannot_change_the_organisation(engine_app):
    build_world(engine_app)
    clerk = client_as(engine_app, "clerk")
    page = clerk.get("/org/units/hall-ws").get_data(as_text=True)
    assert "闻韶一号窗" in page and 'id="add-form"' not in page
    assert clerk.post("/org/add", data={"csrf_token": csrf(clerk), "what": "windows", "code": "Q", "name": "q", "unit": "hall-ws"}).status_code == 403  # fmt: skip
    manager = client_as(engine_app, "unit_manager")
    assert 'id="add-form"' in manager.get("/org/units/hall-ws").get_data(as_text=True)
    assert PASSWORD  # the world's users share one password


SQL = "'; DROP TABLE evaluations; --"


def test_sql_in_names_and_filters_is_only_text(engine_app):
    engine = build_world(engine_app)
    admin = client_as(engine_app, "admin")
    token = csrf(admin)
    added = admin.post("/org/add", data={"csrf_token": token, "what": "staff", "code": "2001", "name": SQL, "unit": "hall-ws"})  # fmt: skip
    assert added.status_code == 302
    bad_code = admin.post("/org/add", data={"csrf_token": token, "what": "staff", "code": SQL, "name": "x", "unit": "hall-ws"})  # fmt: skip
    assert bad_code.status_code == 400
    assert "code：须为 1 至 64 个字符，只含 A-Z a-z 0-9 . _ -" in bad_code.get_data(as_text=True)
    with engine.connect() as conn:
        assert org.get(conn, "staff", "2001")["name"] == SQL
    manager = client_as(engine_app, "unit_manager")
    for name in ("window_id", "staff_id", "org_id", "case_no", "device_id"):
        found = manager.get(f"/api/v1/evaluations?{name}=' OR 1=1 --").get_json()
        assert found["total"] == 0, name
    assert manager.get("/api/v1/evaluations").get_json()["total"] == 1
    figures = admin.get("/api/v1/analytics/units?channel=' OR 1=1 --")
    assert figures.status_code == 400
    assert figures.get_json()["error"].startswith("channel: must be one of keypad")


def test_the_new_pages_speak_english_on_request(engine_app):
    build_world(engine_app)
    admin = client_as(engine_app, "admin")
    admin.get("/?lang=en")
    for path, words in (
        ("/org", ("Organisation", "Export", "Import")),
        ("/org/units/hall-ws", ("Units below", "Windows", "History", "since the beginning")),
        ("/tags", ("Content tags", "Version in force:", "hcp 演示标签, 非省平台标准")),
        ("/users", ("Users and tokens", "API tokens", "Unit manager")),
        ("/audit", ("Audit log",)),
        ("/analytics", ("Figures by unit", "Total", "Valid ratings")),
    ):
        page = admin.get(path).get_data(as_text=True)
        for word in words:
            assert word in page, (path, word)


def test_serve_can_drop_the_secure_flag_for_plain_http(tmp_path):
    from hcp.cli import build_parser
    from sync_server.cli import _app

    url = f"sqlite:///{tmp_path / 'c.db'}"
    plain = build_parser().parse_args(["collector", "serve", "--db", url, "--plain-http"])
    default = build_parser().parse_args(["collector", "serve", "--db", url])
    assert _app(plain).config["SESSION_COOKIE_SECURE"] is False
    assert _app(default).config["SESSION_COOKIE_SECURE"] is True
