"""A rater's contact left through a device, and revealing any rater's contact
(DOMAIN §7).

A keypad or kiosk sends a contact with a record (wire contract, `contacts`).
The ingest keeps it in `db.contacts` sealed the way phones.py seals a
citizen's number (SM4 with a MAC, the same key in the instance folder,
`phone_key`), never in clear, and beside it a keyed hash (`lookup`) so that
the same number on several ratings can be found without unsealing any.
Rows written in clear before the sealing (migration 0015 widens the column)
are sealed when the app starts (`seal_clear_rows`, from citizen.init_app).

Revealing: only on an explicit action, only to the roles allowed (`contact`
capability, within their scope), and every reveal written to the audit log
in the same transaction that reads it. A number a citizen left on a
collector-served channel (QR page, portal, SMS) is in `rater_phones`
(sync_server/phones.py); `reveal` shows that one where a rating has no
device contact, with the same scope and audit.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from sync_server import audit, db, org, phones

_keys: dict[str, bytes] = {}
_lock = threading.Lock()


def _database(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def use_key(engine, key: bytes) -> None:
    """The phone key contacts written to `engine`'s database are sealed with
    (the app registers its own when it starts)."""
    with _lock:
        _keys[_database(engine)] = key


def key_for(engine) -> bytes:
    """The key registered for `engine`'s database, else the key in the
    default instance folder (the one an app started without an instance path
    uses): an ingest running without the app seals with the app's key."""
    name = _database(engine)
    key = _keys.get(name)
    if key is None:
        from flask import Flask

        key = phones.instance_key(Flask("sync_server").instance_path)
        with _lock:
            key = _keys.setdefault(name, key)
    return key


def _sealed_values(key: bytes, contact: str) -> dict:
    return {"contact": phones.seal_text(key, contact), "lookup": phones.lookup_text(key, contact)}


def sealed_row(engine, record_id: str, contact: str, received_at: str) -> dict:
    """The `db.contacts` row for a device's contact (the number never in it)."""
    return {
        "record_id": record_id,
        **_sealed_values(key_for(engine), contact),
        "received_at": received_at,
    }


PREFIX = phones.VERSION.decode() + ":"


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def seal_clear_rows(engine, key: bytes) -> int:
    """Seal the contacts still kept in clear (written before migration 0015);
    returns how many. A value already sealed is left alone, so this runs at
    every start."""
    c = db.contacts.c
    with engine.begin() as conn:
        clear = conn.execute(
            select(c.record_id, c.contact).where(~c.contact.startswith(PREFIX, autoescape=True))
        ).all()
        for record_id, contact in clear:
            conn.execute(
                db.contacts.update()
                .where(c.record_id == record_id)
                .values(**_sealed_values(key, contact))
            )
    return len(clear)


def reveal(engine, record_id: str, *, units) -> str | None:
    """The contact left with `record_id` (None when none, or when the record
    is outside `units`), and an audit entry when one is shown. `units` has no
    default: a caller names the reader's scope, or None for every unit only
    where it has checked a narrower scope itself (a case's call-back: the
    case's unit may call its rater wherever the rating was placed). A sealed value
    that fails its MAC is not shown: the attempt is audited as
    `contact.tampered` and phones.Tampered raised."""
    with engine.begin() as conn:
        if not org.rating_inside(conn, record_id, units):
            return None
        sealed = conn.execute(
            select(db.contacts.c.contact).where(db.contacts.c.record_id == record_id)
        ).scalar()
        contact = problem = None
        if sealed is not None and not is_sealed(sealed):
            # still in clear (written before the app last started): sealed now
            contact = sealed
            conn.execute(
                db.contacts.update()
                .where(db.contacts.c.record_id == record_id)
                .values(**_sealed_values(key_for(engine), contact))
            )
        elif sealed is not None:
            try:
                contact = phones.unseal(key_for(engine), sealed)
            except phones.Tampered as exc:
                problem = exc
        if sealed is not None:
            audit.record(conn, "contact.tampered" if problem else "contact.reveal", record_id)
    if problem is not None:
        raise problem
    if sealed is None:
        contact = phones.reveal(engine, phones.app_key(), record_id, units)
    return contact
