"""The one place tests build records, batches, evaluation rows and statuses.

Every test that needs a record takes it from here, so a change of the
contract is made once for the whole suite."""

from __future__ import annotations

import json
import secrets

from sqlalchemy import select

from protocols import messages, sign, topics
from sync_server import db, features

KEY_HEX = "00" * 32  # kp-01's key unless a test gives another
KEY = bytes.fromhex(KEY_HEX)
RATED_AT = "2026-11-26T08:30:00Z"
CONTACT = "13800000000"


def device_record(seq, stars=5, device_id="kp-01", channel="keypad", **extra):
    """A keypad (or kiosk) record as the device makes it, unsigned."""
    rec = {
        "id": f"{device_id}:{seq}",
        "device_id": device_id,
        "seq": seq,
        "stars": stars,
        "channel": channel,
        "rated_at": RATED_AT,
        "clock": "ntp",
        "origin": "citizen",
        "attempt": 1,
    }
    rec.update(extra)
    return {k: v for k, v in rec.items() if v is not None}


def signed(seq, stars=5, device_id="kp-01", key=KEY, **extra):
    """device_record() signed with `key`."""
    rec = device_record(seq, stars, device_id, **extra)
    rec["sig"] = sign.sign(rec, key)
    return rec


def server_record(channel="web", token=None, stars=5, **extra):
    """A record the collector makes for web, SMS, paper ... (no device)."""
    rec = {
        "id": f"{channel}/{token or secrets.token_hex(8)}",
        "stars": stars,
        "channel": channel,
        "rated_at": RATED_AT,
        "clock": "ntp",
        "origin": "staff_entry" if channel == "paper" else "citizen",
        "attempt": 1,
    }
    if channel == "web":
        rec["client"] = "pc"
    if channel == "paper":
        rec.update(entered_by="clerk-1", entered_at=RATED_AT, card_date="2026-11-25")
    rec.update(extra)
    return {k: v for k, v in rec.items() if v is not None}


def contact_entry(record_id, phone=CONTACT, key=KEY):
    return messages.contact(record_id, phone, key)


def batch(records, number=1, device_id="kp-01", contacts=None):
    """An up/ev payload."""
    return messages.encode(messages.batch(device_id, number, records, contacts))


def ev_topic(device_id="kp-01"):
    return topics.topic(device_id, topics.UP_EV)


def status_topic(device_id="kp-01"):
    return topics.topic(device_id, topics.UP_STATUS)


def add_evaluation(engine, id, stars, rated_at=RATED_AT, **fields):
    """Insert one evaluation row directly, for tests that are not about ingest."""
    row = {
        "id": id,
        "stars": stars,
        "channel": "keypad",
        "rated_at": rated_at,
        "clock": "ntp",
        "origin": "citizen",
        "attempt": 1,
        "received_at": db.utc_now(),
        "excluded": False,
        "reason_owed": False,
        "effective_at": rated_at,
        "time_source": "device",
    }
    if ":" in id and "device_id" not in fields:
        device_id, seq = id.split(":")
        row.update(device_id=device_id, seq=int(seq))
    contact = fields.pop("contact", None)
    row.update(fields)
    with engine.begin() as conn:
        features.store_evaluations(conn, engine, [row])
        if contact:
            conn.execute(
                db.contacts.insert().values(record_id=id, contact=contact, received_at=db.utc_now())
            )


def set_status(engine, device_id, status, last_seen="2026-11-26T08:00:00.000000Z"):
    """Put a device's last status in place as ingest would."""
    with engine.begin() as conn:
        conn.execute(
            db.devices.update()
            .where(db.devices.c.device_id == device_id)
            .values(status=json.dumps(status), last_seen=last_seen)
        )


def stored_times(engine, seq):
    """(rated_at, effective_at, time_source, received_at) of the record with `seq`."""
    ev = db.evaluations.c
    with engine.connect() as conn:
        return conn.execute(
            select(ev.rated_at, ev.effective_at, ev.time_source, ev.received_at).where(
                ev.seq == seq
            )
        ).one()


def seeded(folder) -> str:
    """A data folder as provisioning leaves it (device.store.seed): the store
    in it knows its seqs start at 1. Returns the folder as text."""
    from device.store import seed

    seed(str(folder))
    return str(folder)
