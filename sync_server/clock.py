"""When was a rating made? Estimating the time of ratings made before the
device's clock was set.

A keypad that has not reached a time server yet marks its records
`clock: "unset"`; their `rated_at` means nothing. Each record carries the
device's `boot_id` and `uptime_ms`, and the device's live status messages
carry the same two, so the collector can pin a boot's uptime to its own clock:
a rating made at uptime u in a boot whose status said uptime U when it
arrived at collector time T was made at about T - (U - u). Until such a
reference exists, the record counts at the time it was received (an upper
bound), marked as such; a later status fills in the estimate. `rated_at` itself
is never changed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, select

from sync_server import db

TRUSTED_CLOCKS = ("ntp", "rtc")
DEVICE, ESTIMATED, RECEIVED = "device", "estimated", "received"


def _parse(text: str) -> dt.datetime:
    text = text.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S"
    return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)


def _format(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def estimate(ref_at: str, ref_uptime_ms: int, uptime_ms: int, received_at: str) -> str:
    """The collector time of uptime `uptime_ms`, never later than its arrival."""
    moment = _parse(ref_at) - dt.timedelta(milliseconds=ref_uptime_ms - uptime_ms)
    return _format(min(moment, _parse(received_at)))


def boot_refs(conn, device_id: str, records) -> dict[str, tuple[int, str]]:
    """boot_id -> (uptime_ms, at): the references for the boots of `records`
    whose clock was not set, in one query."""
    boots = sorted(
        {
            rec["boot_id"]
            for rec in records
            if rec["clock"] not in TRUSTED_CLOCKS and rec.get("boot_id")
        }
    )
    if not boots:
        return {}
    b = db.boot_clocks.c
    rows = conn.execute(
        select(b.boot_id, b.uptime_ms, b.at).where(b.device_id == device_id, b.boot_id.in_(boots))
    )
    return {boot_id: (uptime_ms, at) for boot_id, uptime_ms, at in rows}


def effective_time(rec: dict, received_at: str, refs: dict) -> tuple[str, str]:
    """(effective_at, time_source) for a record being stored; `refs` from boot_refs()."""
    if rec["clock"] in TRUSTED_CLOCKS:
        return rec["rated_at"], DEVICE
    ref = refs.get(rec.get("boot_id"))
    if ref is None or rec.get("uptime_ms") is None:
        return _format(_parse(received_at)), RECEIVED
    return estimate(ref[1], ref[0], rec["uptime_ms"], received_at), ESTIMATED


MAX_BOOTS = 64  # boot references kept per device: a device may invent boot ids at any rate


def _forget_old_boots(conn, device_id: str) -> None:
    b = db.boot_clocks.c
    stale = (
        conn.execute(
            select(b.boot_id)
            .where(b.device_id == device_id)
            .order_by(b.at.desc(), b.boot_id)
            .offset(MAX_BOOTS)
        )
        .scalars()
        .all()
    )
    if stale:
        conn.execute(db.boot_clocks.delete().where(b.device_id == device_id, b.boot_id.in_(stale)))


def record_boot_clock(conn, device_id: str, status: dict, received_at: str) -> int:
    """Keep a live status as its boot's reference; estimate that boot's waiting
    records. Returns how many records got an estimate."""
    boot_id, uptime_ms = status.get("boot_id"), status.get("uptime_ms")
    if (
        not isinstance(boot_id, str)
        or not isinstance(uptime_ms, int)
        or isinstance(uptime_ms, bool)
    ):
        return 0
    key = and_(db.boot_clocks.c.device_id == device_id, db.boot_clocks.c.boot_id == boot_id)
    if conn.execute(select(db.boot_clocks.c.boot_id).where(key)).first() is None:
        conn.execute(
            db.boot_clocks.insert().values(
                device_id=device_id, boot_id=boot_id, uptime_ms=uptime_ms, at=received_at
            )
        )
        _forget_old_boots(conn, device_id)
    else:
        conn.execute(db.boot_clocks.update().where(key).values(uptime_ms=uptime_ms, at=received_at))
    ev = db.evaluations.c
    waiting = conn.execute(
        select(ev.id, ev.uptime_ms, ev.received_at).where(
            ev.device_id == device_id, ev.boot_id == boot_id, ev.time_source == RECEIVED,
            ev.uptime_ms.is_not(None),
        )
    ).all()  # fmt: skip
    for rec_id, rec_uptime, rec_received in waiting:
        conn.execute(
            db.evaluations.update()
            .where(ev.id == rec_id)
            .values(
                effective_at=estimate(received_at, uptime_ms, rec_uptime, rec_received),
                time_source=ESTIMATED,
            )
        )
    return len(waiting)
