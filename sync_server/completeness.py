"""Completeness of one device, day by day (DESIGN §4.4).

Sequence numbers are per device, so a missing seq has no day of its own; a
gap inside one day's range of seqs is that day's (`missing`), and a gap
between the last seq of one day and the first of the next is shown on the
later day as `missing_before`. The device's own counter (`last_seq` in its
status) says whether anything is still on its way after the last stored seq.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from sqlalchemy import select

from sync_server import db

MAX_DAYS = 92


class UnknownDevice(LookupError):
    pass


def _local_day(utc_text: str, zone: ZoneInfo) -> str:
    moment = dt.datetime.strptime(utc_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d")


def device_days(engine, device_id: str, days: int, timezone: str, today: dt.date | None = None):
    """{device_id, timezone, last_seq_reported, days: [...]}, newest day first."""
    zone = ZoneInfo(timezone)
    today = today or dt.datetime.now(zone).date()
    first_day = today - dt.timedelta(days=days - 1)
    start_utc = (
        dt.datetime.combine(first_day, dt.time(), tzinfo=zone)
        .astimezone(dt.UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    ev = db.evaluations.c
    with engine.connect() as conn:
        device = conn.execute(
            select(db.devices.c.device_id, db.devices.c.status).where(
                db.devices.c.device_id == device_id
            )
        ).first()
        if device is None:
            raise UnknownDevice(device_id)
        rows = conn.execute(
            select(ev.seq, ev.effective_at)
            .where(ev.device_id == device_id, ev.effective_at >= start_utc, ev.seq.is_not(None))
            .order_by(ev.seq)
        ).all()
    per_day: dict[str, list[int]] = {}
    for seq, effective_at in rows:
        per_day.setdefault(_local_day(effective_at, zone), []).append(seq)
    result = []
    previous_last = None
    for day in sorted(per_day):
        seqs = sorted(set(per_day[day]))
        first, last = seqs[0], seqs[-1]
        gap_before = 0
        if previous_last is not None and first > previous_last + 1:
            gap_before = first - previous_last - 1
        result.append(
            {
                "day": day,
                "stored": len(seqs),
                "first_seq": first,
                "last_seq": last,
                "missing": (last - first + 1) - len(seqs),
                "missing_before": gap_before,
            }
        )
        previous_last = last
    status = json.loads(device.status) if device.status else {}
    return {
        "device_id": device_id,
        "timezone": timezone,
        "last_seq_reported": status.get("last_seq"),
        "days": list(reversed(result)),
    }
