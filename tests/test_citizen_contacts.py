"""A contact a keypad or kiosk sends with a rating is kept sealed (SM4 and a
MAC with the instance folder's phone key), like a citizen's number: the
database row holds no trace of the number, the audited reveal gives it back,
and rows written in clear before the sealing are sealed when the app starts
or at their first reveal."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select

from sync_server import contacts, create_app, db, phones
from sync_server.ingest import Ingestor
from tests.harness import shared_worlds
from tests.harness.records import CONTACT, batch, contact_entry, ev_topic, signed
from tests.test_access import client_as
from tests.test_audit import _entries, build_world

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

NUMBER = "13912345678"


def _row(engine, record_id):
    with engine.connect() as conn:
        return conn.execute(select(db.contacts).where(db.contacts.c.record_id == record_id)).one()


def _holds_no_number(value: str, number: str) -> None:
    assert number not in value
    prefix, _, payload = value.partition(":")
    assert prefix == "p1"
    assert number.encode() not in base64.b64decode(payload)


def test_a_device_contact_is_stored_sealed_and_revealed_audited(engine_app):
    engine = build_world(engine_app)
    outcome = Ingestor(engine).process(
        ev_topic(),
        batch([signed(7, 1, window_id="A01")], contacts=[contact_entry("kp-01:7", NUMBER)]),
    )
    assert outcome.stored == [7]
    row = _row(engine, "kp-01:7")
    _holds_no_number(row.contact, NUMBER)
    assert NUMBER not in row.lookup and len(row.lookup) == 64
    # the same number from another channel gives the same lookup, so repeats can be found
    assert row.lookup == phones.lookup(phones.instance_key(engine_app.instance_path), NUMBER)
    manager = client_as(engine_app, "unit_manager")
    answer = client_as(engine_app, "supervisor").post(
        "/api/v1/contacts", json={"record_id": "kp-01:7"}
    )
    assert answer.get_json() == {"record_id": "kp-01:7", "contact": NUMBER}
    other = client_as(engine_app, "other_manager")  # 雪宫街道: not their rating
    assert other.post("/api/v1/contacts", json={"record_id": "kp-01:7"}).status_code == 404
    assert manager.get("/evaluations/kp-01:7").status_code == 200
    assert [(e["actor"], e["action"], e["target"]) for e in _entries(engine)] == [
        ("viewer", "contact.reveal", "kp-01:7")
    ]


def test_a_clear_contact_is_sealed_at_its_first_reveal(engine_app):
    engine = build_world(engine_app)  # its ws:1 contact is written in clear, after the start
    assert _row(engine, "ws:1").contact == CONTACT
    answer = client_as(engine_app, "supervisor").post(
        "/api/v1/contacts", json={"record_id": "ws:1"}
    )
    assert answer.get_json() == {"record_id": "ws:1", "contact": CONTACT}
    _holds_no_number(_row(engine, "ws:1").contact, CONTACT)
    again = client_as(engine_app, "supervisor").post("/api/v1/contacts", json={"record_id": "ws:1"})
    assert again.get_json() == {"record_id": "ws:1", "contact": CONTACT}
    assert [e["action"] for e in _entries(engine)] == ["contact.reveal", "contact.reveal"]


def test_a_database_from_before_0015_has_its_contacts_sealed_at_the_next_start(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.make_engine(url)
    with engine.begin() as conn:  # a collector of the revision before, its contacts in clear
        command.upgrade(db.alembic_config(conn), "0014")
        conn.exec_driver_sql(
            "INSERT INTO contacts (record_id, contact, received_at) VALUES "
            "('kp-01:1', '13800000001', '2026-11-01T00:00:00Z'), "
            "('kp-01:2', '053312345', '2026-11-01T00:00:00Z')"
        )
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "t"}, str(tmp_path / "inst"))
    key = phones.instance_key(app.instance_path)
    with engine.connect() as conn:
        rows = {r.record_id: r for r in conn.execute(select(db.contacts)).all()}
    _holds_no_number(rows["kp-01:1"].contact, "13800000001")
    _holds_no_number(rows["kp-01:2"].contact, "053312345")
    assert phones.unseal(key, rows["kp-01:2"].contact) == "053312345"
    assert rows["kp-01:1"].lookup == phones.lookup(key, "13800000001")
    assert contacts.seal_clear_rows(engine, key) == 0  # a second start changes nothing
    app.extensions["hcp_engine"].dispose()
    engine.dispose()


def test_a_tampered_contact_is_not_shown_and_the_attempt_is_audited(engine_app):
    engine = build_world(engine_app)
    Ingestor(engine).process(
        ev_topic(),
        batch([signed(8, 1, window_id="A01")], contacts=[contact_entry("kp-01:8", NUMBER)]),
    )
    other_key = bytes(range(48))
    with engine.begin() as conn:  # a value sealed under another key
        conn.execute(
            db.contacts.update()
            .where(db.contacts.c.record_id == "kp-01:8")
            .values(contact=phones.seal_text(other_key, NUMBER))
        )
    with pytest.raises(phones.Tampered, match="^sealed phone: MAC does not verify$"):
        contacts.reveal(engine, "kp-01:8", units=None)
    assert [(e["action"], e["target"]) for e in _entries(engine)] == [
        ("contact.tampered", "kp-01:8")
    ]


def test_a_reveal_names_the_scope_it_reads_in(engine_app):
    engine = build_world(engine_app)
    Ingestor(engine).process(
        ev_topic(),
        batch([signed(9, 1, window_id="A01")], contacts=[contact_entry("kp-01:9", NUMBER)]),
    )
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'units'"):
        contacts.reveal(engine, "kp-01:9")  # no default scope that could mean "all units"
    assert contacts.reveal(engine, "kp-01:9", units=set()) is None  # outside: nothing, no audit
    assert _entries(engine) == []
    assert contacts.reveal(engine, "kp-01:9", units=None) == NUMBER
    assert [(e["action"], e["target"]) for e in _entries(engine)] == [("contact.reveal", "kp-01:9")]
