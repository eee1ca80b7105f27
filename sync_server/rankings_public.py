"""The public disclosure page (公开): no login, readable on a phone.

``GET /public?period=YYYY-MM`` (default: this month so far) shows, per street or
town and per unit, the month's valid ratings, 好评率 and 差评数, and how the
差评 were handled: how many were fixed at once, put in the ledger, answered
with an explanation or are still being handled, the on-time rectification
rate and the return-visit rate. The month's stored snapshot is used when
there is one (what was published stays published), else the figures are
computed.

Anonymised: unit names and numbers only. No rater data (no contact, no
comment, no record id), no staff or window, nothing from the cases but
counts.

Cached, for a crowd of phones: a month's figures are kept in the process for
`HCP_PUBLIC_CACHE_SECONDS` (60 by default; 0 turns the cache off), so
repeated views within that time do not touch the database; the answer
carries `Cache-Control: public, max-age=<the same>` (private for a logged-in
user, whose page shows their menu) and an ETag of the page, and a request
whose If-None-Match names it gets 304 Not Modified without the page.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from flask import Blueprint, current_app, render_template, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import and_, func, or_, select

from sync_server import db, rankings_data
from sync_server.db import get_engine
from sync_server.rankings_pages import default_period, load
from sync_server.schema_cases import cases

bp = Blueprint("public", __name__)

OUTCOME_LABELS = {
    "fix_now": _l("Fixed at once"),
    "ledger": _l("In the ledger"),
    "explanation": _l("Explained"),
    "pending": _l("Being handled"),
}
PUBLIC_FIELDS = (
    "id", "name", "valid", "bad", "good_rate", "cases_due", "cases_on_time", "on_time_rate",
    "cases_fed_back", "cases_visited", "visit_rate",
)  # fmt: skip


def outcomes(conn, first_day: str, last_day: str) -> dict:
    """unit id -> {fix_now, ledger, explanation, pending}: the period's
    counting 差评 cases by how they were classified (pending: not yet)."""
    first, last = dt.date.fromisoformat(first_day), dt.date.fromisoformat(last_day)
    since, before = rankings_data._utc_bounds(first, last)
    c, ev = cases.c, db.evaluations.c
    query = (
        select(c.unit_id, c.kind, func.count())
        .select_from(cases.join(db.evaluations, ev.id == c.record_id))
        .where(
            c.effective_at >= since,
            c.effective_at < before,
            c.state != "voided",
            or_(c.appeal_state.is_(None), c.appeal_state.not_in(rankings_data.VOIDED_APPEALS)),
            and_(ev.excluded.is_(False), ev.repeat_of.is_(None)),
        )
        .group_by(c.unit_id, c.kind)
    )
    out: dict = {}
    for unit_id, kind, count in conn.execute(query):
        entry = out.setdefault(unit_id, dict.fromkeys(OUTCOME_LABELS, 0))
        entry[kind if kind in OUTCOME_LABELS else "pending"] += count
    return out


def _public_row(row: dict, handled: dict) -> dict:
    kept = {key: row[key] for key in PUBLIC_FIELDS}
    kept["outcomes"] = handled
    return kept


def _this_month() -> str:
    from sync_server import deadlines

    today = deadlines.local_day(deadlines.format_utc(dt.datetime.now(dt.UTC)))
    return f"{today.year:04d}-{today.month:02d}"


DEFAULT_CACHE_SECONDS = 60
_cache_lock = threading.Lock()


def cache_seconds() -> int:
    value = current_app.config.get("HCP_PUBLIC_CACHE_SECONDS", DEFAULT_CACHE_SECONDS)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return DEFAULT_CACHE_SECONDS


def figures(period: str) -> dict:
    """What the page shows of `period` (PeriodError when it cannot be read),
    from the app's cache when computed less than cache_seconds() ago."""
    seconds = cache_seconds()
    cache = current_app.extensions.setdefault("hcp_public_cache", {})
    now = time.monotonic()
    with _cache_lock:
        kept = cache.get(period)
    if kept is not None and seconds and now < kept[0]:
        return kept[1]
    shown = _compute(period)
    if seconds:
        with _cache_lock:
            for key in [k for k, (until, _v) in cache.items() if until <= now]:
                del cache[key]  # the expired ones: at most a month a key
            cache[period] = (now + seconds, shown)
    return shown


def _compute(period: str) -> dict:
    with get_engine().connect() as conn:
        data = load(conn, period, consecutive=False)  # not shown here
        handled = outcomes(conn, data["first_day"], data["last_day"])
        from sync_server import org

        town_of = rankings_data._towns({u["id"]: u for u in org.units(conn, include_retired=True)})
    none = dict.fromkeys(OUTCOME_LABELS, 0)
    units = [_public_row(r, handled.get(r["id"], none)) for r in data["dimensions"]["unit"]]
    towns = []
    for row in data["dimensions"]["town"]:
        summed = dict(none)
        for unit_id, counts in handled.items():
            if town_of.get(unit_id) == row["id"]:
                summed = {k: summed[k] + counts[k] for k in summed}
        towns.append(_public_row(row, summed))
    return {
        "period": data["period"],
        "data": {"first_day": data["first_day"], "last_day": data["last_day"]},
        "towns": towns,
        "units": units,
    }


@bp.get("/public")
def page():
    period = request.args.get("period", "").strip() or default_period()
    if not rankings_data.is_month(period) or period > _this_month():
        error = _l("period: must be a month so far, YYYY-MM")
        return render_template("public.html", error=error, data=None, period=period[:20]), 400
    try:
        shown = figures(period)
    except rankings_data.PeriodError as exc:
        return render_template("public.html", error=str(exc), data=None, period=period), 400
    response = current_app.make_response(
        render_template("public.html", error=None, OUTCOME_LABELS=OUTCOME_LABELS, **shown)
    )
    response.cache_control.max_age = cache_seconds()
    if current_user.is_authenticated:
        response.cache_control.private = True
    else:
        response.cache_control.public = True
    response.add_etag()
    return response.make_conditional(request)
