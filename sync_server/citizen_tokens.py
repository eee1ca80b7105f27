"""What a citizen's link or paper carries, and how the collector checks it.

- **Window QR** (static, printed once per window): `<base>/r/w/<window_id>`.
  It names a window and nothing else, so it carries no signature: it rates
  that window, bound to a service event by the case number the rater types.
- **Case QR** (dynamic, one per service event): `<base>/r/c/<token>`, the
  token `<event id>-<YYYYMMDD>-<mac>`: the service event's id in the
  collector, the last local day of its rating period, and the first 12 bytes
  (hex) of HMAC-SHA256(citizen key, `hcp/v1 qr_case <id> <YYYYMMDD>`). A
  changed id or day fails the MAC; after that day the token is expired.
  The web portal gives the same kind of token with the purpose `web`, so a
  portal link cannot pass for a scanned one.
- **Receipt code**: 8 digits, HMAC-SHA256(citizen key, `hcp/v1 receipt
  <case_no> <service_no>`) as a number modulo 10^8. The window PC prints it
  on the receipt; with the case number it opens the rating on the portal.
- **Kiosk follow-up**: the kiosk's thank-you QR is `<followup_url>?id=<record
  id>&t=<token>`, the token the first 16 bytes (hex) of HMAC-SHA256(the
  kiosk's device key, `hcp/v1 followup <id>`) (kiosk/app.py).

The citizen key is 32 random bytes in `<instance>/citizen_key` (mode 0600),
outside the database like the session secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from zoneinfo import ZoneInfo

from sync_server.phones import instance_key

KEY_FILE = "citizen_key"
PURPOSES = ("qr_case", "web")
TOKEN_PATTERN = re.compile(r"([1-9][0-9]{0,17})-([0-9]{8})-([0-9a-f]{24})")
FOLLOWUP_PATTERN = re.compile(r"[0-9a-f]{32}")


class TokenError(ValueError):
    """`kind` is "forged" or "expired"."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def app_key() -> bytes:
    from flask import current_app

    keys = current_app.extensions.setdefault("hcp_citizen_keys", {})
    if KEY_FILE not in keys:
        keys[KEY_FILE] = instance_key(current_app.instance_path, KEY_FILE, 32)
    return keys[KEY_FILE]


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def event_token(key: bytes, purpose: str, event_id: int, last_day: dt.date) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose: one of {', '.join(PURPOSES)}")
    day = last_day.strftime("%Y%m%d")
    mac = _mac(key, f"hcp/v1 {purpose} {event_id} {day}")[:12].hex()
    return f"{event_id}-{day}-{mac}"


def check_event_token(key: bytes, purpose: str, token: str, today: dt.date) -> int:
    """The service event id of a genuine, unexpired token; TokenError otherwise."""
    found = TOKEN_PATTERN.fullmatch(token or "")
    if not found:
        raise TokenError("forged")
    event_id, day = int(found.group(1)), found.group(2)
    try:
        last_day = dt.date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        raise TokenError("forged") from None
    if not hmac.compare_digest(event_token(key, purpose, event_id, last_day), token):
        raise TokenError("forged")
    if today > last_day:
        raise TokenError("expired")
    return event_id


def receipt_code(key: bytes, case_no: str, service_no: str) -> str:
    number = int.from_bytes(_mac(key, f"hcp/v1 receipt {case_no} {service_no}")[:8], "big")
    return f"{number % 10**8:08d}"


def followup_token(device_key: bytes, record_id: str) -> str:
    return _mac(device_key, "hcp/v1 followup " + record_id)[:16].hex()


# --- days ---------------------------------------------------------------------------


def today(zone: str, now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(zone)).date()
