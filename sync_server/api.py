"""The read-only JSON API under /api/v1 (login required).

The query functions here (`parse_filters`, `list_evaluations`, `summarize`,
`list_quarantine`, `device_report`) are also what the admin pages render, so
a page and the API never disagree. A bad query parameter is a 400 with
``{"error": "<param>: <problem>"}``.

Evaluations never leave through here with `contact` (confidential, §7) or
`sig`; times are UTC as stored (`since`/`until` dates are UTC days).
"""

from __future__ import annotations

import datetime as dt
import json
import re

from flask import Blueprint, current_app, jsonify, request
from flask_login import login_required
from sqlalchemy import and_, distinct, func, select

from protocols.levels import CHANNELS, is_bad, level_name
from protocols.record import valid_utc_time
from sync_server import completeness, db, get_engine
from sync_server.auth import admin_required

bp = Blueprint("api", __name__, url_prefix="/api/v1")

TEXT_FILTERS = ("device_id", "window_id", "staff_id", "org_id", "channel", "case_no")
FILTERS = TEXT_FILTERS + ("stars", "bad", "since", "until")
PAGING = ("page", "per_page")
IGNORED = ("lang",)  # the language switch works on every URL
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_FILTER_TEXT = 64
HIDDEN_FIELDS = ("contact", "sig")
SECRET_STATUS_WORDS = ("key", "secret", "password", "token")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")


class ParamError(ValueError):
    """A query parameter that cannot be used; str() is the API's error text."""

    def __init__(self, param: str, problem: str):
        super().__init__(f"{param}: {problem}")
        self.param = param


def _check_known(args, allowed) -> None:
    for name in args:
        if name not in allowed and name not in IGNORED:
            raise ParamError(name, "unknown parameter")


def _time_bound(args, name: str, end_of_day: bool) -> str | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    if DATE_PATTERN.fullmatch(value):
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ParamError(name, "not a calendar date") from None
        return value + ("T23:59:59Z" if end_of_day else "T00:00:00Z")
    if valid_utc_time(value):
        return value
    raise ParamError(name, "must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")


def _stars(args) -> list[int] | None:
    pieces = [p.strip() for value in args.getlist("stars") for p in value.split(",")]
    pieces = [p for p in pieces if p]
    if not pieces:
        return None
    if not all(p in ("1", "2", "3", "4", "5") for p in pieces):
        raise ParamError("stars", "must be integers 1..5")
    return sorted({int(p) for p in pieces})


def parse_filters(args, allowed=FILTERS + PAGING) -> dict:
    """The evaluation filters of a query string; empty values count as absent."""
    _check_known(args, allowed)
    filters: dict = {}
    for name in TEXT_FILTERS:
        value = args.get(name, "").strip()
        if not value:
            continue
        if len(value) > MAX_FILTER_TEXT:
            raise ParamError(name, f"longer than {MAX_FILTER_TEXT} characters")
        if name == "channel" and value not in CHANNELS:
            raise ParamError(name, "must be one of " + ", ".join(CHANNELS))
        filters[name] = value
    stars = _stars(args)
    if stars:
        filters["stars"] = stars
    bad = args.get("bad", "").strip()
    if bad not in ("", "0", "1"):
        raise ParamError("bad", "must be 0 or 1")
    if bad == "1":
        filters["bad"] = True
    since = _time_bound(args, "since", end_of_day=False)
    until = _time_bound(args, "until", end_of_day=True)
    if since and until and until < since:
        raise ParamError("until", "is before since")
    if since:
        filters["since"] = since
    if until:
        filters["until"] = until
    return filters


def parse_paging(args) -> tuple[int, int]:
    page_text = args.get("page", "1").strip() or "1"
    if not page_text.isdigit() or int(page_text) < 1:
        raise ParamError("page", "must be an integer >= 1")
    per_page_text = args.get("per_page", str(DEFAULT_PER_PAGE)).strip() or str(DEFAULT_PER_PAGE)
    if not per_page_text.isdigit() or not 1 <= int(per_page_text) <= MAX_PER_PAGE:
        raise ParamError("per_page", f"must be 1..{MAX_PER_PAGE}")
    return int(page_text), int(per_page_text)


def _conditions(filters: dict) -> list:
    ev = db.evaluations.c
    conditions = [ev[name] == filters[name] for name in TEXT_FILTERS if name in filters]
    if "stars" in filters:
        conditions.append(ev.stars.in_(filters["stars"]))
    if filters.get("bad"):
        conditions.append(ev.stars <= 2)
    if "since" in filters:
        conditions.append(ev.effective_at >= filters["since"])
    if "until" in filters:
        conditions.append(ev.effective_at <= filters["until"])
    return conditions


def public_evaluation(row) -> dict:
    """An evaluation as the API and pages show it: no contact, no signature."""
    item = {k: v for k, v in row._mapping.items() if k not in HIDDEN_FIELDS}
    item["tags"] = json.loads(item["tags"]) if item["tags"] else []
    item["excluded"] = bool(item["excluded"])
    item["level"] = level_name(item["stars"])
    item["bad"] = is_bad(item["stars"])
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


def summarize(engine, filters: dict) -> dict:
    """Counts per level, 好评 (3..5), 差评 (1..2) and 好评率; excluded rows apart."""
    ev = db.evaluations.c
    query = (
        select(ev.stars, ev.excluded, func.count())
        .where(and_(True, *_conditions(filters)))
        .group_by(ev.stars, ev.excluded)
    )
    by_stars = {str(stars): 0 for stars in range(1, 6)}
    excluded = 0
    with engine.connect() as conn:
        for stars, is_excluded, count in conn.execute(query):
            if is_excluded:
                excluded += count
            else:
                by_stars[str(stars)] += count
    total = sum(by_stars.values())
    bad = by_stars["1"] + by_stars["2"]
    good = total - bad
    return {
        "total": total,
        "by_stars": by_stars,
        "good": good,
        "bad": bad,
        "good_rate": round(good / total, 4) if total else None,
        "excluded": excluded,
    }


def _without_contact(value):
    if isinstance(value, dict):
        return {k: _without_contact(v) for k, v in value.items() if k != "contact"}
    if isinstance(value, list):
        return [_without_contact(v) for v in value]
    return value


def redact_payload(text: str) -> str:
    """A quarantined payload with any `contact` field removed (it is confidential)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return json.dumps(_without_contact(parsed), ensure_ascii=False, sort_keys=True)


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
            "payload": redact_payload(row.payload),
        }
        for row in rows
    ]
    return {"items": items, "page": page, "per_page": per_page, "total": total}


def _public_status(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        status = json.loads(text)
    except ValueError:
        return None
    if not isinstance(status, dict):
        return None
    return {k: v for k, v in status.items() if not any(w in k.lower() for w in SECRET_STATUS_WORDS)}


def device_report(engine) -> list[dict]:
    """Every device with what it reported against what the store holds.

    `missing` is the number of seq numbers below the highest stored one that
    are not stored (lost, still on the device, or quarantined).
    """
    ev = db.evaluations.c
    with engine.connect() as conn:
        devices = conn.execute(select(db.devices).order_by(db.devices.c.device_id)).all()
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
        # The device's cumulative counts cover its records up to its last_seq;
        # compare them with what is stored up to that same seq, so records
        # still travelling (newer than the status) do not look like a mismatch.
        statuses = {device.device_id: _public_status(device.status) for device in devices}
        upto = {
            device_id: status["last_seq"]
            for device_id, status in statuses.items()
            if status and isinstance(status.get("last_seq"), int)
        }
        per_stars: dict[str, dict[str, int]] = {}
        for device_id, last_seq in upto.items():
            for stars, count in conn.execute(
                select(ev.stars, func.count())
                .where(ev.device_id == device_id, ev.seq <= last_seq)
                .group_by(ev.stars)
            ):
                per_stars.setdefault(device_id, {})[str(stars)] = count
    report = []
    for device in devices:
        status = statuses[device.device_id]
        total = totals.get(device.device_id)
        stored = total.stored if total else 0
        max_seq = total.max_seq if total else None
        counts_stored = {
            str(s): per_stars.get(device.device_id, {}).get(str(s), 0) for s in range(1, 6)
        }
        reported = status.get("counts") if status else None
        counts_reported = (
            {str(s): reported.get(str(s), 0) for s in range(1, 6)}
            if isinstance(reported, dict)
            else None
        )
        report.append(
            {
                "device_id": device.device_id,
                "kind": device.kind,
                "name": device.name,
                "org_id": device.org_id,
                "window_id": device.window_id,
                "created_at": device.created_at,
                "last_seen": device.last_seen,
                "status": status,
                "stored": stored,
                "max_seq": max_seq,
                "missing": (max_seq - total.distinct_seqs) if total and max_seq else 0,
                "counts_reported": counts_reported,
                "counts_stored": counts_stored,
                "counts_upto_seq": upto.get(device.device_id),
                "counts_match": (
                    counts_reported == counts_stored if counts_reported is not None else None
                ),
            }
        )
    return report


@bp.errorhandler(ParamError)
def _bad_parameter(exc: ParamError):
    return jsonify(error=str(exc)), 400


@bp.get("/evaluations")
@login_required
def evaluations():
    filters = parse_filters(request.args)
    page, per_page = parse_paging(request.args)
    return jsonify(list_evaluations(get_engine(), filters, page, per_page))


@bp.get("/evaluations/summary")
@login_required
def evaluations_summary():
    return jsonify(summarize(get_engine(), parse_filters(request.args, allowed=FILTERS)))


@bp.get("/quarantine")
@admin_required
def quarantine():
    _check_known(request.args, PAGING + ("device_id",))
    page, per_page = parse_paging(request.args)
    device_id = request.args.get("device_id", "").strip() or None
    return jsonify(list_quarantine(get_engine(), page, per_page, device_id))


@bp.get("/devices")
@login_required
def devices():
    _check_known(request.args, ())
    return jsonify(items=device_report(get_engine()))


@bp.get("/devices/<device_id>/days")
@login_required
def device_days(device_id):
    _check_known(request.args, ("days",))
    text = request.args.get("days", "14").strip() or "14"
    if not text.isdigit() or not 1 <= int(text) <= completeness.MAX_DAYS:
        raise ParamError("days", f"must be 1..{completeness.MAX_DAYS}")
    try:
        report = completeness.device_days(
            get_engine(), device_id, int(text), current_app.config["HCP_TIMEZONE"]
        )
    except completeness.UnknownDevice:
        return jsonify(error=f"device_id: unknown device {device_id!r}"), 404
    return jsonify(report)
