"""Completeness: what each device reported against what the store holds.

Two views, both computed here and nowhere else:

- `devices()`: per device, the stored records, the highest seq, the seqs
  missing below it, and the device's cumulative per-level counts compared
  with the stored ones up to the device's own `last_seq`;
- `device_days()`: one device day by day (DESIGN §4.4). Sequence numbers are
  per device, so a missing seq has no day of its own; a gap inside one day's
  range of seqs is that day's (`missing`), and a gap between the last seq of
  one day and the first of the next is shown on the later day as
  `missing_before`. The device's own counter (`last_seq` in its status) says
  whether anything is still on its way after the last stored seq.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from sqlalchemy import distinct, func, select

from protocols.record import MAX_SEQ, text_problem
from sync_server import db

MAX_DAYS = 92
MAX_STATUS_DEPTH = 8  # a status is flat but for its counts; deeper is not a status


class UnknownDevice(LookupError):
    pass


def _depth(value) -> int:
    """How deeply a parsed JSON value nests (iterative: no recursion limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _no_constant(name: str):
    raise ValueError("not JSON: " + name)


def read_status(text) -> dict | None:
    """A device's stored status as a dict, or None when there is none or it
    cannot be shown as it is.

    The devices table holds whatever a device last said (or whatever else was
    written there), so nothing about it is trusted: text that is not JSON, a
    JSON value that is not an object, NaN or infinite numbers, integers too
    long to parse and nesting deeper than MAX_STATUS_DEPTH all read as None,
    and the result is always something the API and templates can serialize.
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        status = json.loads(text, parse_constant=_no_constant)
        if not isinstance(status, dict) or _depth(status) > MAX_STATUS_DEPTH:
            return None
        json.dumps(status, allow_nan=False)  # 1e400 parses as inf: refuse it too
    except Exception:  # noqa: BLE001 - RecursionError, ValueError ...: not showable
        return None
    return status


def _seq(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def reported_last_seq(status: dict | None) -> int | None:
    """The device's `last_seq` when it is a seq number (0..MAX_SEQ), else None."""
    last_seq = status.get("last_seq") if status else None
    return last_seq if _seq(last_seq) else None


def _reported_counts(status: dict | None) -> dict[str, int] | None:
    reported = status.get("counts") if status else None
    if not isinstance(reported, dict):
        return None
    counts = {str(s): reported.get(str(s), 0) for s in range(1, 6)}
    return counts if all(_seq(count) for count in counts.values()) else None


def devices(conn, statuses: dict[str, dict | None]) -> dict[str, dict]:
    """Completeness of each device in `statuses` (device_id -> its read status).

    `missing` is the number of seq numbers below the highest stored one that
    are not stored (lost, still on the device, or quarantined). The device's
    cumulative counts cover its records up to its last_seq; they are compared
    with what is stored up to that same seq, so records still travelling
    (newer than the status) do not look like a mismatch.
    """
    ev = db.evaluations.c
    totals = {
        row.device_id: row
        for row in conn.execute(
            select(
                ev.device_id,
                func.count().label("stored"),
                func.max(ev.seq).label("max_seq"),
                func.count(distinct(ev.seq)).label("distinct_seqs"),
            )
            .where(ev.device_id.is_not(None))
            .group_by(ev.device_id)
        )
    }
    upto = {
        device_id: last_seq
        for device_id, status in statuses.items()
        if (last_seq := reported_last_seq(status)) is not None
    }
    # seqs known lost with a board (fleet_seq_gaps, noted at re-provisioning): not
    # missing for an unknown reason but lost with their cause, shown apart
    from sync_server.schema_fleet import fleet_seq_gaps

    gaps: dict[str, list[tuple[int, int]]] = {}
    g = fleet_seq_gaps.c
    for gap in conn.execute(select(g.device_id, g.first_seq, g.last_seq)):
        gaps.setdefault(gap.device_id, []).append((gap.first_seq, gap.last_seq))
    per_stars: dict[str, dict[str, int]] = {}
    for device_id, last_seq in upto.items():
        for stars, count in conn.execute(
            select(ev.stars, func.count())
            .where(ev.device_id == device_id, ev.seq <= last_seq)
            .group_by(ev.stars)
        ):
            per_stars.setdefault(device_id, {})[str(stars)] = count
    result = {}
    for device_id, status in statuses.items():
        total = totals.get(device_id)
        max_seq = total.max_seq if total else None
        counts_stored = {str(s): per_stars.get(device_id, {}).get(str(s), 0) for s in range(1, 6)}
        counts_reported = _reported_counts(status)
        missing = (max_seq - total.distinct_seqs) if total and max_seq else 0
        lost = sum(
            max(0, min(last, max_seq or 0) - first + 1) for first, last in gaps.get(device_id, ())
        )
        result[device_id] = {
            "stored": total.stored if total else 0,
            "max_seq": max_seq,
            "missing": missing - lost,  # below the highest stored, for no known reason
            "lost_with_board": lost,  # below it too, known lost with a wiped or swapped board
            "counts_reported": counts_reported,
            "counts_stored": counts_stored,
            "counts_upto_seq": upto.get(device_id),
            "counts_match": (
                counts_reported == counts_stored if counts_reported is not None else None
            ),
        }
    return result


def _local_day(utc_text, zone: ZoneInfo) -> str:
    """The local day of a stored UTC time; its UTC date when it has no local
    one (9999-12-31 late in the day is past the calendar's end east of UTC)."""
    try:
        moment = dt.datetime.strptime(utc_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        return moment.astimezone(zone).strftime("%Y-%m-%d")
    except (TypeError, ValueError, OverflowError):
        return str(utc_text)[:10]


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
    if not isinstance(device_id, str) or len(device_id) > 64 or text_problem(device_id):
        raise UnknownDevice(device_id)  # no database is asked about NUL or a lone surrogate
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
    return {
        "device_id": device_id,
        "timezone": timezone,
        "last_seq_reported": reported_last_seq(read_status(device.status)),
        "days": list(reversed(result)),
    }
