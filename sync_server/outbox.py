"""Reporting upward: the outbox to the provincial platform (issue 13).

A feature module (sync_server/features.py). Every accepted service event
(`event_registered`, called by the channels feature) and every stored rating
(`after_store`) gets one `outbox` row in the transaction that stores it: one
bulk insert per batch, nothing else. The sender (sync_server/outbox_sender.py)
pushes the rows in their order, builds each payload once
(sync_server/province_map.py) and keeps what the province answered.

A repeat rating (`repeat_of` set: a later rating of an event rated already)
gets a row in state `skipped` with its reason: the province takes one first
rating per service event and refuses a repeat (一事一评, DOMAIN §3), so it is
kept here, visibly, and never sent. An appended rating (attempt 2) is sent.

A 差评 stored with `reason_owed` (the rater walked away, or answered an SMS
with a level only) gets a row in state `held`: the province takes no 差评
without a reason. `release_held` (run by the sender each round) sends it
on once the reason is recorded, by the call-back's verify step
(`cases.reason`) or by the rater's SMS follow-up (`sms_reasons`); the
mapping puts that reason in the payload. A hold older than
HCP_OUTBOX_REASON_WAIT_DAYS becomes `overdue`: still waiting, shown on the
page and in the API, sent the moment the reason comes; never dropped.

The rest of this module is what people see and do: the backlog and the lag
(`figures`), the dead letters, retrying one after a fix or marking it
handled, and re-sending a period on demand, each change audited.
"""

from __future__ import annotations

import datetime as dt
import json

from flask_babel import gettext as _
from sqlalchemy import and_, func, select, update

from sync_server import audit, db, pg_array
from sync_server.schema_outbox import (
    ACKED,
    DEAD,
    HANDLED,
    HELD,
    NOT_REPORTED,
    OVERDUE,
    PENDING,
    STATES,
    UNMAPPED,
    outbox,
    outbox_sender,
)

REPEAT_REASON = "repeat of {}: the province takes one first rating per service event"
HELD_REASON = "held: reason owed (the rater gave none; the call-back records it)"
OVERDUE_REASON = (
    "reason owed for more than {days} day(s): the province takes no 差评 without a reason;"
    " record it at the call-back (verify step)"
)
RELEASE_BATCH = 500  # held rows looked at per sender round
LAG_SAMPLE = 2000  # the latest acknowledged rows the p50/p95 lag is taken over


def init_app(app) -> None:
    """The outbox's page and API, and the gaming evidence pages (one feature
    of issue 13). Starts no thread: outbox_sender.start does."""
    from sync_server import gaming_pages, outbox_pages

    outbox_pages.init_app(app)
    gaming_pages.init_app(app)


def _insert(conn):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(outbox).on_conflict_do_nothing(index_elements=["kind", "ref"])


def _row(kind, ref, case_no, service_no, stored_at, state=PENDING, reason=None) -> dict:
    return {
        "kind": kind,
        "ref": ref,
        "case_no": case_no,
        "service_no": service_no,
        "stored_at": stored_at,
        "state": state,
        "attempts": 0,
        "resends": 0,
        "reason": reason,
    }


# a rating's outbox row, in the order the statements below send its values
RATING_COLUMNS = ("kind", "ref", "case_no", "service_no", "stored_at", "state", "attempts",
                  "resends", "reason")  # fmt: skip
_RATING_TYPES = ("text", "text", "text", "text", "text", "text", "integer", "integer", "text")
_RATING_CONFLICT = "ON CONFLICT (kind, ref) DO NOTHING"
# PostgreSQL: a batch's rows in one statement, one array per column
_RATINGS_POSTGRESQL = (
    f"INSERT INTO outbox ({', '.join(RATING_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{t}[]' for t in _RATING_TYPES)}) {_RATING_CONFLICT}"
)
# SQLite: the driver's executemany of one statement
_RATINGS_SQLITE = (
    f"INSERT INTO outbox ({', '.join(RATING_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(RATING_COLUMNS))}) {_RATING_CONFLICT}"
)


def after_store(conn, rows: list[dict]) -> None:
    """Ratings stored in this transaction: one outbox row each, one statement,
    its values straight to the driver (SQLAlchemy's building of each row's
    parameters cost more than the insert: hcp.bench_ingest_phases)."""
    now = db.utc_now()
    entries = []
    for row in rows:
        repeat = row.get("repeat_of")
        state, reason = PENDING, None
        if repeat:
            state, reason = NOT_REPORTED, REPEAT_REASON.format(repeat)
        elif row.get("reason_owed"):
            state, reason = HELD, HELD_REASON
        entries.append(
            ("rating", row["id"], row.get("case_no"), row.get("service_no"),
             row.get("received_at") or now, state, 0, 0, reason)
        )  # fmt: skip
    if not entries:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            _RATINGS_POSTGRESQL,
            tuple(
                pg_array.param(list(column), kind)
                for column, kind in zip(zip(*entries, strict=True), _RATING_TYPES, strict=True)
            ),
        )
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_RATINGS_SQLITE, entries)
    else:
        conn.execute(_insert(conn), [dict(zip(RATING_COLUMNS, e, strict=True)) for e in entries])


def event_ref(case_no: str, service_no: str) -> str:
    return f"{case_no}/{service_no}"


def event_registered(conn, event: dict) -> None:
    """A new service event was stored in this transaction (not yet reported)."""
    conn.execute(
        _insert(conn),
        [
            _row(
                "event",
                event_ref(event["case_no"], event["service_no"]),
                event["case_no"],
                event["service_no"],
                event.get("registered_at") or db.utc_now(),
            )
        ],
    )


# --- a 差评 whose reason is owed -----------------------------------------------------


def reasons_for(conn, record_ids) -> dict[str, str]:
    """The reason recorded since for each rating of `record_ids` that has one:
    the rater's own SMS follow-up first, else the call-back's (the case's
    verify step). The rating itself never changes."""
    from sync_server.schema_cases import cases
    from sync_server.schema_citizen import sms_reasons

    ids = sorted(set(record_ids))
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        c = cases.c
        for record_id, text in conn.execute(
            select(c.record_id, c.reason).where(c.record_id.in_(part), c.reason.is_not(None))
        ):
            if text and text.strip():
                found[record_id] = text.strip()
        r = sms_reasons.c
        for record_id, text in conn.execute(
            select(r.record_id, r.text).where(r.record_id.in_(part))
        ):
            if text and text.strip():
                found[record_id] = text.strip()
    return found


def release_held(conn, wait_days: float, now: dt.datetime | None = None) -> dict:
    """Held ratings whose reason is now recorded go back to the queue (their
    payload built afresh, with the reason); holds older than `wait_days`
    become `overdue` (still released when the reason comes). Returns the
    counts {"released", "overdue"}."""
    now = now or dt.datetime.now(dt.UTC)
    o = outbox.c
    rows = conn.execute(
        select(o.id, o.ref, o.state, o.stored_at)
        .where(o.state.in_((HELD, OVERDUE)), o.kind == "rating")
        .order_by(o.id)
        .limit(RELEASE_BATCH)
    ).all()
    if not rows:
        return {"released": 0, "overdue": 0}
    reasons = reasons_for(conn, [r.ref for r in rows])
    ready = [r.id for r in rows if r.ref in reasons]
    cutoff = (now - dt.timedelta(days=float(wait_days))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    late = [r.id for r in rows if r.state == HELD and r.ref not in reasons and r.stored_at < cutoff]
    if ready:
        conn.execute(
            update(outbox)
            .where(o.id.in_(ready))
            .values(state=PENDING, reason=None, payload=None, next_try_at=None)
        )
    if late:
        days = f"{float(wait_days):g}"
        conn.execute(
            update(outbox)
            .where(o.id.in_(late))
            .values(state=OVERDUE, reason=OVERDUE_REASON.format(days=days))
        )
    return {"released": len(ready), "overdue": len(late)}


def held(conn, limit: int = 100) -> list[dict]:
    """Ratings waiting for their reason (held, then overdue), oldest first."""
    o = outbox.c
    rows = conn.execute(
        select(o.id, o.kind, o.ref, o.case_no, o.stored_at, o.state, o.reason)
        .where(o.state.in_((HELD, OVERDUE)))
        .order_by(o.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows]


# --- figures ---------------------------------------------------------------------


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (share 0..1) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def figures(conn, now: dt.datetime | None = None) -> dict:
    """Backlog by state, the oldest unsent row, store→acknowledged p50/p95
    over the latest acknowledged rows, and what the sender last heard."""
    now = now or dt.datetime.now(dt.UTC)
    o = outbox.c
    counts = dict(conn.execute(select(o.state, func.count()).group_by(o.state)).all())
    oldest = conn.execute(
        select(o.stored_at).where(o.state == PENDING).order_by(o.id).limit(1)
    ).scalar()
    acked = conn.execute(
        select(o.stored_at, o.acked_at)
        .where(o.acked_at.is_not(None))
        .order_by(o.acked_at.desc())
        .limit(LAG_SAMPLE)
    ).all()
    lags = [(_parse(a) - _parse(s)).total_seconds() for s, a in acked]
    late = conn.execute(
        select(func.count()).select_from(outbox).where(o.flags.like('%"late"%'))
    ).scalar()
    sender = conn.execute(select(outbox_sender).order_by(outbox_sender.c.name)).first()
    return {
        "backlog": {state: counts.get(state, 0) for state in STATES},
        "unsent": counts.get(PENDING, 0),
        "held": counts.get(HELD, 0) + counts.get(OVERDUE, 0),
        "held_overdue": counts.get(OVERDUE, 0),
        "oldest_unsent_at": oldest,
        "oldest_unsent_age_s": round((now - _parse(oldest)).total_seconds(), 3) if oldest else None,
        "acked_sample": len(lags),
        "p50_ack_s": _round(percentile(lags, 0.5)),
        "p95_ack_s": _round(percentile(lags, 0.95)),
        "flagged_late": late,
        "sender": None
        if sender is None
        else {
            "state": sender.state,
            "detail": sender.detail,
            "at": sender.at,
            "last_ack_at": sender.last_ack_at,
        },
    }


def _round(value):
    return None if value is None else round(value, 3)


def letters(conn, limit: int = 100) -> list[dict]:
    """Dead letters and unmapped rows, oldest first, with their reasons."""
    o = outbox.c
    rows = conn.execute(
        select(o.id, o.kind, o.ref, o.stored_at, o.state, o.reason, o.attempts, o.last_error)
        .where(o.state.in_((DEAD, UNMAPPED)))
        .order_by(o.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows]


def recent(conn, limit: int = 20) -> list[dict]:
    o = outbox.c
    rows = conn.execute(
        select(o.id, o.kind, o.ref, o.stored_at, o.state, o.acked_at, o.province_ref, o.flags)
        .order_by(o.id.desc())
        .limit(limit)
    )
    return [{**row._mapping, "flags": json.loads(row.flags) if row.flags else []} for row in rows]


# --- what an admin does ----------------------------------------------------------


class OutboxError(ValueError):
    """An action that cannot be taken; str() says why."""


def _letter(conn, item: str, states=(DEAD, UNMAPPED)):
    """The dead letter named "event:<case>/<service>" or "rating:<id>"."""
    item = (item or "")[:300]
    kind, _sep, ref = item.partition(":")
    row = None
    if kind in ("event", "rating") and ref:
        row = conn.execute(select(outbox).where(outbox.c.kind == kind, outbox.c.ref == ref)).first()
    if row is None:
        raise OutboxError(_("item: no outbox row %(item)s", item=item))
    if row.state not in states:
        raise OutboxError(_("item: %(item)s is not a dead letter", item=item))
    return row


def retry(engine, item: str) -> None:
    """A dead letter goes back to the queue; its payload is built again from
    what is stored now (after the fix), the times being the stored ones."""
    with engine.begin() as conn:
        row = _letter(conn, item)
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(state=PENDING, payload=None, next_try_at=None)
        )
        audit.record(
            conn,
            "outbox.retry",
            f"{row.kind}:{row.ref}",
            {"state": row.state, "reason": row.reason},
        )


def mark_handled(engine, item: str, note: str, username: str) -> None:
    note = (note or "").strip()
    if not note or len(note) > 500:
        raise OutboxError(_("note: say what was done (1 to 500 characters)"))
    with engine.begin() as conn:
        # a rating whose reason never came may be settled by hand too (audited)
        row = _letter(conn, item, (DEAD, UNMAPPED, OVERDUE))
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(state=HANDLED, handled_by=username, handled_at=db.utc_now())
        )
        audit.record(
            conn,
            "outbox.handled",
            f"{row.kind}:{row.ref}",
            {"state": row.state, "reason": row.reason},
            {"state": HANDLED, "note": note},
        )


def resend(engine, start: str, end: str) -> int:
    """Queue again every acknowledged row stored from `start` to `end` (UTC
    texts, end exclusive). The province answers an unchanged item it has as
    a duplicate, so nothing is counted twice there. Returns how many."""
    if not start or not end or start >= end:
        raise OutboxError(_("period: the start must come before the end"))
    o = outbox.c
    period = and_(o.state == ACKED, o.stored_at >= start, o.stored_at < end)
    with engine.begin() as conn:
        count = conn.execute(
            update(outbox).where(period).values(state=PENDING, resends=o.resends + 1)
        ).rowcount
        audit.record(
            conn, "outbox.resend", "outbox", None, {"from": start, "to": end, "rows": count}
        )
    return count
