"""The collector's ingest decisions, on SQLite and PostgreSQL.

Every message goes through Ingestor.process(), the same code the MQTT
service runs; here the payloads are built by hand so that each rule can be
hit on purpose.
"""

import json
import secrets

import pytest
from sqlalchemy import select

from protocols import messages, sign, topics
from sync_server import contacts, db, phones
from sync_server.ingest import Ingestor
from tests.harness.records import CONTACT, KEY, KEY_HEX, batch, contact_entry, signed

EV = topics.topic("kp-01", topics.UP_EV)


@pytest.fixture
def ingestor(engine):
    db.add_device(engine, "kp-01", KEY_HEX)
    db.add_device(engine, "kp-02", secrets.token_hex(32))
    return Ingestor(engine)


def stored(engine):
    with engine.connect() as conn:
        return conn.execute(
            select(db.evaluations.c.id, db.evaluations.c.stars).order_by(db.evaluations.c.seq)
        ).all()


def held(engine):
    with engine.connect() as conn:
        return conn.execute(
            select(db.quarantine.c.record_id, db.quarantine.c.reason).order_by(db.quarantine.c.qid)
        ).all()


def ack_of(outcome):
    """The ack, after checking it is signed with kp-01's key."""
    assert outcome.ack_topic == topics.topic("kp-01", topics.DOWN_ACK)
    ack = messages.decode(outcome.ack_payload, messages.ACK)
    assert sign.verify(ack, KEY), "every ack is signed with the device's key"
    del ack["sig"]
    return ack


def test_a_batch_is_stored_then_acked(engine, ingestor):
    outcome = ingestor.process(EV, batch([signed(1, 5), signed(2, 1)], number=7))
    assert stored(engine) == [("kp-01:1", 5), ("kp-01:2", 1)]
    assert ack_of(outcome) == messages.ack(7, [1, 2], [])


def test_a_batch_delivered_twice_is_stored_once_and_acked_both_times(engine, ingestor):
    payload = batch([signed(1), signed(2)])
    first = ingestor.process(EV, payload)
    second = ingestor.process(EV, payload)
    assert stored(engine) == [("kp-01:1", 5), ("kp-01:2", 5)]
    assert ack_of(first)["stored"] == ack_of(second)["stored"] == [1, 2]
    assert second.stored == [] and second.duplicates == [1, 2]
    assert held(engine) == []


def test_a_rating_is_never_overwritten_by_different_content(engine, ingestor):
    ingestor.process(EV, batch([signed(1, stars=5)]))
    outcome = ingestor.process(EV, batch([signed(1, stars=1)], number=2))
    assert stored(engine) == [("kp-01:1", 5)]
    assert held(engine) == [("kp-01:1", "id: already stored with different content")]
    assert ack_of(outcome) == messages.ack(2, [], [1])


def test_a_bad_signature_is_quarantined_with_its_reason_and_not_counted(engine, ingestor):
    forged = signed(1, key=b"not the device key")
    outcome = ingestor.process(EV, batch([forged, signed(2)]))
    assert stored(engine) == [("kp-01:2", 5)]
    assert held(engine) == [("kp-01:1", "sig: does not verify with the key of device 'kp-01'")]
    assert ack_of(outcome) == messages.ack(1, [2], [1])


def test_a_record_on_another_devices_topic_is_quarantined_and_not_acked(engine, ingestor):
    # kp-02's seq 1 named in kp-01's ack would make kp-01 forget its own seq 1
    outcome = ingestor.process(EV, batch([signed(1, device_id="kp-02")]))
    assert stored(engine) == []
    assert held(engine) == [
        ("kp-02:1", "device_id: record of 'kp-02' arrived on the topic of 'kp-01'")
    ]
    assert ack_of(outcome) == messages.ack(1, [], [])


def test_invalid_fields_are_quarantined_with_the_field_named(engine, ingestor):
    bad = signed(1)
    bad["stars"] = 9
    outcome = ingestor.process(EV, batch([bad]))
    assert held(engine) == [("kp-01:1", "stars: must be an integer 1..5, got 9")]
    assert ack_of(outcome)["quarantined"] == [1]
    with engine.connect() as conn:
        payload = conn.execute(select(db.quarantine.c.payload)).scalar()
    assert json.loads(payload)["stars"] == 9  # the record itself is kept


def test_records_of_an_unknown_device_are_kept_aside_once_and_not_acked(engine, ingestor):
    # Without a key there is nothing to sign an ack with: the device keeps the
    # record and sends it again; the repeat adds no second quarantine row, and
    # once the device is provisioned the record is stored.
    topic = topics.topic("kp-99", topics.UP_EV)
    key_hex = secrets.token_hex(32)
    payload = batch([signed(1, device_id="kp-99", key=bytes.fromhex(key_hex))], device_id="kp-99")
    outcome = ingestor.process(topic, payload)
    assert outcome.ack_topic is None and outcome.quarantine_rows_added == 1
    again = ingestor.process(topic, payload)
    assert again.ack_topic is None and again.quarantine_rows_added == 0
    assert held(engine) == [("kp-99:1", "device_id: unknown device 'kp-99' (not provisioned)")]
    db.add_device(engine, "kp-99", key_hex)
    stored_now = ingestor.process(topic, payload)
    assert stored_now.stored == [1] and stored_now.ack_topic is not None


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (EV, b"not json", "payload: not JSON"),
        (EV, b'{"t":"ev","v":9}', "ev.v: unsupported version 9"),
        (
            "hcp/v1/dev/kp-01/down/ack",
            b"{}",
            "topic: the collector does not take down/ack messages",
        ),
        ("other/topic", b"{}", "not an hcp/v1 device topic: 'other/topic'"),
    ],
)
def test_unreadable_messages_are_quarantined_whole(engine, ingestor, topic, payload, reason):
    outcome = ingestor.process(topic, payload)
    assert outcome.ack_topic is None
    assert held(engine) == [(None, reason)]
    with engine.connect() as conn:
        assert conn.execute(select(db.quarantine.c.payload)).scalar() == payload.decode()


def test_status_updates_the_device_and_bad_status_is_quarantined(engine, ingestor):
    status = messages.status(True, fw="0.1.0", queue=0, last_seq=2, counts={"5": 2})
    ingestor.process(topics.topic("kp-01", topics.UP_STATUS), messages.encode(status))
    with engine.connect() as conn:
        saved = conn.execute(
            select(db.devices.c.status).where(db.devices.c.device_id == "kp-01")
        ).scalar()
    assert json.loads(saved) == status
    ingestor.process(topics.topic("kp-01", topics.UP_STATUS), b'{"t":"status","v":1}')
    assert held(engine) == [(None, "status.online: must be true or false")]


def test_a_contact_is_kept_apart_from_its_rating(engine, ingestor):
    rec = signed(1, stars=1)
    outcome = ingestor.process(EV, batch([rec], contacts=[contact_entry("kp-01:1")]))
    assert ack_of(outcome) == messages.ack(1, [1], [])
    with engine.connect() as conn:
        kept = conn.execute(select(db.contacts.c.record_id, db.contacts.c.contact)).all()
    # sealed at rest (sync_server/contacts.py): never the number in clear
    assert [record_id for record_id, _ in kept] == ["kp-01:1"]
    assert CONTACT not in kept[0][1] and contacts.is_sealed(kept[0][1])
    assert phones.unseal(contacts.key_for(engine), kept[0][1]) == CONTACT
    assert "contact" not in {c.name for c in db.evaluations.columns}


def test_a_bad_review_without_a_reason_is_marked_as_owing_one(engine, ingestor):
    records = [
        signed(1, stars=1),  # walked away from the reason screen
        signed(2, stars=2, tags=["D201"], content_version="demo-1"),
        signed(3, stars=2, content_version="demo-1"),  # tags shown, none chosen
        signed(4, stars=5),
    ]
    ingestor.process(EV, batch(records))
    ev = db.evaluations.c
    with engine.connect() as conn:
        owed = conn.execute(select(ev.seq, ev.reason_owed, ev.content_version).order_by(ev.seq))
        assert [tuple(row) for row in owed] == [
            (1, True, None),
            (2, False, "demo-1"),
            (3, True, "demo-1"),
            (4, False, None),
        ]


def test_a_kiosk_signs_kiosk_records_only(engine, ingestor):
    kiosk_key = bytes(range(32))
    db.add_device(engine, "ks-01", kiosk_key.hex(), kind="kiosk")
    good = signed(1, device_id="ks-01", key=kiosk_key, channel="kiosk", comment="很好")
    wrong = signed(2, device_id="ks-01", key=kiosk_key)  # channel keypad
    outcome = ingestor.process(
        topics.topic("ks-01", topics.UP_EV), batch([good, wrong], 1, "ks-01")
    )
    assert outcome.stored == [1]
    assert held(engine) == [("ks-01:2", "channel: device 'ks-01' is a kiosk")]


def test_a_new_key_given_while_the_collector_runs_is_taken(engine, ingestor):
    # re-provisioning: the cached key is stale; the first record that fails with
    # it makes the collector read the device again
    ingestor.process(EV, batch([signed(1)]))
    new_key = secrets.token_bytes(32)
    db.update_device(engine, "kp-01", key_hex=new_key.hex())
    # the ingestor still holds the old key in its cache
    outcome = ingestor.process(EV, batch([signed(2, key=new_key)], number=2))
    assert messages.decode(outcome.ack_payload, messages.ACK)["stored"] == [2]
    assert sign.verify(messages.decode(outcome.ack_payload), new_key), "acked with the new key"
    stale = ingestor.process(EV, batch([signed(3)], number=3))  # the old key no longer verifies
    assert stale.stored == [] and held(engine)[-1] == (
        "kp-01:3",
        "sig: does not verify with the key of device 'kp-01'",
    )
