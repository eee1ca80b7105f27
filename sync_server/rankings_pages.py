"""The pages of rankings and 通报, and the daily digest.

- ``GET /rankings?period=&dim=&by=``: a period's rankings (its stored
  snapshot, else computed there and then; this month by default) and the
  通报's lists; printable; the stored snapshots linked.
- ``POST /rankings/compute``: store (or recompute) a period's snapshot
  (admins: loop_settings), audited.
- ``GET /rankings/export?period=&dim=&format=xlsx|csv``: the same as an Excel
  workbook (or CSV).
- ``GET /digest``: the cases due soon and overdue per unit (sync_server/digest.py).

Unit managers see every unit and town of the 通报 (it is published to all
units) but windows, staff and items of their own subtree only.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from sync_server import audit, deadlines, digest, org, rankings_data
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.org_pages import FORMATS

bp = Blueprint("rankings", __name__)

DIMENSION_LABELS = {
    "unit": _l("Units"),
    "town": _l("Streets and towns"),
    "window": _l("Windows"),
    "staff": _l("Staff"),
    "item": _l("Service items"),
}
METRIC_LABELS = {
    "good_rate": _l("Good rating rate"),
    "bad": _l("Bad ratings"),
    "on_time_rate": _l("On-time rectification rate"),
    "visit_rate": _l("Return-visit rate"),
    "active_rate": _l("Active rating rate"),
}


def default_period() -> str:
    """This month so far, in Beijing time (stored months are linked)."""
    today = deadlines.local_day(deadlines.format_utc(dt.datetime.now(dt.UTC)))
    return f"{today.year:04d}-{today.month:02d}"


def _choice(name: str, allowed, default: str) -> str:
    value = request.args.get(name, default)
    if value not in allowed:
        raise rankings_data.PeriodError(
            _("%(name)s: must be one of %(allowed)s", name=name, allowed=", ".join(allowed))
        )
    return value


def load(conn, period: str, consecutive: bool = True) -> dict:
    """The stored snapshot of `period`, else the figures computed now (not
    stored; without the months-running list when `consecutive` is False)."""
    period = rankings_data.parse_period(period)[0]
    stored = rankings_data.snapshot(conn, period)
    if stored is not None:
        stored["stored"] = True
        return stored
    data = rankings_data.figures_for(conn, period)
    settings = deadlines.all_settings(conn)
    data["settings"] = settings
    data["notices"] = rankings_data.notices(data, settings)
    now = deadlines.format_utc(dt.datetime.now(dt.UTC))
    data["consecutive"] = {"unit": [], "town": []}
    if consecutive:
        data["consecutive"] = rankings_data.consecutive(
            conn, data, settings, now, data["good_rate_stars"]
        )
    data["stored"] = False
    return data


def visible_rows(data: dict, dimension: str, by: str) -> list[dict]:
    """A dimension's rows the user may see, ordered by the rank of `by`."""
    rows = data["dimensions"][dimension]
    scope = current_user.scope()
    if scope is not None and dimension in rankings_data.MEMBER_TABLE:
        rows = [r for r in rows if r["unit_id"] in scope]
    big = 10**9
    return sorted(rows, key=lambda r: (r["ranks"][by] or big, r["id"]))


def _request():
    period = request.args.get("period", "").strip() or default_period()
    dimension = _choice("dim", rankings_data.DIMENSIONS, "unit")
    by = _choice("by", rankings_data.METRICS, "good_rate")
    with get_engine().connect() as conn:
        data = load(conn, period)
        data["snapshots"] = rankings_data.snapshots(conn)[:24]
    return data, dimension, by


@bp.get("/rankings")
@requires("rankings")
def page():
    try:
        data, dimension, by = _request()
    except rankings_data.PeriodError as exc:
        return render_template(
            "rankings.html", error=str(exc), data=None, period=request.args.get("period", "")
        ), 400
    return render_template(
        "rankings.html",
        error=None,
        data=data,
        period=data["period"],
        dimension=dimension,
        by=by,
        rows=visible_rows(data, dimension, by),
        DIMENSION_LABELS=DIMENSION_LABELS,
        METRIC_LABELS=METRIC_LABELS,
    )


@bp.post("/rankings/compute")
@requires("loop_settings")
def compute():
    period = request.form.get("period", "").strip()
    try:
        with get_engine().begin() as conn:
            before = rankings_data.snapshot(conn, rankings_data.parse_period(period)[0])
            data = rankings_data.compute(conn, period, actor=current_user.actor)
            audit.record(
                conn,
                "rankings.compute",
                f"period:{data['period']}",
                None if before is None else {"computed_at": before["computed_at"]},
                {"period": data["period"], "units": len(data["dimensions"]["unit"])},
            )
    except rankings_data.PeriodError as exc:
        return render_template("rankings.html", error=str(exc), data=None, period=period), 400
    return redirect(url_for("rankings.page", period=data["period"]))


def table(data: dict, dimension: str, rows: list[dict]) -> list[list]:
    """The 通报 as district offices lay it out: title, period, unit, header,
    one row per entity, totals."""
    header = [
        _("Rank"), _("Name"), _("Code"), _("Valid ratings"), _("Bad ratings"),
        _("Good rating rate"), _("Cases due"), _("Rectified on time"),
        _("On-time rectification rate"), _("Cases fed back"), _("Return visits"),
        _("Return-visit rate"), _("Service events"), _("Rated"), _("Active rating rate"),
    ]  # fmt: skip
    with get_engine().connect() as conn:
        roots = org.tree(conn)
    root = roots[0]["name"] if roots else ""
    if current_user.scope() is not None and dimension in rankings_data.MEMBER_TABLE:
        with get_engine().connect() as conn:
            unit = org.get(conn, "units", current_user.unit_id)
        root = unit["name"] if unit else current_user.unit_id
    out = [
        [_("Government service good/bad review rankings (通报)")],
        [_("Period"), data["period"], f"{data['first_day']} — {data['last_day']}"],
        [_("Unit"), root, str(DIMENSION_LABELS[dimension])],
        [_("Computed"), data.get("computed_at") or _("now, not stored")],
        header,
    ]
    totals = dict.fromkeys(
        ("valid", "bad", "good_stars", "cases_due", "cases_on_time", "cases_fed_back",
         "cases_visited", "events", "events_rated"), 0,
    )  # fmt: skip
    rate_stars = data["good_rate_stars"]
    for row in rows:
        out.append(
            [
                row["ranks"]["good_rate"] or "",
                row["name"],
                row["id"],
                row["valid"],
                row["bad"],
                _percent(row["good_rate"]),
                row["cases_due"],
                row["cases_on_time"],
                _percent(row["on_time_rate"]),
                row["cases_fed_back"],
                row["cases_visited"],
                _percent(row["visit_rate"]),
                row["events"],
                row["events_rated"],
                _percent(row["active_rate"]),
            ]  # fmt: skip
        )
        for key in totals:
            if key == "good_stars":
                totals[key] += sum(row["stars"][s - 1] for s in rate_stars)
            else:
                totals[key] += row[key]
    out.append(
        [
            "",
            _("Total"),
            "",
            totals["valid"],
            totals["bad"],
            _percent(_ratio(totals["good_stars"], totals["valid"])),
            totals["cases_due"],
            totals["cases_on_time"],
            _percent(_ratio(totals["cases_on_time"], totals["cases_due"])),
            totals["cases_fed_back"],
            totals["cases_visited"],
            _percent(_ratio(totals["cases_visited"], totals["cases_fed_back"])),
            totals["events"],
            totals["events_rated"],
            _percent(_ratio(totals["events_rated"], totals["events"])),
        ]  # fmt: skip
    )
    return out


def _ratio(part, whole):
    return part / whole if whole else None


def _percent(rate) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


@bp.get("/rankings/export")
@requires("rankings")
def export():
    try:
        data, dimension, _by = _request()
    except rankings_data.PeriodError as exc:
        return render_template("rankings.html", error=str(exc), data=None, period=""), 400
    fmt = request.args.get("format", "xlsx")
    if fmt not in FORMATS:
        abort(404)
    rows = table(data, dimension, visible_rows(data, dimension, "good_rate"))
    body = org.to_xlsx(rows, _("Rankings")) if fmt == "xlsx" else org.to_csv(rows)
    name = f"hcp-rankings-{data['period']}-{dimension}.{fmt}".replace("..", "_")
    return Response(
        body, mimetype=FORMATS[fmt], headers={"Content-Disposition": f"attachment; filename={name}"}
    )


@bp.get("/digest")
@requires("cases")
def digest_page():
    unit = request.args.get("unit", "").strip() or None
    if unit is not None and not current_user.sees_unit(unit):
        abort(404)
    with get_engine().connect() as conn:
        if unit is not None and org.get(conn, "units", unit) is None:
            abort(404)
        found = digest.build(conn, scope=current_user.scope(), unit=unit)
    return render_template("digest.html", digest=found)
