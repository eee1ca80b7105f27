"""API tokens for machine clients: made by an admin, shown once, kept hashed,
scoped to a role and a unit, revocable, refused with a clear JSON error."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import func, select

from sync_server import db, tokens
from tests.test_access import build_world, client_as, csrf

TOKEN_IN_PAGE = re.compile(r'<code id="new-token">(hcp_[A-Za-z0-9_-]+)</code>')


def _make(app, role, unit=""):
    admin = client_as(app, "admin")
    response = admin.post(
        "/tokens", data={"csrf_token": csrf(admin), "name": f"{role} client", "role": role, "unit": unit}
    )  # fmt: skip
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    return TOKEN_IN_PAGE.search(response.get_data(as_text=True)).group(1), admin


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_token_is_shown_once_and_kept_only_as_a_hash(engine_app):
    build_world(engine_app)
    token, admin = _make(engine_app, "supervisor")
    assert token not in admin.get("/users").get_data(as_text=True)
    with engine_app.extensions["hcp_engine"].connect() as conn:
        row = conn.execute(select(db.api_tokens)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(tuple(row)) and row.prefix == token[:12]
    client = engine_app.test_client()
    listing = client.get("/api/v1/evaluations", headers=_bearer(token)).get_json()
    assert sorted(item["id"] for item in listing["items"]) == ["ws:1", "xg:1"]


def test_a_unit_token_sees_only_its_unit(engine_app):
    build_world(engine_app)
    token, _admin = _make(engine_app, "unit_manager", "370305002")
    client = engine_app.test_client()
    listing = client.get("/api/v1/evaluations", headers=_bearer(token)).get_json()
    assert [item["id"] for item in listing["items"]] == ["xg:1"]
    assert client.get("/api/v1/evaluations/ws:1", headers=_bearer(token)).status_code == 404


def test_a_revoked_token_is_refused_with_a_clear_error(engine_app):
    build_world(engine_app)
    token, admin = _make(engine_app, "supervisor")
    client = engine_app.test_client()
    assert client.get("/api/v1/evaluations", headers=_bearer(token)).status_code == 200
    assert admin.post("/tokens/revoke", data={"csrf_token": csrf(admin), "id": "1"}).status_code == 302  # fmt: skip
    refused = client.get("/api/v1/evaluations", headers=_bearer(token))
    assert refused.status_code == 401
    assert refused.get_json() == {"error": "token: this token has been revoked"}
    again = admin.post("/tokens/revoke", data={"csrf_token": csrf(admin), "id": "1"})
    assert "token: 1 is already revoked" in again.get_data(as_text=True)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer hcp_" + "A" * 43, "token: unknown token"),
        ("Bearer not-a-token", "token: the Authorization header must be 'Bearer <token>'"),
        ("Basic YWRtaW46YWRtaW4=", "token: the Authorization header must be 'Bearer <token>'"),
    ],
)
def test_an_unknown_or_malformed_token_is_refused(engine_app, header, message):
    response = engine_app.test_client().get("/api/v1/devices", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json() == {"error": message}


def test_a_token_of_another_role_gets_no_more_than_that_role(engine_app):
    build_world(engine_app)
    token, _admin = _make(engine_app, "technician")
    client = engine_app.test_client()
    assert client.get("/api/v1/devices", headers=_bearer(token)).status_code == 200
    refused = client.get("/api/v1/evaluations", headers=_bearer(token))
    assert refused.status_code == 403
    assert refused.get_json() == {"error": "not allowed for the role technician"}
    pf = client.put("/api/v1/pf-map", headers=_bearer(token), json={"rows": []})
    assert pf.status_code == 403 and pf.get_json() == {"error": "admin only"}


def test_a_token_opens_no_page(engine_app):
    token, _admin = _make(engine_app, "supervisor")
    response = engine_app.test_client().get("/evaluations", headers=_bearer(token))
    assert response.status_code == 302 and response.location.startswith("/login")


def test_what_a_token_does_is_audited_under_its_id(engine_app):
    engine = build_world(engine_app)
    with engine.connect() as conn:  # what building the world wrote is not this test's
        built = conn.execute(select(func.max(db.audit_log.c.id))).scalar() or 0
    token, _admin = _make(engine_app, "supervisor")
    client = engine_app.test_client()
    client.post("/api/v1/contacts", headers=_bearer(token), json={"record_id": "ws:1"})
    with engine.connect() as conn:
        actors = conn.execute(
            select(db.audit_log.c.actor, db.audit_log.c.action)
            .where(db.audit_log.c.id > built)
            .order_by(db.audit_log.c.id)
        ).all()
        last_used = conn.execute(select(db.api_tokens.c.last_used_at)).scalar()
    assert [tuple(a) for a in actors] == [("admin", "token.create"), ("token:1", "contact.reveal")]
    assert last_used is not None


@pytest.mark.parametrize(
    ("name", "role", "unit", "message"),
    [
        ("", "supervisor", None, "name: must be 1..64 characters of A-Z a-z 0-9 . _ - and spaces"),
        ("t", "owner", None, "role: must be one of admin, supervisor, unit_manager, technician, clerk"),
        ("t", "unit_manager", None, "unit: required for the role unit_manager"),
    ],
)  # fmt: skip
def test_a_token_that_cannot_be_made_says_why(engine, name, role, unit, message):
    from sync_server import org

    org.seed(engine)
    with pytest.raises(ValueError) as caught, engine.begin() as conn:
        tokens.create(conn, name, role, unit, "admin")
    assert str(caught.value) == message
