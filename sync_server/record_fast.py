"""Checking and verifying a keypad or kiosk record on the collector, cheaply.

`protocols.record.validate` walks every rule for every channel in Python;
with the signature check it was most of what deciding a batch cost
(hcp.bench_ingest_phases). Nearly every record a device sends has one
plain shape: a keypad or kiosk record, first attempt, its strings printable
text without control characters. `plainly_valid` recognises that shape
with a few checks in C (compiled patterns, set and type tests) and says
nothing about anything else: a record it does not recognise goes through
`validate` as before, which gives the exact reason. So it may only answer
True for a record `validate` accepts; `tests/test_record_fast.py` checks
that with hypothesis over records of every channel, values of every type
and text with every kind of character.

`verify` is `protocols.sign.verify` with `canonical_fast.dumps` and the
one-shot HMAC in C: the same bytes signed, the same answer.
"""

from __future__ import annotations

import binascii
import hmac
import re

from protocols import record
from sync_server import canonical_fast

# the fields a plain device record may carry; any other (client, follows,
# handled_at, the paper fields ...) sends the record to validate()
_CODES = ("case_no", "service_no", "item_code", "case_staff_id", "case_org_id", "window_id",
          "staff_id", "org_id")  # fmt: skip
_TEXTS = ((name, record.MAX_CODE) for name in _CODES)
_LIMITS = (*_TEXTS, ("content_version", 32), ("comment", record.MAX_TEXT), ("boot_id", 32))
_KEYS = frozenset(
    ("id", "stars", "channel", "rated_at", "clock", "origin", "attempt", "device_id", "seq",
     "sig", "uptime_ms", "tags", *(name for name, _ in _LIMITS))
)  # fmt: skip
# tuples, not sets: `in` a tuple compares, so a list where a name belongs is
# simply not recognised (a set would raise on it: a list cannot be hashed)
_DEVICE_CHANNELS = tuple(record.DEVICE_CHANNELS)
_CLOCKS = tuple(record.CLOCKS)
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII).fullmatch
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,16}", re.ASCII).fullmatch
_SIG = re.compile(r"[0-9a-f]{64}", re.ASCII).fullmatch
_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z", re.ASCII
).fullmatch
_LINE_BREAKS = str.maketrans("\t\n\r", "   ")
_DAYS: dict[str, bool] = {}  # YYYY-MM-DD -> record.valid_date's answer


def _plain_text(value, limit: int) -> bool:
    """Printable text of 1..limit characters: no control character, no DEL,
    nothing from the surrogates up (the test is in C: min, max, in)."""
    return (
        type(value) is str
        and 0 < len(value) <= limit
        and min(value) >= " "
        and max(value) < "\ud800"
        and "\x7f" not in value
    )


def _utc_time(value) -> bool:
    """record.valid_utc_time, with each day's answer kept."""
    if type(value) is not str:
        return False
    found = _TIME(value)
    if found is None:
        return False
    day = found.group(1)
    known = _DAYS.get(day)
    if known is None:
        known = record.valid_date(day)
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        _DAYS[day] = known
    return known


def plainly_valid(rec) -> bool:
    """True only for a record protocols.record.validate accepts: a keypad or
    kiosk record of the plain shape. False says only "not recognised"."""
    if type(rec) is not dict or not rec.keys() <= _KEYS:
        return False
    get = rec.get
    device_id, seq, stars = get("device_id"), get("seq"), get("stars")
    if (
        get("channel") not in _DEVICE_CHANNELS
        or get("origin") != "citizen"
        or get("clock") not in _CLOCKS
        or type(stars) is not int
        or not 1 <= stars <= 5
        or type(get("attempt")) is not int
        or get("attempt") != 1
        or type(device_id) is not str
        or _DEVICE_ID(device_id) is None
        or type(seq) is not int
        or not 1 <= seq <= record.MAX_SEQ
        or type(get("id")) is not str
        or get("id") != device_id + ":" + str(seq)
        or not _utc_time(get("rated_at"))
    ):
        return False
    uptime = get("uptime_ms")
    if uptime is not None and (type(uptime) is not int or not 0 <= uptime <= record.MAX_UPTIME_MS):
        return False
    for name, limit in _LIMITS:
        value = get(name)
        if value is None:
            continue
        if name == "comment" and type(value) is str and value and min(value) < " ":
            value = value.translate(_LINE_BREAKS)  # a comment may hold them
        if not _plain_text(value, limit):
            return False
    sig = get("sig")
    if sig is not None and (type(sig) is not str or _SIG(sig) is None):
        return False
    tags = get("tags")
    if tags is not None:
        if type(tags) is not list or len(tags) > record.MAX_TAGS:
            return False
        for tag in tags:
            if type(tag) is not str or _TAG(tag) is None:
                return False
        if len(set(tags)) != len(tags) or (tags and not get("content_version")):
            return False
    return True


def check(rec) -> bool:
    """protocols.record.validate(rec), skipped for a plainly valid record;
    returns whether it was one."""
    if plainly_valid(rec):
        return True
    record.validate(rec)
    return False


def verify(rec, key: bytes, plain: bool = False) -> bool:
    """protocols.sign.verify(rec, key, canonical_fast.dumps), the HMAC in C.
    `plain`: plainly_valid(rec) said True (its walk over the values is not
    done again)."""
    sig = rec.get("sig")
    if not isinstance(sig, str):
        return False
    unsigned = {k: v for k, v in rec.items() if k != "sig"}
    encode = canonical_fast.dumps_plain if plain else canonical_fast.dumps
    message = encode(unsigned)
    mac = binascii.hexlify(hmac.digest(key, message, "sha256")).decode()
    try:
        return hmac.compare_digest(sig, mac)
    except TypeError:  # non-ASCII text cannot be a hex signature
        return False
