"""Revealing a rater's contact (DOMAIN §7): only on an explicit action, only
to the roles allowed (`contact` capability, within their scope), and every
reveal written to the audit log in the same transaction that reads it.

This is the one place that reads `db.contacts` for people. A number a
citizen left on a collector-served channel (QR page, portal, SMS) is sealed
in `rater_phones` instead (sync_server/phones.py); `reveal` shows that one
where a rating has no device contact, with the same scope and audit.
"""

from __future__ import annotations

from sqlalchemy import select

from sync_server import audit, db, org


def reveal(engine, record_id: str, units=None) -> str | None:
    """The contact left with `record_id` (None when none, or when the record
    is outside `units`), and an audit entry when one is shown."""
    with engine.begin() as conn:
        if not org.rating_inside(conn, record_id, units):
            return None
        contact = conn.execute(
            select(db.contacts.c.contact).where(db.contacts.c.record_id == record_id)
        ).scalar()
        if contact is not None:
            audit.record(conn, "contact.reveal", record_id)
    if contact is None:
        from sync_server import phones

        contact = phones.reveal(engine, phones.app_key(), record_id, units)
    return contact
