"""What the API and the admin pages read from the store, in one place.

The API (sync_server/api.py) and the pages (sync_server/web.py) both call
these functions, so a page and the API never disagree. Filters arrive already
checked (`api.parse_filters`).

Evaluations never leave through here with `sig`, and contacts are in their
own table (`db.contacts`), which nothing here reads (confidential, §7);
quarantined payloads are shown through `sync_server.redact.redact`.

Nothing a device or anyone else put in the database can make these fail:
statuses are read by `completeness.read_status`, odd levels and tags are shown
as they are, and the pages' filters format odd times as the text they are.
"""

from __future__ import annotations

import json

from sqlalchemy import and_, func, select

from protocols.levels import BAD_STARS, is_bad, is_stars, level_name
from sync_server import completeness, db, org, quarantine
from sync_server.redact import redact
from sync_server.schema_citizen import rater_phones

TEXT_FILTERS = ("device_id", "window_id", "staff_id", "org_id", "channel", "case_no")
HIDDEN_FIELDS = ("contact", "sig")
SECRET_STATUS_WORDS = ("key", "secret", "password", "token")
# per-level counts, in a device's status and in its completeness: admins only
COUNT_FIELDS = ("counts", "counts_reported", "counts_stored")


def _conditions(filters: dict) -> list:
    ev = db.evaluations.c
    conditions = [ev[name] == filters[name] for name in TEXT_FILTERS if name in filters]
    if "stars" in filters:
        conditions.append(ev.stars.in_(filters["stars"]))
    if filters.get("bad"):
        conditions.append(ev.stars.in_(BAD_STARS))
    if "since" in filters:
        conditions.append(ev.effective_at >= filters["since"])
    if "until" in filters:
        conditions.append(ev.effective_at <= filters["until"])
    if filters.get("units") is not None:  # a unit-scoped user: their subtree only
        conditions.append(org.in_units(filters["units"]))
    return conditions


def _tags(text) -> list:
    """The stored JSON list of tag codes; anything else shown as the text it is."""
    if not text:
        return []
    try:
        tags = json.loads(text)
    except Exception:  # noqa: BLE001 - not JSON, too deep ...
        return [str(text)]
    if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
        return tags
    return [str(text)]


def public_evaluation(row) -> dict:
    """An evaluation as the API and pages show it: no contact, no signature.

    `level` and `bad` are None for a level outside 1..5 (no valid record has
    one, but a page must not break on a row that does)."""
    item = {k: v for k, v in row._mapping.items() if k not in HIDDEN_FIELDS}
    item["tags"] = _tags(item["tags"])
    item["excluded"] = bool(item["excluded"])
    stars = item["stars"]
    item["level"] = level_name(stars) if is_stars(stars) else None
    item["bad"] = is_bad(stars) if is_stars(stars) else None
    return item


def list_evaluations(engine, filters: dict, page: int = 1, per_page: int = 50) -> dict:
    where = and_(True, *_conditions(filters))
    shown = [c for c in db.evaluations.columns if c.name not in HIDDEN_FIELDS]
    query = (
        select(*shown)
        .where(where)
        .order_by(db.evaluations.c.effective_at.desc(), db.evaluations.c.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(db.evaluations).where(where)).scalar()
        items = [public_evaluation(row) for row in conn.execute(query)]
    return {"items": items, "page": page, "per_page": per_page, "total": total}


def get_evaluation(engine, record_id: str, units=None) -> dict | None:
    """One evaluation as the pages show it, with the unit it belongs to (in
    its time) and whether a contact was left; None when unknown or outside
    `units` (a scoped user learns nothing of other units' ratings)."""
    ev = db.evaluations.c
    shown = [c for c in db.evaluations.columns if c.name not in HIDDEN_FIELDS]
    conditions = [ev.id == record_id]
    if units is not None:
        conditions.append(org.in_units(units))
    with engine.connect() as conn:
        row = conn.execute(select(*shown).where(*conditions)).first()
        if row is None:
            return None
        item = public_evaluation(row)
        item.update(org.rating_unit(conn, record_id))
        item["has_contact"] = any(
            conn.execute(
                select(func.count()).select_from(table).where(table.c.record_id == record_id)
            ).scalar()
            > 0
            for table in (db.contacts, rater_phones)  # a device's, or a sealed citizen's
        )
    return item


def good_rate_stars() -> tuple[int, ...]:
    """The levels 好评率 counts over valid ratings (`HCP_GOOD_RATE_STARS`)."""
    from flask import current_app

    stars = tuple(current_app.config["HCP_GOOD_RATE_STARS"])
    if not stars or not set(stars) <= {1, 2, 3, 4, 5}:
        raise RuntimeError("HCP_GOOD_RATE_STARS: must be levels among 1..5")
    return stars


def summarize(engine, filters: dict, rate_stars=(5, 4, 3)) -> dict:
    """Counts per level, 好评 (3..5), 差评 (1..2) and 好评率 (ratings at
    `rate_stars` / valid ratings); excluded rows apart, and repeats of a
    service event rated already (stored, never counted) apart too."""
    ev = db.evaluations.c
    repeat = ev.repeat_of.is_not(None)
    query = (
        select(ev.stars, ev.excluded, repeat, func.count())
        .where(and_(True, *_conditions(filters)))
        .group_by(ev.stars, ev.excluded, repeat)
    )
    by_stars = {str(stars): 0 for stars in range(1, 6)}
    excluded = repeats = 0
    with engine.connect() as conn:
        for stars, is_excluded, is_repeat, count in conn.execute(query):
            if is_excluded:
                excluded += count
            elif is_repeat:
                repeats += count
            elif str(stars) in by_stars:  # a level outside 1..5 is no rating
                by_stars[str(stars)] += count
    total = sum(by_stars.values())
    bad = sum(by_stars[str(stars)] for stars in BAD_STARS)
    good = total - bad
    return {
        "total": total,
        "by_stars": by_stars,
        "good": good,
        "bad": bad,
        "good_rate": (
            round(sum(by_stars[str(s)] for s in rate_stars) / total, 4) if total else None
        ),
        "excluded": excluded,
        "repeats": repeats,
    }


def list_quarantine(engine, page: int, per_page: int, device_id: str | None = None) -> dict:
    q = db.quarantine.c
    where = and_(True, q.device_id == device_id) if device_id else and_(True)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(db.quarantine).where(where)).scalar()
        rows = conn.execute(
            select(db.quarantine)
            .where(where)
            .order_by(q.qid.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
    items = [
        {
            "qid": row.qid,
            "received_at": row.received_at,
            "topic": row.topic,
            "device_id": row.device_id,
            "record_id": row.record_id,
            "reason": row.reason,
            "payload": redact(row.payload),
            "payload_bytes": row.payload_bytes,
            "payload_sha256": row.payload_sha256,
        }
        for row in rows
    ]
    return {
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        # rows the quarantine's bounds turned away (their records were not acked)
        "dropped": quarantine.dropped(engine, device_id),
    }


def _public_status(status: dict | None, include_counts: bool) -> dict | None:
    if status is None:
        return None
    return {
        k: v
        for k, v in status.items()
        if not any(w in k.lower() for w in SECRET_STATUS_WORDS)
        and (include_counts or k not in COUNT_FIELDS)
    }


def device_report(engine, include_counts: bool = False) -> list[dict]:
    """Every device with its completeness (sync_server/completeness.py).

    A keypad's per-level counts change by exactly one level after each case,
    so whoever watches them learns each citizen's choice (§7): only with
    `include_counts` (admins) are they shown; everyone else gets the verdict
    `counts_match` and the seq completeness.
    """
    with engine.connect() as conn:
        devices = conn.execute(select(db.devices).order_by(db.devices.c.device_id)).all()
        statuses = {device.device_id: completeness.read_status(device.status) for device in devices}
        checks = completeness.devices(conn, statuses)
    report = []
    for device in devices:
        check = checks[device.device_id]
        if not include_counts:
            check = {k: v for k, v in check.items() if k not in COUNT_FIELDS}
        report.append(
            {
                "device_id": device.device_id,
                "kind": device.kind,
                "name": device.name,
                "org_id": device.org_id,
                "window_id": device.window_id,
                "created_at": device.created_at,
                "last_seen": device.last_seen,
                "status": _public_status(statuses[device.device_id], include_counts),
                **check,
            }
        )
    return report
