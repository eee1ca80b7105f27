"""The audit log: every change with who, when, what, before and after, and
every reveal of a rater's contact (never the contact itself)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from sync_server import db, org, pf_map
from tests.harness.records import CONTACT
from tests.test_access import build_world as build_access_world
from tests.test_access import client_as, csrf

_BUILT = {}  # engine -> the last audit id the world's own building wrote


def build_world(app):
    """test_access's world; what building it wrote (a feature walking its
    example case through the workflow, say) is not what these tests check."""
    engine = build_access_world(app)
    with engine.connect() as conn:
        _BUILT[engine] = conn.execute(select(func.max(db.audit_log.c.id))).scalar() or 0
    return engine


def _entries(engine):
    after = _BUILT.get(engine, 0)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(db.audit_log).where(db.audit_log.c.id > after).order_by(db.audit_log.c.id))]  # fmt: skip


def test_a_move_is_logged_with_before_and_after(engine_app):
    engine = build_world(engine_app)
    manager = client_as(engine_app, "unit_manager")
    response = manager.post(
        "/org/move",
        data={"csrf_token": csrf(manager), "what": "windows", "code": "A01", "unit": "370305001"},
    )
    assert response.status_code == 302
    (entry,) = _entries(engine)
    assert (entry["actor"], entry["role"], entry["action"], entry["target"]) == (
        "um",
        "unit_manager",
        "org.windows.move",
        "windows:A01",
    )
    assert entry["address"] == "127.0.0.1"
    assert json.loads(entry["before"])["unit"] == "hall-ws"
    assert json.loads(entry["after"])["unit"] == "370305001"
    # and the supervisor reads it, in Chinese, on the audit page
    page = client_as(engine_app, "supervisor").get("/audit").get_data(as_text=True)
    assert "审计日志" in page and "org.windows.move" in page and "单位管理员" in page


def test_a_refused_change_leaves_no_entry(engine_app):
    engine = build_world(engine_app)
    admin = client_as(engine_app, "admin")
    response = admin.post(
        "/org/add",
        data={"csrf_token": csrf(admin), "what": "windows", "code": "A01", "name": "重复", "unit": "hall-ws"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "编码：&#39;A01&#39; 已存在" in response.get_data(as_text=True)
    assert _entries(engine) == []


def test_revealing_a_contact_is_an_explicit_audited_action(engine_app):
    engine = build_world(engine_app)
    manager = client_as(engine_app, "unit_manager")
    detail = manager.get("/evaluations/ws:1").get_data(as_text=True)
    assert CONTACT not in detail and 'id="reveal"' in detail  # shown only on request
    shown = manager.post("/evaluations/contact", data={"csrf_token": csrf(manager), "record_id": "ws:1"})  # fmt: skip
    assert shown.status_code == 200
    page = shown.get_data(as_text=True)
    assert f'<p id="contact">{CONTACT}</p>' in page and "本次查看已记入审计日志。" in page
    api = client_as(engine_app, "supervisor").post("/api/v1/contacts", json={"record_id": "ws:1"})
    assert api.get_json() == {"record_id": "ws:1", "contact": CONTACT}
    entries = _entries(engine)
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("um", "contact.reveal", "ws:1"),
        ("viewer", "contact.reveal", "ws:1"),
    ]
    assert CONTACT not in json.dumps(entries)  # the log says who saw it, not what
    # the admin runs the system but is not among those who call raters back
    admin = client_as(engine_app, "admin")
    assert 'id="reveal"' not in admin.get("/evaluations/ws:1").get_data(as_text=True)
    assert admin.post("/api/v1/contacts", json={"record_id": "ws:1"}).status_code == 403


def test_a_rating_without_a_contact_logs_no_reveal(engine_app):
    engine = build_world(engine_app)
    from tests.harness.records import add_evaluation

    add_evaluation(engine, "ws:2", 2, window_id="A01")
    supervisor = client_as(engine_app, "supervisor")
    assert supervisor.post("/api/v1/contacts", json={"record_id": "ws:2"}).get_json() == {
        "record_id": "ws:2",
        "contact": None,
    }
    assert _entries(engine) == []


def test_pf_table_tag_user_and_import_changes_are_logged(engine_app):
    engine = build_world(engine_app)
    admin = client_as(engine_app, "admin")
    rows = [(r.channel, r.client, r.pf) for r in pf_map.read(engine)]
    pf_map.save(engine, [(c, cl, None if c == "paper" else pf) for c, cl, pf in rows], "admin")
    admin.post("/tags/save", data={"csrf_token": csrf(admin), "version": "hcp-demo-1", "level": "1", "code": "H109", "text": "推诿", "mode": "offline"})  # fmt: skip
    admin.post("/users", data={"csrf_token": csrf(admin), "username": "zhou", "password": "zhou-pass-12", "role": "technician"})  # fmt: skip
    with engine.begin() as conn:
        org.add(conn, "units", "x", "x", "370305", kind="hall")  # not through a page: not logged
    actions = [(e["action"], e["target"]) for e in _entries(engine)]
    assert actions == [
        ("pf_map.save", "pf_map"),
        ("tags.save", "tags:hcp-demo-1:H109"),
        ("user.add", "user:zhou"),
    ]
    user_entry = _entries(engine)[-1]
    assert "password" not in user_entry["after"]
    tag_entry = _entries(engine)[1]
    assert tag_entry["before"] is None
    assert json.loads(tag_entry["after"])["text"] == "推诿"
    listing = admin.get("/api/v1/audit?action=user.add").get_json()
    assert listing["total"] == 1 and listing["items"][0]["target"] == "user:zhou"
    assert admin.get("/api/v1/audit?colour=red").get_json() == {
        "error": "colour: unknown parameter"
    }


def test_a_number_left_on_a_citizen_channel_is_revealed_sealed_and_audited(engine_app):
    from sync_server import phones
    from tests.harness.records import add_evaluation

    engine = build_world(engine_app)
    add_evaluation(engine, "web:1", 1, window_id="A01", channel="web", comment="材料反复要")
    with engine_app.app_context():
        key = phones.app_key()
    with engine.begin() as conn:
        phones.keep(conn, key, "web:1", "13712345678")
        stored = conn.execute(select(db.evaluations.c.id)).scalars().all()
    assert "web:1" in stored
    supervisor = client_as(engine_app, "supervisor")
    page = supervisor.get("/evaluations/web:1").get_data(as_text=True)
    assert "13712345678" not in page and 'name="record_id" value="web:1"' in page
    answer = supervisor.post("/api/v1/contacts", json={"record_id": "web:1"}).get_json()
    assert answer == {"record_id": "web:1", "contact": "13712345678"}
    other = client_as(engine_app, "other_manager")  # 雪宫街道: not their rating
    assert other.post("/api/v1/contacts", json={"record_id": "web:1"}).status_code == 404
    assert [(e["actor"], e["action"], e["target"]) for e in _entries(engine)] == [
        ("viewer", "contact.reveal", "web:1")
    ]


def test_a_body_nested_too_deeply_is_refused_as_invalid_json(engine_app):
    build_world(engine_app)
    supervisor = client_as(engine_app, "supervisor")
    nested = "[" * 100_000 + "]" * 100_000
    response = supervisor.post("/api/v1/contacts", data=nested, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": 'body: must be {"record_id": "<id>"}'}
    assert _entries(engine_app.extensions["hcp_engine"]) == []  # nothing revealed
