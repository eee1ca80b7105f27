"""A rater's phone number at rest: sealed with SM4 and a MAC, never in clear.

A citizen channel (QR page, web portal, SMS) may take a phone number for the
return visit, with the rater's explicit consent; a service event may carry
the applicant's phone from the business system; a keypad or kiosk sends
the contact a rater typed in (sync_server/contacts.py seals it with the same
key and `seal_text`). Each is kept sealed:

- SM4-CBC (GB/T 32907, `gmssl`) with a random IV per value encrypts it;
- HMAC-SHA256 over version, IV and ciphertext detects any change: a value
  that was tampered with (or sealed under another key) is refused, not shown;
- the key (16 bytes SM4 + 32 bytes MAC) lives outside the database, in the
  instance folder beside the secret key (`<instance>/phone_key`, mode 0600),
  so a copy of the database alone reveals no number.

`lookup` gives a keyed hash of a number, so the SMS channel finds a
conversation by the sender's number without storing it in clear.

Only roles with the `contact` capability see a number, through `reveal`,
which writes the audit entry in the same transaction that reads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from pathlib import Path

from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4
from sqlalchemy import select

from sync_server import audit, db

VERSION = b"p1"
KEY_FILE = "phone_key"
KEY_BYTES = 48  # 16 for SM4, 32 for the MAC
MAC_BYTES = 32
# a mobile number (11 digits from 13x to 19x) or a landline with its area code
PHONE_PATTERN = re.compile(r"1[3-9][0-9]{9}|0[1-9][0-9]{1,2}-?[0-9]{7,8}")
FULL_WIDTH = str.maketrans("０１２３４５６７８９－", "0123456789-")


class PhoneError(ValueError):
    """A number that is not a phone number we can call back."""


class Tampered(ValueError):
    """A sealed value whose MAC does not verify under this key."""


def normalise(text: str) -> str:
    """The number as stored: full-width digits made ASCII, spaces dropped.
    PhoneError when it is no mobile number or landline with area code."""
    if not isinstance(text, str) or len(text) > 40:
        raise PhoneError("phone: too long")
    number = text.translate(FULL_WIDTH).replace(" ", "").replace("\u3000", "")
    if not PHONE_PATTERN.fullmatch(number):
        raise PhoneError("phone: not a mobile number or a landline with area code")
    return number


def instance_key(instance_path: str, name: str = KEY_FILE, size: int = KEY_BYTES) -> bytes:
    """A key of `size` bytes kept in the instance folder (sync_server.instance_file)."""
    from sync_server import instance_file

    path = Path(instance_path) / name
    try:
        key = bytes.fromhex(instance_file(instance_path, name, size))
    except ValueError:
        key = b""
    if len(key) != size:
        raise RuntimeError(f"{path}: not a key of {size} bytes in hex")
    return key


def app_key() -> bytes:
    """The phone key of the running app (cached in app.extensions)."""
    from flask import current_app

    keys = current_app.extensions.setdefault("hcp_citizen_keys", {})
    if KEY_FILE not in keys:
        keys[KEY_FILE] = instance_key(current_app.instance_path)
    return keys[KEY_FILE]


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key[16:], VERSION + body, hashlib.sha256).digest()


def seal(key: bytes, phone: str) -> str:
    return seal_text(key, normalise(phone))


def seal_text(key: bytes, number: str) -> str:
    """`number` sealed as it is (a device's contact is checked by the wire
    contract, not by `normalise`)."""
    iv = secrets.token_bytes(16)
    cipher = CryptSM4()
    cipher.set_key(key[:16], SM4_ENCRYPT)
    body = iv + cipher.crypt_cbc(iv, number.encode())
    return VERSION.decode() + ":" + base64.b64encode(body + _mac(key, body)).decode()


def unseal(key: bytes, sealed: str) -> str:
    prefix, _, payload = (sealed or "").partition(":")
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise Tampered("sealed phone: not base64") from None
    body, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if prefix != VERSION.decode() or len(body) < 32 or len(body) % 16:
        raise Tampered("sealed phone: unknown shape")
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise Tampered("sealed phone: MAC does not verify")
    cipher = CryptSM4()
    cipher.set_key(key[:16], SM4_DECRYPT)
    return cipher.crypt_cbc(body[:16], body[16:]).decode()


def lookup(key: bytes, phone: str) -> str:
    """A keyed hash of the number, to find rows by number without keeping it."""
    return lookup_text(key, normalise(phone))


def lookup_text(key: bytes, number: str) -> str:
    """`lookup` of a number taken as it is (a mobile number gives the same
    value through either, so a device's contact and a citizen's match)."""
    return hmac.new(key[16:], b"lookup " + number.encode(), hashlib.sha256).hexdigest()


def keep(conn, key: bytes, record_id: str, phone: str) -> None:
    """Keep the number a rater left with `record_id` (caller's transaction)."""
    from sync_server.schema_citizen import rater_phones

    conn.execute(
        rater_phones.insert().values(
            record_id=record_id, sealed=seal(key, phone), received_at=db.utc_now()
        )
    )


def reveal(engine, key: bytes, record_id: str, units=None) -> str | None:
    """The number left with `record_id` (None when none, or outside `units`),
    logged as a reveal in the audit log. Tampered when the stored value fails
    its MAC (the attempt is logged too)."""
    from sync_server import org
    from sync_server.schema_citizen import rater_phones

    with engine.begin() as conn:
        if not org.rating_inside(conn, record_id, units):
            return None
        sealed = conn.execute(
            select(rater_phones.c.sealed).where(rater_phones.c.record_id == record_id)
        ).scalar()
        if sealed is None:
            return None
        try:
            phone, problem = unseal(key, sealed), None
        except Tampered as exc:
            phone, problem = None, exc
        audit.record(conn, "contact.tampered" if problem else "contact.reveal", record_id)
    if problem is not None:
        raise problem
    return phone


def keep_for_event(conn, key: bytes, case_no: str, service_no: str, phone: str) -> str:
    """Keep the applicant's number the business system gave with a service
    event (caller's transaction); returns the reference the event keeps
    (service_events.phone_ref). The same event again: its reference."""
    from sync_server.schema_citizen import event_phones

    e = event_phones.c
    found = conn.execute(
        select(e.ref).where(e.case_no == case_no, e.service_no == service_no)
    ).scalar()
    if found is not None:
        return found
    ref = secrets.token_hex(16)
    conn.execute(
        event_phones.insert().values(
            case_no=case_no,
            service_no=service_no,
            sealed=seal(key, phone),
            lookup=lookup(key, phone),
            ref=ref,
            registered_at=db.utc_now(),
        )
    )
    return ref


def event_phone(conn, key: bytes, case_no: str, service_no: str) -> str | None:
    """The applicant's number of a service event, for the SMS channel and the
    portal's check (never shown to anyone)."""
    from sync_server.schema_citizen import event_phones

    e = event_phones.c
    sealed = conn.execute(
        select(e.sealed).where(e.case_no == case_no, e.service_no == service_no)
    ).scalar()
    return None if sealed is None else unseal(key, sealed)
