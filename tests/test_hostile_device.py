"""A hostile but provisioned device, tried every way we could think of, on
SQLite and PostgreSQL. kp-02 is the attacker; kp-01 is an honest keypad.
After every attack kp-01's ratings are stored and acknowledged, nothing of
kp-01's is changed or hidden, ingest goes on, and what was refused is kept
aside with its reason (redacted, and within the quarantine's bounds)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from protocols import messages, sign, topics
from sync_server import contacts, db, ingest, phones, quarantine
from sync_server.ingest import Ingestor
from tests.harness.records import (
    CONTACT,
    KEY,
    KEY_HEX,
    add_evaluation,
    batch,
    contact_entry,
    ev_topic,
    server_record,
    signed,
    status_topic,
)

ATTACKER_KEY = bytes(range(32))


@pytest.fixture
def ingestor(engine):
    db.add_device(engine, "kp-01", KEY_HEX)
    db.add_device(engine, "kp-02", ATTACKER_KEY.hex())
    db.add_device(engine, "ks-01", "11" * 32, kind="kiosk")
    return Ingestor(engine)


def attack(ingestor, records, number=1, contacts=None):
    """kp-02 sends a batch on its own topic; returns (outcome, ack or None)."""
    outcome = ingestor.process(ev_topic("kp-02"), batch(records, number, "kp-02", contacts))
    if outcome.ack_topic is None:
        return outcome, None
    assert outcome.ack_topic == topics.topic("kp-02", topics.DOWN_ACK)
    ack = messages.decode(outcome.ack_payload, messages.ACK)
    assert sign.verify(ack, ATTACKER_KEY)
    return outcome, {"stored": ack["stored"], "quarantined": ack["quarantined"]}


def honest(ingestor, *seqs, stars=1):
    """kp-01 sends its own 差评; it must be stored and acked in full."""
    records = [signed(seq, stars=stars) for seq in seqs]
    outcome = ingestor.process(ev_topic("kp-01"), batch(records, 9))
    ack = messages.decode(outcome.ack_payload, messages.ACK)
    assert ack["stored"] == list(seqs) and ack["quarantined"] == []
    return outcome


def evaluations(engine):
    ev = db.evaluations.c
    with engine.connect() as conn:
        return conn.execute(select(ev.id, ev.stars, ev.sig).order_by(ev.id)).all()


def reasons(engine):
    q = db.quarantine.c
    with engine.connect() as conn:
        return conn.execute(select(q.device_id, q.record_id, q.reason).order_by(q.qid)).all()


def attacker_record(seq, stars=5, **extra):
    return signed(seq, stars=stars, device_id="kp-02", key=ATTACKER_KEY, **extra)


def forge(rec, key=ATTACKER_KEY):
    rec = {k: v for k, v in rec.items() if k != "sig"}
    rec["sig"] = sign.sign(rec, key)
    return rec


# --- taking another's id -------------------------------------------------------


def test_a_device_cannot_take_another_devices_id(engine, ingestor):
    # the attacker signs kp-01's next record id with its own key, in every shape
    stolen = [
        forge(signed(5, device_id="kp-01")),
        forge({**signed(6, device_id="kp-01"), "channel": "web"}),
        forge({k: v for k, v in signed(7, device_id="kp-01").items() if k != "device_id"}),
    ]
    outcome, ack = attack(ingestor, stolen)
    assert ack == {"stored": [], "quarantined": []}  # kp-02 forgets none of its own
    assert [r.reason for r in reasons(engine)] == [
        "device_id: record of 'kp-01' arrived on the topic of 'kp-02'",
        "device_id: only on keypad and kiosk records",
        "device_id: must be 1..32 characters of A-Z a-z 0-9 - _",
    ]
    honest(ingestor, 5, 6, 7)
    assert [row.id for row in evaluations(engine)] == ["kp-01:5", "kp-01:6", "kp-01:7"]


def test_a_device_cannot_take_ids_of_web_or_paper_ratings(engine, ingestor):
    for channel in ("web", "paper", "sms", "hotline", "qr_case"):
        rec = forge(server_record(channel, token="t-1", device_id="kp-02"))
        attack(ingestor, [rec])
        rec = forge(server_record(channel, token="t-1"))
        attack(ingestor, [rec])
    assert evaluations(engine) == []
    assert {r.reason for r in reasons(engine)} == {
        "device_id: only on keypad and kiosk records",
        "device_id: record of None arrived on the topic of 'kp-02'",
    }


def test_a_keypad_cannot_sign_as_a_kiosk_or_as_a_clerk(engine, ingestor):
    outcome, ack = attack(
        ingestor,
        [attacker_record(1, channel="kiosk"), attacker_record(2, origin="staff_entry")],
    )
    assert ack == {"stored": [], "quarantined": [1, 2]}
    assert [r.reason for r in reasons(engine)] == [
        "channel: device 'kp-02' is a keypad",
        "origin: must be citizen on a keypad record",
    ]


def test_a_record_already_stored_is_never_overwritten(engine, ingestor):
    honest(ingestor, 1)
    before = evaluations(engine)
    # kp-01's own key is not the attacker's: a changed copy fails its signature
    changed = {**signed(1, stars=1), "stars": 5}
    ingestor.process(ev_topic("kp-01"), batch([changed]))
    assert evaluations(engine) == before
    assert reasons(engine)[-1].reason == "sig: does not verify with the key of device 'kp-01'"


# --- stopping ingest ----------------------------------------------------------------


def test_a_record_the_database_refuses_is_kept_aside_alone_and_ingest_goes_on(engine, ingestor):
    # a row from an earlier import holds (kp-02, 3) under another id: the
    # second unique index refuses seq 3, and only seq 3
    add_evaluation(engine, "web/legacy-3", 4, device_id="kp-02", seq=3, channel="web")
    records = [attacker_record(seq) for seq in (1, 2, 3, 4)]
    outcome, ack = attack(ingestor, records)
    assert ack == {"stored": [1, 2, 4], "quarantined": [3]}
    assert reasons(engine) == [
        ("kp-02", "kp-02:3", "database: refused the record (IntegrityError)")
    ]
    again, ack = attack(ingestor, records, number=2)  # the repeat adds no row
    assert ack == {"stored": [1, 2, 4], "quarantined": [3]} and again.quarantine_rows_added == 0
    honest(ingestor, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 2**70), ("comment", "a\x00b"), ("uptime_ms", -(2**70))],
)
def test_a_value_past_what_the_database_stores_cannot_block_ingest(
    engine, ingestor, monkeypatch, field, value
):
    # Validation keeps such values out; should it ever let one through, the
    # database's refusal must stay with that record.
    real_row = ingest.evaluation_row

    def row_with_bad_value(rec, received_at, refs):
        row = real_row(rec, received_at, refs)
        if rec["seq"] == 2:
            row[field] = value
        return row

    monkeypatch.setattr(ingest, "evaluation_row", row_with_bad_value)
    outcome, ack = attack(ingestor, [attacker_record(1), attacker_record(2)])
    if engine.dialect.name == "sqlite" and field == "comment":
        assert ack == {"stored": [1, 2], "quarantined": []}  # SQLite stores NUL
        return
    assert ack == {"stored": [1], "quarantined": [2]}
    assert reasons(engine)[0].reason.startswith("database: refused the record (")
    honest(ingestor, 1)


def test_a_lost_database_is_an_outage_not_a_quarantine(engine, ingestor, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def lost(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(ingestor, "_store_in", lost)
    with pytest.raises(OperationalError):
        attack(ingestor, [attacker_record(1)])
    monkeypatch.undo()
    assert reasons(engine) == []  # nothing kept aside: the broker delivers it again


def test_a_batch_for_another_device_or_with_fields_of_its_own_is_kept_whole(engine, ingestor):
    records = [attacker_record(1)]
    payload = messages.encode(messages.batch("kp-01", 1, records))
    outcome = ingestor.process(ev_topic("kp-02"), payload)
    assert outcome.ack_topic is None
    raw = json.dumps({"v": 1, "t": "ev", "device_id": "kp-02", "batch": 1,
                      "records": records, "note": "x"}).encode()  # fmt: skip
    ingestor.process(ev_topic("kp-02"), raw)
    assert [r.reason for r in reasons(engine)] == [
        "ev.device_id: 'kp-01' on the topic of 'kp-02'",
        "ev.note: unknown field",
    ]
    assert evaluations(engine) == []


def test_an_unforeseen_error_keeps_the_records_aside_once_and_acks_them(engine, ingestor):
    payload = batch([attacker_record(1), attacker_record(2)], 1, "kp-02")
    first = ingestor.after_error(ev_topic("kp-02"), payload, RuntimeError("boom"))
    again = ingestor.after_error(ev_topic("kp-02"), payload, RuntimeError("boom"))
    for outcome in (first, again):
        ack = messages.decode(outcome.ack_payload, messages.ACK)
        assert ack["quarantined"] == [1, 2]  # the device may forget them: no resend loop
    assert [r.reason for r in reasons(engine)] == ["ingest error: RuntimeError"] * 2


# --- contacts --------------------------------------------------------------------------


def kept_contacts(engine) -> list[tuple[str, str]]:
    """(record id, number) of the contacts kept: sealed in the table, unsealed here."""
    with engine.connect() as conn:
        rows = conn.execute(select(db.contacts.c.record_id, db.contacts.c.contact)).all()
    assert all(contacts.is_sealed(value) for _id, value in rows), rows
    return [(rid, phones.unseal(contacts.key_for(engine), value)) for rid, value in rows]


def test_contacts_are_kept_apart_and_a_device_cannot_attach_one_to_anothers_rating(
    engine, ingestor
):
    honest(ingestor, 1)
    mine = attacker_record(1, stars=1)
    entries = [
        contact_entry("kp-02:1", key=ATTACKER_KEY),
        contact_entry("kp-01:1", phone="13900000000", key=ATTACKER_KEY),
    ]
    outcome, ack = attack(ingestor, [mine, attacker_record(2)], contacts=entries)
    assert ack == {"stored": [1, 2], "quarantined": []}
    with engine.connect() as conn:
        payloads = conn.execute(select(db.quarantine.c.payload)).scalars().all()
    assert kept_contacts(engine) == [("kp-02:1", CONTACT)]
    assert reasons(engine)[-1].reason == "contact.id: no record kp-01:1 of this device in the batch"
    assert not any("13900000000" in p or CONTACT in p for p in payloads)


def test_a_contact_is_never_overwritten_and_a_forged_one_is_refused(engine, ingestor):
    rec = signed(1, stars=2)
    ingestor.process(ev_topic(), batch([rec], contacts=[contact_entry("kp-01:1")]))
    forged = contact_entry("kp-01:1", phone="13900000000", key=ATTACKER_KEY)
    ingestor.process(ev_topic(), batch([rec], 2, contacts=[forged]))
    later = contact_entry("kp-01:1", phone="13700000000")
    ingestor.process(ev_topic(), batch([rec], 3, contacts=[later]))
    assert kept_contacts(engine) == [("kp-01:1", CONTACT)]
    assert (
        reasons(engine)[-1].reason == "contact.sig: does not verify with the key of device 'kp-01'"
    )


# --- the quarantine's bounds ----------------------------------------------------------


def test_the_quarantine_keeps_a_bounded_number_per_device_and_hour(engine):
    db.add_device(engine, "kp-02", ATTACKER_KEY.hex())
    ingestor = Ingestor(engine, quarantine.Bounds(per_device_hour=3))
    bad = [forge({**attacker_record(seq), "stars": 9}) for seq in range(1, 6)]
    outcome, ack = attack(ingestor, bad)
    # kept aside: 3; turned away: 2, not acked, so kp-02 keeps them and tries later
    assert ack == {"stored": [], "quarantined": [1, 2, 3]}
    assert outcome.quarantine_rows_added == 3 and outcome.quarantine_turned_away == 2
    assert quarantine.dropped(engine, "kp-02") == 2
    attack(ingestor, bad, number=2)
    assert quarantine.dropped(engine, "kp-02") == 4
    assert len(reasons(engine)) == 3


def test_the_quarantine_keeps_a_bounded_total_and_cuts_payloads(engine):
    db.add_device(engine, "kp-02", ATTACKER_KEY.hex())
    ingestor = Ingestor(engine, quarantine.Bounds(total=2, payload_max=100))
    for n in range(4):
        ingestor.process(ev_topic("kp-02"), b"x" * 5000 + str(n).encode())
    with engine.connect() as conn:
        rows = conn.execute(select(db.quarantine.c.payload, db.quarantine.c.payload_bytes)).all()
        total = conn.execute(select(func.count()).select_from(db.quarantine)).scalar()
    assert total == 2 and quarantine.dropped(engine) == 2
    assert all(len(payload) == 100 and size == 5001 for payload, size in rows)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"records": [{"contact": "13800000000"}]}',
        b"{'contact': '13800000000'}",  # a Python repr, not JSON
        b"[" * 50000 + b'{"contact": "13800000000"}' + b"]" * 50000,
        b'{"a": "\\ud800", "contact": "13800000000"}',
        b"\xff\xfe 13800000000 \x00",
    ],
)
def test_no_payload_shows_a_contact_in_the_quarantine(engine, ingestor, payload):
    ingestor.process(ev_topic("kp-02"), payload)
    with engine.connect() as conn:
        (kept,) = conn.execute(select(db.quarantine.c.payload)).scalars().all()
    assert CONTACT not in kept and "\x00" not in kept


# --- status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (
            b'{"v":1,"t":"status","online":true,"last_seq":1e999}',
            "status.last_seq: must be an integer 0..2147483647",
        ),
        (
            b'{"v":1,"t":"status","online":true,"last_seq":' + b"9" * 30 + b"}",
            "status.last_seq: must be an integer 0..2147483647",
        ),
        (b'{"v":1,"t":"status","online":true,"key_hex":"00"}', "status.key_hex: unknown field"),
    ],
)
def test_an_odd_status_is_kept_aside_and_the_last_good_one_stays(engine, ingestor, status, reason):
    good = messages.encode(messages.status(True, last_seq=4, counts={"5": 4}))
    ingestor.process(status_topic("kp-02"), good)
    ingestor.process(status_topic("kp-02"), status)
    with engine.connect() as conn:
        saved = conn.execute(
            select(db.devices.c.status).where(db.devices.c.device_id == "kp-02")
        ).scalar()
    assert json.loads(saved)["last_seq"] == 4
    assert [r.reason for r in reasons(engine)] == [reason]


def test_after_every_attack_the_honest_keypads_ratings_are_all_there(engine, ingestor):
    honest(ingestor, 1, 2)
    attack(ingestor, [forge(signed(3, device_id="kp-01"))])
    attack(ingestor, [forge({**signed(1, device_id="kp-01"), "stars": 5})])
    honest(ingestor, 3)
    stored = evaluations(engine)
    assert [(row.id, row.stars) for row in stored] == [
        ("kp-01:1", 1),
        ("kp-01:2", 1),
        ("kp-01:3", 1),
    ]
    assert all(sign.verify(signed(int(row.id[6:]), stars=1), KEY) for row in stored)


def test_inventing_boot_ids_keeps_a_bounded_number_of_boot_references(engine, ingestor):
    from sync_server import clock

    for n in range(clock.MAX_BOOTS + 10):
        status = messages.status(True, boot_id=f"b{n:04d}", uptime_ms=1000 + n)
        ingestor.process(status_topic("kp-02"), messages.encode(status))
    b = db.boot_clocks.c
    with engine.connect() as conn:
        kept = conn.execute(select(b.boot_id).where(b.device_id == "kp-02")).scalars().all()
    assert len(kept) == clock.MAX_BOOTS and "b0073" in kept and "b0000" not in kept


def test_a_device_is_registered_as_a_keypad_or_a_kiosk_only(engine):
    with pytest.raises(ValueError) as err:
        db.add_device(engine, "tb-01", "22" * 32, kind="web")
    assert str(err.value) == "kind: must be one of keypad, kiosk, got 'web'"
