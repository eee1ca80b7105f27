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
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from flask_babel import lazy_gettext as _l
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


@bp.get("/public")
def page():
    period = request.args.get("period", "").strip() or default_period()
    if not rankings_data.is_month(period) or period > _this_month():
        error = _l("period: must be a month so far, YYYY-MM")
        return render_template("public.html", error=error, data=None, period=period[:20]), 400
    try:
        with get_engine().connect() as conn:
            data = load(conn, period, consecutive=False)  # not shown here
            handled = outcomes(conn, data["first_day"], data["last_day"])
    except rankings_data.PeriodError as exc:
        return render_template("public.html", error=str(exc), data=None, period=period), 400
    town_of = {}
    with get_engine().connect() as conn:
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
    return render_template(
        "public.html",
        error=None,
        period=data["period"],
        data={"first_day": data["first_day"], "last_day": data["last_day"]},
        towns=towns,
        units=units,
        OUTCOME_LABELS=OUTCOME_LABELS,
    )
