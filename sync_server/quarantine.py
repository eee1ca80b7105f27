"""The quarantine: what the collector could not accept, kept aside with the reason.

Bounded, because a provisioned device may send anything at any rate: each
payload is redacted (no contact ever reaches this table) and cut to a size;
a device keeps at most `per_device_hour` rows an hour and the table at most
`total` rows. What a bound turns away is not kept but counted per device and
hour in `quarantine_dropped`, and the caller learns which rows were kept, so
a record whose row was turned away is not acknowledged: its device keeps it
and sends it again later, and nothing is lost.

Repeats add no row: a record kept aside for a reason is kept once (by device,
record id and reason), a whole message once (by device, payload hash and
reason).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import and_, func, select, tuple_

from sync_server import db
from sync_server.redact import as_text, redact

PAYLOAD_MAX = 4096  # characters of redacted payload kept
PER_DEVICE_HOUR = 1000
TOTAL = 100_000
TEXT_MAX = 500  # reason and topic

# what keep() did with each row
NEW, KNOWN, DROPPED = "new", "known", "dropped"


@dataclass(frozen=True)
class Bounds:
    payload_max: int = PAYLOAD_MAX
    per_device_hour: int = PER_DEVICE_HOUR
    total: int = TOTAL


def clean(text, limit: int) -> str:
    """Text any database stores: no NUL, no lone surrogate, at most `limit` characters."""
    text = as_text(text).replace("\x00", "\\u0000")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def entry(topic, device_id, record_id, reason, payload, received_at) -> dict:
    """One quarantine row, redacted and cut to its bounds (Bounds().payload_max)."""
    raw = payload if isinstance(payload, (bytes, bytearray)) else as_text(payload).encode()
    return {
        "received_at": received_at,
        "topic": clean(topic, TEXT_MAX),
        "device_id": clean(device_id, 64) if device_id is not None else None,
        "record_id": clean(record_id, 100) if record_id is not None else None,
        "reason": clean(reason, TEXT_MAX),
        "payload": clean(redact(payload), 1 << 30),
        "payload_bytes": len(raw),
        "payload_sha256": hashlib.sha256(bytes(raw)).hexdigest(),
    }


def _known(conn, rows) -> set:
    """Keys of the rows already kept aside (repeats of a record or message)."""
    by_record = [(r["device_id"], r["record_id"]) for r in rows if r["record_id"] is not None]
    by_payload = [(r["device_id"], r["payload_sha256"]) for r in rows if r["record_id"] is None]
    q = db.quarantine.c
    known = set()
    if by_record:
        ids = sorted({rec_id for _d, rec_id in by_record})
        devices = sorted({d for d, _i in by_record if d is not None})
        query = select(q.device_id, q.record_id, q.reason).where(q.record_id.in_(ids))
        if devices:
            query = query.where(q.device_id.in_(devices))
        known |= {("r", d, i, reason) for d, i, reason in conn.execute(query)}
    if by_payload:
        hashes = sorted({h for _d, h in by_payload})
        query = select(q.device_id, q.payload_sha256, q.reason).where(
            q.payload_sha256.in_(hashes), q.record_id.is_(None)
        )
        known |= {("p", d, h, reason) for d, h, reason in conn.execute(query)}
    return known


def _key(row) -> tuple:
    if row["record_id"] is not None:
        return ("r", row["device_id"], row["record_id"], row["reason"])
    return ("p", row["device_id"], row["payload_sha256"], row["reason"])


def keep(conn, rows: list[dict], bounds: Bounds = Bounds()) -> list[str]:
    """Insert `rows` (made by entry()) within the bounds; for each row, NEW
    (inserted), KNOWN (kept aside before) or DROPPED (turned away by a bound,
    counted in quarantine_dropped)."""
    if not rows:
        return []
    for row in rows:
        if len(row["payload"]) > bounds.payload_max:
            row["payload"] = row["payload"][: bounds.payload_max - 1] + "…"
    known = _known(conn, rows)
    q = db.quarantine.c
    total = conn.execute(select(func.count()).select_from(db.quarantine)).scalar()
    hour = rows[0]["received_at"][:13]
    used: dict = {}
    kept, new, dropped = [], [], {}
    for row in rows:
        key = _key(row)
        if key in known:
            kept.append(KNOWN)
            continue
        device = row["device_id"] or ""
        if device not in used:
            used[device] = conn.execute(
                select(func.count())
                .select_from(db.quarantine)
                .where(
                    and_(
                        q.device_id == device if device else q.device_id.is_(None),
                        q.received_at >= hour,
                    )
                )
            ).scalar()
        if used[device] >= bounds.per_device_hour or total >= bounds.total:
            dropped[device] = dropped.get(device, 0) + 1
            kept.append(DROPPED)
            continue
        used[device] += 1
        total += 1
        known.add(key)
        new.append(row)
        kept.append(NEW)
    if new:
        conn.execute(db.quarantine.insert(), new)
    for device, count in dropped.items():
        _count_dropped(conn, device, hour, count)
    return kept


def _count_dropped(conn, device: str, hour: str, count: int) -> None:
    d = db.quarantine_dropped.c
    key = tuple_(d.device_id, d.hour) == (device, hour)
    updated = conn.execute(
        db.quarantine_dropped.update().where(key).values(dropped=d.dropped + count)
    ).rowcount
    if not updated:
        conn.execute(
            db.quarantine_dropped.insert().values(device_id=device, hour=hour, dropped=count)
        )


def dropped(engine, device_id: str | None = None) -> int:
    """How many quarantine rows the bounds turned away (for one device, or all)."""
    d = db.quarantine_dropped.c
    query = select(func.coalesce(func.sum(d.dropped), 0))
    if device_id is not None:
        query = query.where(d.device_id == device_id)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar())
