"""Who may open which page and API route: every route against every role, on
both databases.

The world: 闻韶街道 (370305001) has hall-ws with window A01 and rating ws:1;
雪宫街道 (370305002) has hall-xg with window B01 and rating xg:1; both
ratings left a contact. Users: the admin, the supervisor ("viewer"), a unit
manager and a clerk of 闻韶街道, a unit manager of 雪宫街道, a technician.
"""

from __future__ import annotations

import io
import json

import pytest

from sync_server import db, org
from tests import access
from tests.harness import shared_worlds
from tests.harness.collector import CSRF_FIELD, AuthActions, _password_hash
from tests.harness.records import CONTACT, add_evaluation

OTHER_CONTACT = "13900000000"
PASSWORD = "role-pass-12"
USERS = {
    "unit_manager": ("um", "unit_manager", "370305001"),
    "other_manager": ("um2", "unit_manager", "370305002"),
    "technician": ("tech", "technician", None),
    "clerk": ("clerk", "clerk", "370305001"),
}
ROLES = ["anonymous", "admin", "supervisor", *USERS]


def build_world(app):
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        for username, role, unit in USERS.values():
            conn.execute(
                db.users.insert().values(
                    username=username,
                    password_hash=_password_hash(PASSWORD),
                    role=role,
                    unit_id=unit,
                    created_at=db.utc_now(),
                )
            )
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "units", "hall-xg", "雪宫街道便民服务中心", "370305002", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        org.add(conn, "windows", "B01", "雪宫一号窗", "hall-xg")
    db.add_device(engine, "kp-01", "00" * 32, window_id="A01")
    add_evaluation(engine, "ws:1", 1, window_id="A01", contact=CONTACT, comment="闻韶的差评")
    add_evaluation(engine, "xg:1", 2, window_id="B01", contact=OTHER_CONTACT, comment="雪宫的差评")
    for table in access.tables():  # each feature's part of the world
        if hasattr(table, "build"):
            table.build(app)
    return engine


@pytest.fixture
def world(engine_app):
    build_world(engine_app)
    return engine_app


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def reading_world(request, tmp_path_factory):
    """One world per database for the whole module: reading a page or an API
    route changes nothing, so the hundreds of GET cases share it (a world is
    a migrated database, Linzi's seed and the users: about half a second).
    PostgreSQL gets its own database, apart from the one the per-test
    fixtures reset."""

    def build(app):
        build_world(app)
        app.logged_in = {}  # role -> a client logged in once (reading keeps the session)

    with shared_worlds.module_world(request, tmp_path_factory, build) as app:
        yield app


def client_as(app, role):
    client = app.test_client()
    if role == "anonymous":
        return client
    auth = AuthActions(client)
    if role == "admin":
        response = auth.login("admin")
    elif role == "supervisor":
        response = auth.login("viewer")
    else:
        response = auth.login(USERS[role][0], PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def csrf(client):
    return CSRF_FIELD.search(client.get("/login").get_data(as_text=True)).group(1)


# (method, path, capability, body) -- every page and API route of the app
ROUTES = [
    ("GET", "/", "ratings", None),
    ("GET", "/evaluations", "ratings", None),
    ("GET", "/evaluations/ws:1", "ratings", None),
    ("GET", "/evaluations/xg:1", "ratings", None),
    ("POST", "/evaluations/contact", "contact", {"record_id": "ws:1"}),
    ("GET", "/devices", "devices", None),
    ("GET", "/devices/kp-01", "devices", None),
    ("GET", "/quarantine", "quarantine", None),
    ("GET", "/pf-map", "pf_read", None),
    ("POST", "/pf-map", "pf_write", {}),
    ("GET", "/org", "org_read", None),
    ("GET", "/org/units/hall-ws", "org_read", None),
    ("GET", "/org/units/hall-xg", "org_read", None),
    ("GET", "/org/windows/A01", "org_read", None),
    ("GET", "/org/export?what=windows&format=csv", "org_read", None),
    ("POST", "/org/add", "org_write", {"what": "windows", "code": "A02", "name": "二号窗", "unit": "hall-ws"}),
    ("POST", "/org/move", "org_write", {"what": "windows", "code": "A01", "unit": "370305001"}),
    ("POST", "/org/retire", "org_write", {"what": "windows", "code": "A01"}),
    ("POST", "/org/rename", "org_write", {"what": "windows", "code": "A01", "name": "综合窗"}),
    ("POST", "/org/import", "org_files", "file"),
    ("GET", "/tags", "tags_read", None),
    ("GET", "/tags/export?version=hcp-demo-1&format=csv", "tags_read", None),
    ("POST", "/tags/save", "tags_write", {"version": "hcp-demo-1", "level": "2", "code": "H209", "text": "材料反复要", "mode": "offline"}),
    ("POST", "/tags/in-force", "tags_write", {"version": "hcp-demo-1"}),
    ("GET", "/users", "users", None),
    ("POST", "/users", "users", {"username": "new.one", "password": "new-pass-123", "role": "technician"}),
    ("POST", "/tokens", "tokens", {"name": "exports", "role": "supervisor"}),
    ("GET", "/audit", "audit", None),
    ("GET", "/api/v1/evaluations", "ratings", None),
    ("GET", "/api/v1/evaluations/summary", "ratings", None),
    ("GET", "/api/v1/evaluations/ws:1", "ratings", None),
    ("GET", "/api/v1/evaluations/xg:1", "ratings", None),
    ("POST", "/api/v1/contacts", "contact", {"record_id": "ws:1"}),
    ("GET", "/api/v1/quarantine", "quarantine", None),
    ("GET", "/api/v1/devices", "devices", None),
    ("GET", "/api/v1/devices/kp-01/days", "devices", None),
    ("GET", "/api/v1/pf-map", "pf_read", None),
    ("PUT", "/api/v1/pf-map", "pf_write", "pf-table"),
    ("GET", "/api/v1/tags", "tags_read", None),
    ("GET", "/api/v1/org/units", "org_read", None),
    ("GET", "/api/v1/audit", "audit", None),
    ("GET", "/analytics", "ratings", None),
    ("GET", "/analytics?unit=370305002", "ratings", None),
    ("GET", "/analytics/export?format=csv", "ratings", None),
    ("GET", "/api/v1/analytics/units", "ratings", None),
    ("GET", "/api/v1/analytics/units?unit=370305001", "ratings", None),
    *access.merged("ROUTES", list),
]  # fmt: skip
GRANTS = {
    "admin": {"ratings", "devices", "quarantine", "pf_read", "pf_write", "org_read", "org_write", "org_files", "tags_read", "tags_write", "users", "tokens", "audit"},
    "supervisor": {"ratings", "devices", "pf_read", "org_read", "tags_read", "audit", "contact"},
    "unit_manager": {"ratings", "org_read", "org_write", "contact"},
    "other_manager": {"ratings", "org_read", "org_write", "contact"},
    "technician": {"devices", "quarantine", "pf_read", "org_read", "tags_read"},
    "clerk": {"ratings", "org_read"},
}  # fmt: skip
for _role, _extra in access.merged("GRANTS", dict).items():
    GRANTS[_role] = GRANTS[_role] | set(_extra)
# what lies outside a unit-scoped user's subtree: (path, role) -> status
OUTSIDE = {
    ("/evaluations/xg:1", "unit_manager"): 404,
    ("/evaluations/xg:1", "clerk"): 404,
    ("/api/v1/evaluations/xg:1", "unit_manager"): 404,
    ("/api/v1/evaluations/xg:1", "clerk"): 404,
    ("/org/units/hall-xg", "unit_manager"): 404,
    ("/org/units/hall-xg", "clerk"): 404,
    ("/evaluations/ws:1", "other_manager"): 404,
    ("/api/v1/evaluations/ws:1", "other_manager"): 404,
    ("/evaluations/contact", "other_manager"): 404,
    ("/api/v1/contacts", "other_manager"): 404,
    ("/org/units/hall-ws", "other_manager"): 404,
    ("/org/windows/A01", "other_manager"): 404,
    ("/org/add", "other_manager"): 403,
    ("/org/move", "other_manager"): 404,
    ("/org/retire", "other_manager"): 404,
    ("/org/rename", "other_manager"): 404,
    **access.merged("OUTSIDE", dict),
}
# figures of the other street, asked for by unit
OUTSIDE_QUERY = {
    ("/analytics?unit=370305002", "unit_manager"): 404,
    ("/analytics?unit=370305002", "clerk"): 404,
    ("/api/v1/analytics/units?unit=370305001", "other_manager"): 404,
    **access.merged("OUTSIDE_QUERY", dict),
}
SUCCESS = {"POST": 302, "PUT": 200, "GET": 200}
SUCCESS_BY_PATH = {
    ("POST", "/evaluations/contact"): 200,
    ("POST", "/api/v1/contacts"): 200,
    ("POST", "/tokens"): 201,
    **access.merged("SUCCESS_BY_PATH", dict),
}


def expected(method, path, capability, role) -> int:
    bare = path.split("?")[0]
    if role == "anonymous":
        return 401 if bare.startswith("/api/") else 302
    if capability not in GRANTS[role]:
        if path == "/" and role == "technician":
            return 302  # sent on to the devices
        return 403
    if (bare, role) in OUTSIDE:
        return OUTSIDE[(bare, role)]
    if (path, role) in OUTSIDE_QUERY:
        return OUTSIDE_QUERY[(path, role)]
    return SUCCESS_BY_PATH.get((method, bare), SUCCESS[method])


def call(app, client, method, path, body):
    if body is None:
        return client.open(path, method=method)
    if path.startswith("/api/"):
        if body == "pf-table":
            body = {"rows": [r | {} for r in _pf_rows(app)]}
        return client.open(path, method=method, json=body)
    data = {"csrf_token": csrf(client)}
    if body == "file":
        data.update(what="windows", file=(io.BytesIO(b"code,name,unit\nA03,3,hall-ws\n"), "w.csv"))
    elif path == "/pf-map":
        data.update(_pf_form(app))
    else:
        data.update(body)
    return client.open(path, method=method, data=data)


def _pf_rows(app):
    from sync_server import pf_map

    return [
        {"channel": r.channel, "client": r.client, "pf": r.pf}
        for r in pf_map.read(app.extensions["hcp_engine"])
    ]


def _pf_form(app):
    return {f"pf-{r['channel']}-{r['client']}": str(r["pf"] or "") for r in _pf_rows(app)}


READING = [route for route in ROUTES if route[0] == "GET"]
CHANGING = [route for route in ROUTES if route[0] != "GET"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "capability", "body"), READING)
def test_each_role_reads_exactly_what_it_should(
    reading_world, role, method, path, capability, body
):
    if role not in reading_world.logged_in:
        reading_world.logged_in[role] = client_as(reading_world, role)
    check_route(reading_world, role, method, path, capability, body, reading_world.logged_in[role])


def _refused(role, route) -> bool:
    method, path, capability, _body = route
    return role == "anonymous" or expected(method, path, capability, role) in (401, 403, 404)


# A refused change changes nothing, so those cases share the reading world (a
# refusal that wrongly went through fails its own case); each change that is
# allowed gets a fresh world.
REFUSED = [(role, *route) for route in CHANGING for role in ROLES if _refused(role, route)]
ALLOWED = [(role, *route) for route in CHANGING for role in ROLES if not _refused(role, route)]


@pytest.mark.parametrize(("role", "method", "path", "capability", "body"), REFUSED)
def test_each_role_is_refused_the_changes_it_may_not_make(
    reading_world, role, method, path, capability, body
):
    if role not in reading_world.logged_in:
        reading_world.logged_in[role] = client_as(reading_world, role)
    client = reading_world.logged_in[role]
    check_route(reading_world, role, method, path, capability, body, client)


@pytest.mark.parametrize(("role", "method", "path", "capability", "body"), ALLOWED)
def test_each_role_changes_exactly_what_it_should(world, role, method, path, capability, body):
    check_route(world, role, method, path, capability, body)


def check_route(world, role, method, path, capability, body, client=None):
    client = client or client_as(world, role)
    response = call(world, client, method, path, body)
    assert response.status_code == expected(method, path, capability, role), response.get_data(
        as_text=True
    )[:400]
    page = response.get_data(as_text=True)
    if response.status_code in (401, 403, 404) and path.startswith("/api/"):
        assert set(response.get_json()) == {"error"}
    # a contact leaves only through an explicit reveal, to a role allowed it
    revealing = path in ("/evaluations/contact", "/api/v1/contacts")
    if not (revealing and response.status_code == 200):
        assert CONTACT not in page and OTHER_CONTACT not in page
    # nothing of the other street's rating reaches a unit of 闻韶街道, and back
    # (a refusal may repeat the id asked for, nothing more)
    shown = page if response.status_code < 400 else ""
    if role in ("unit_manager", "clerk"):
        assert "雪宫的差评" not in page and "xg:1" not in shown
    if role == "other_manager":
        assert "闻韶的差评" not in page and "ws:1" not in shown
    if role == "technician":
        assert "闻韶的差评" not in page and "雪宫的差评" not in page


def test_every_route_of_the_app_is_in_the_table(world):
    listed = {(m, p.split("?")[0]) for m, p, _c, _b in ROUTES}
    known = {
        ("/evaluations/<path:record_id>", "/evaluations/ws:1"),
        ("/devices/<device_id>", "/devices/kp-01"),
        ("/org/units/<unit_id>", "/org/units/hall-ws"),
        ("/org/<what>/<code>", "/org/windows/A01"),
        ("/api/v1/evaluations/<path:record_id>", "/api/v1/evaluations/ws:1"),
        ("/api/v1/devices/<device_id>/days", "/api/v1/devices/kp-01/days"),
    }
    examples = dict(known) | access.merged("KNOWN", dict)
    # routes outside the matrix, each with its reason
    elsewhere = {
        "/login", "/logout", "/static/<path:filename>", "/api/v1/openapi.json",  # public or session
        "/org/staff/<code>/photo",  # tests/test_roles.py
        "/tags/import", "/tags/delete", "/users/disable", "/tokens/revoke",  # admin-only forms, tests/test_roles.py
    } | access.merged("ELSEWHERE", set)  # fmt: skip
    for rule in world.url_map.iter_rules():
        if rule.rule in elsewhere:
            continue
        path = examples.get(rule.rule, rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, path) in listed, (method, rule.rule)


@pytest.mark.parametrize("role", ["unit_manager", "clerk"])
def test_a_unit_sees_only_its_own_ratings_in_lists_and_figures(world, role):
    client = client_as(world, role)
    listing = client.get("/api/v1/evaluations").get_json()
    assert [item["id"] for item in listing["items"]] == ["ws:1"]
    assert client.get("/api/v1/evaluations/summary").get_json()["total"] == 1
    # asking for the other unit by filter finds nothing
    assert client.get("/api/v1/evaluations?window_id=B01").get_json()["total"] == 0
    page = client.get("/evaluations").get_data(as_text=True)
    assert "闻韶的差评" in page and "雪宫的差评" not in page
    units = {u["id"] for u in client.get("/api/v1/org/units").get_json()["items"]}
    assert units == {"370305001", "hall-ws"}
    export = client.get("/org/export?what=windows&format=csv").get_data(as_text=True)
    assert "A01" in export and "B01" not in export


def test_a_unit_manager_moves_a_window_only_inside_its_subtree(world):
    client = client_as(world, "unit_manager")
    token = csrf(client)
    out = client.post("/org/move", data={"csrf_token": token, "what": "windows", "code": "A01", "unit": "hall-xg"})  # fmt: skip
    assert out.status_code == 403
    own_root = client.post("/org/rename", data={"csrf_token": token, "what": "units", "code": "370305001", "name": "改"})  # fmt: skip
    assert own_root.status_code == 403  # their own unit is the admin's to change
    inside = client.post("/org/move", data={"csrf_token": token, "what": "windows", "code": "A01", "unit": "370305001"})  # fmt: skip
    assert inside.status_code == 302
    with world.extensions["hcp_engine"].connect() as conn:
        assert org.get(conn, "windows", "A01")["unit"] == "370305001"


def test_the_supervisor_and_admin_see_every_unit(world):
    for role in ("admin", "supervisor"):
        listing = client_as(world, role).get("/api/v1/evaluations").get_json()
        assert sorted(item["id"] for item in listing["items"]) == ["ws:1", "xg:1"]


def test_a_technician_starts_at_the_devices_and_never_sees_counts(world):
    client = client_as(world, "technician")
    assert client.get("/").location == "/devices"
    devices = client.get("/api/v1/devices").get_json()["items"]
    assert "counts_stored" not in json.dumps(devices)
    admin = client_as(world, "admin").get("/api/v1/devices").get_json()["items"]
    assert "counts_stored" in admin[0]
