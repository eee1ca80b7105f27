"""Analytics: figures by org subtree, window, staff, service item, channel and
tag; trends by day, week and month; ratings by hour of day; where and why
差评 concentrate. Pages, the JSON API and the Excel/CSV exports of each.

Everything here reads the pre-aggregated figures (sync_server/figures.py):
a page sums rows per day and unit, never scans the evaluations. Days are
local days in Asia/Shanghai; a rating belongs to the unit of its own time.

好评率 = ratings at the levels of `HCP_GOOD_RATE_STARS` / valid ratings
(ratings voided after review, and repeats of a rated service event, are not
valid); the default (5, 4, 3) is (非常满意+满意+基本满意)/valid. 差评 are
levels 1 and 2. 主动评价率 = service events rated / service events handled
(`figures.activity`), shown where events say who handled them.

A unit (the user's own for unit-scoped roles, else the district or any unit
asked for) bounds every figure to its subtree; a unit outside a scoped user's
subtree is a 404, as if it did not exist.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from protocols.levels import CHANNELS
from sync_server import api, charts, db, figures, org
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.org_pages import FORMATS
from sync_server.queries import good_rate_stars
from sync_server.web import CHANNEL_LABELS, LEVEL_LABELS

bp = Blueprint("analytics", __name__)

# view -> (figures dimension, title)
VIEWS = {
    "window": ("window", _l("Figures by window")),
    "staff": ("staff", _l("Figures by staff member")),
    "item": ("item", _l("Figures by service item")),
    "channel": ("channel", _l("Figures by channel")),
    "tag": ("tag", _l("Figures by content tag")),
    "hour": ("hour", _l("Ratings by hour of day")),
    "trend": ("day", _l("Trend")),
    "bad": ("unit", _l("Where bad ratings concentrate")),
}
WITH_ACTIVITY = ("window", "staff", "item")
GRAINS = ("day", "week", "month")
PARAMS = ("unit", "since", "until", "channel", "grain", "format", "view")
TOP = 10


class Query:
    """The checked query string of an analytics page, API call or export."""

    def __init__(self, args, view: str):
        api._check_known(args, PARAMS)
        self.view = view
        self.since = _day(args, "since")
        self.until = _day(args, "until")
        if self.since and self.until and self.until < self.since:
            raise api.ParamError("until", "is before since")
        self.channel = api.text_param(args, "channel")
        if self.channel is not None:
            if self.channel not in CHANNELS:
                raise api.ParamError("channel", "must be one of " + ", ".join(CHANNELS))
        self.grain = args.get("grain", "").strip() or "day"
        if self.grain not in GRAINS:
            raise api.ParamError("grain", "must be one of " + ", ".join(GRAINS))
        self.unit = _root(api.text_param(args, "unit"))
        self.scope = current_user.scope()

    def totals(self, conn, dimension, unit=None):
        return figures.level_counts(
            conn, dimension, self.since, self.until, self.scope,
            unit or self.unit, channel=self.channel,
        )  # fmt: skip


def _day(args, name):
    value = args.get(name, "").strip()
    if not value:
        return None
    if api.DATE_PATTERN.fullmatch(value):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise api.ParamError(name, "not a calendar date") from None
    raise api.ParamError(name, "must be YYYY-MM-DD (a day in Asia/Shanghai)")


def _root(wanted) -> str:
    """The unit asked for, which must be inside the user's scope."""
    scope = current_user.scope()
    if not wanted:
        if scope is not None:
            return current_user.unit_id
        with get_engine().connect() as conn:
            roots = org.tree(conn)
        return roots[0]["id"] if roots else ""
    if scope is not None and wanted not in scope:
        abort(404)
    with get_engine().connect() as conn:
        known = conn.execute(select(db.org_units.c.id).where(db.org_units.c.id == wanted)).first()
    if known is None:
        abort(404)
    return wanted


def _figures(counts, rate_stars) -> dict:
    """Level counts -> the API's shape of one row (levels keyed "1".."5")."""
    made = figures.figures_of(counts, rate_stars)
    made["by_stars"] = {str(level): n for level, n in made["by_stars"].items()}
    return made


def _add(into, counts):
    for index in range(5):
        into[index] += counts[index]


# --- figures by org subtree -----------------------------------------------------------


def by_subtree(conn, query: Query, rate_stars) -> dict:
    """One row per unit directly below the unit asked for, each counting its
    whole subtree, plus the unit's own row (ratings placed on it directly)
    and the total."""
    root_id = query.unit
    units = {u["id"]: u for u in org.units(conn, include_retired=True)}
    children_of = org.children_map(units.values())
    children = sorted(children_of.get(root_id, []), key=lambda u: u["id"])
    under = {root_id: root_id}  # each unit of the subtree -> the row it counts in
    for child in children:
        todo = [child["id"]]
        while todo:
            unit_id = todo.pop()
            if unit_id not in under:
                under[unit_id] = child["id"]
                todo.extend(c["id"] for c in children_of.get(unit_id, []))
    counts = {key: [0] * 5 for key in [c["id"] for c in children] + [root_id]}
    for unit_id, levels in query.totals(conn, "unit").items():
        if unit_id in under:
            _add(counts[under[unit_id]], levels)
    events = figures.activity(
        conn, "unit", query.since, query.until, query.scope, root_id
    ) if not query.channel else {}  # fmt: skip
    handled = {key: [0, 0] for key in counts}
    for unit_id, seen in events.items():
        if unit_id in under:
            handled[under[unit_id]][0] += seen["handled"]
            handled[under[unit_id]][1] += seen["rated"]

    def row(name, unit_id, levels):
        return {"unit_id": unit_id, "name": name, **_figures(levels, rate_stars)}

    rows = [row(c["name"], c["id"], counts[c["id"]]) for c in children]
    rows.append(row(_("%(name)s itself", name=units[root_id]["name"]), root_id, counts[root_id]))
    total = [sum(counts[key][i] for key in counts) for i in range(5)]
    return {
        "root": {"id": root_id, "name": units[root_id]["name"]},
        "since": query.since,
        "until": query.until,
        "good_rate_stars": list(rate_stars),
        "rows": rows,
        "total": row(_("Total"), root_id, total),
        "activity": {key: _rate(*pair) for key, pair in handled.items()},
    }


def _rate(handled, rated):
    return {
        "handled": handled,
        "rated": rated,
        "active_rate": round(rated / handled, 4) if handled else None,
    }


# --- the other views ------------------------------------------------------------------


def names(conn, dimension: str, keys) -> dict:
    """What people call each key of a dimension."""
    keys = sorted(k for k in keys if k)
    if not keys:
        return {}
    table = {"window": db.windows, "staff": db.staff, "item": db.service_items}.get(dimension)
    if dimension == "unit":
        table = db.org_units
    if table is not None:
        rows = conn.execute(select(table.c.id, table.c.name).where(table.c.id.in_(keys)))
        return dict(rows.all())
    if dimension == "channel":
        return {key: str(CHANNEL_LABELS.get(key, key)) for key in keys}
    if dimension == "tag":
        tags = db.content_tags.c
        rows = conn.execute(
            select(tags.code, tags.text).where(tags.code.in_(keys)).order_by(tags.version)
        )
        return dict(rows.all())  # the latest version's text wins
    if dimension == "hour":
        return {key: f"{key}:00–{key}:59" for key in keys}
    return {}


def _period_key(day: str, grain: str) -> str:
    if grain == "day":
        return day
    date = dt.date.fromisoformat(day)
    if grain == "month":
        return date.strftime("%Y-%m")
    year, week, _weekday = date.isocalendar()
    return f"{year}-W{week:02d}"


def view_figures(conn, query: Query, rate_stars) -> dict:
    """Rows of one view: key, name, the figures, and 主动评价率 where events
    say who handled them; sorted as people read them."""
    if query.view == "bad":
        return bad_figures(conn, query, rate_stars)
    dimension = VIEWS[query.view][0]
    # by month: the month rows of whole months, not every day's row
    monthly = query.view == "trend" and query.grain == "month"
    counts = query.totals(conn, "month" if monthly else dimension)
    if query.view == "trend" and not monthly:  # days into weeks (or kept as days)
        grouped: dict[str, list[int]] = {}
        for day, levels in counts.items():
            _add(grouped.setdefault(_period_key(day, query.grain), [0] * 5), levels)
        counts = grouped
    if query.view == "hour":
        counts = {f"{h:02d}": counts.get(f"{h:02d}", [0] * 5) for h in range(24)}
    activity = {}
    # 主动评价率 is about service events, which have no channel: not shown for one
    with_activity = query.view in WITH_ACTIVITY and not query.channel
    if with_activity:
        activity = figures.activity(
            conn, dimension, query.since, query.until, query.scope, query.unit
        )
    known = names(conn, dimension, counts)
    rows = []
    for key, levels in counts.items():
        seen = activity.get(key, {"handled": 0, "rated": 0, "active_rate": None})
        rows.append(
            {
                "key": key,
                "name": known.get(key, key) if query.view != "trend" else key,
                **_figures(levels, rate_stars),
                "handled": seen["handled"] if with_activity else None,
                "active_rate": seen["active_rate"],
            }
        )
    if query.view in ("trend", "hour"):
        rows.sort(key=lambda r: r["key"])
    else:
        rows.sort(key=lambda r: (-r["valid"], r["key"]))
    total = [sum(levels[i] for levels in counts.values()) for i in range(5)]
    return _answer(query, rate_stars, {"rows": rows, "total": _figures(total, rate_stars)})


def bad_figures(conn, query: Query, rate_stars) -> dict:
    """The units, windows and content tags with the most 差评, and 差评 by hour."""
    found = {}
    for part, dimension in (("units", "unit"), ("windows", "window"), ("tags", "tag")):
        counts = query.totals(conn, dimension)
        known = names(conn, dimension, counts)
        rows = [
            {"key": key, "name": known.get(key, key or "—"), **_figures(levels, rate_stars)}
            for key, levels in counts.items()
        ]
        rows = [r for r in rows if r["bad"]]
        rows.sort(key=lambda r: (-r["bad"], r["key"]))
        found[part] = rows[:TOP]
    hours = query.totals(conn, "hour")
    found["hours"] = [
        {"key": f"{h:02d}", "name": f"{h:02d}:00–{h:02d}:59",
         **_figures(hours.get(f"{h:02d}", [0] * 5), rate_stars)}
        for h in range(24)
    ]  # fmt: skip
    return _answer(query, rate_stars, found)


def _answer(query: Query, rate_stars, found: dict) -> dict:
    with get_engine().connect() as conn:
        unit = org.get(conn, "units", query.unit) if query.unit else None
    return {
        "view": query.view,
        "root": {"id": query.unit, "name": unit["name"] if unit else ""},
        "since": query.since,
        "until": query.until,
        "channel": query.channel,
        "grain": query.grain if query.view == "trend" else None,
        "good_rate_stars": list(rate_stars),
        **found,
    }


def compute(view: str, args) -> dict:
    query = Query(args, view)
    rate_stars = good_rate_stars()
    with get_engine().connect() as conn:
        if view == "units":
            return by_subtree(conn, query, rate_stars)
        return view_figures(conn, query, rate_stars)


def charts_of(view: str, found: dict):
    """The SVG charts of a view's figures."""
    if view == "units":
        rows = [(r["name"], r["valid"], r["bad"]) for r in found["rows"]]
        return [charts.bars(_("Valid ratings and bad ratings by unit"), rows, _("Bad ratings"))]
    if view == "bad":
        parts = (
            ("units", _("Units with the most bad ratings")),
            ("windows", _("Windows with the most bad ratings")),
            ("tags", _("Reasons given with bad ratings")),
            ("hours", _("Bad ratings by hour of day")),
        )
        return [
            charts.bars(
                title,
                [(r["name"], r["bad"], r["bad"]) for r in found[part] if r["bad"]],
                _("Bad ratings"),
            )
            for part, title in parts
        ]
    rows = found["rows"]
    if view == "trend":
        labels = [r["key"] for r in rows]
        rates = [None if r["good_rate"] is None else round(r["good_rate"] * 100, 1) for r in rows]
        return [
            charts.lines(
                _("Valid ratings and bad ratings over time"),
                labels,
                [
                    (_("Valid ratings"), [r["valid"] for r in rows]),
                    (_("Bad ratings"), [r["bad"] for r in rows]),
                ],
            ),
            charts.lines(
                _("Good rating rate over time (%)"), labels, [(_("Good rating rate"), rates)]
            ),
        ]
    shown = rows if view == "hour" else rows[:20]
    title = VIEWS[view][1]
    bars = [(r["name"], r["valid"], r["bad"]) for r in shown]
    return [charts.bars(str(title), bars, _("Bad ratings"))]


# --- pages -----------------------------------------------------------------------------


def _page(view: str):
    template = "analytics.html" if view == "units" else "analytics_view.html"
    try:
        found = compute(view, request.args)
    except api.ParamError as exc:
        page = render_template(
            template, error=str(exc), figures=None, view=view, views=VIEWS, kept=_kept()
        )
        return page, 400
    return render_template(
        template,
        error=None,
        figures=found,
        view=view,
        views=VIEWS,
        charts=charts_of(view, found),
        kept=_kept(),
    )


def _kept() -> dict:
    """The filters every view shares, for the links between the views."""
    return {
        name: request.args[name]
        for name in ("unit", "since", "until", "channel")
        if request.args.get(name)
    }


@bp.get("/analytics")
@requires("ratings")
def page():
    return _page("units")


@bp.get("/analytics/<view>")
@requires("ratings")
def view_page(view):
    if view not in VIEWS:
        abort(404)
    return _page(view)


@bp.get("/api/v1/analytics/units")
@requires("ratings")
def api_units():
    try:
        found = compute("units", request.args)
    except api.ParamError as exc:
        return jsonify(error=str(exc)), 400
    found.pop("activity")
    return jsonify(found)


@bp.get("/api/v1/analytics/bad")
@requires("ratings")
def api_bad():
    return _api("bad")


@bp.get("/api/v1/analytics/<view>")
@requires("ratings")
def api_view(view):
    if view not in VIEWS or view == "bad":  # bad has its own route (another shape)
        return jsonify(error=f"view: must be one of units, {', '.join(VIEWS)}"), 404
    return _api(view)


def _api(view):
    try:
        return jsonify(compute(view, request.args))
    except api.ParamError as exc:
        return jsonify(error=str(exc)), 400


# --- exports ---------------------------------------------------------------------------

LEVEL_ORDER = (5, 4, 3, 2, 1)


def _period(found) -> str:
    return f"{found['since'] or '—'} — {found['until'] or '—'}"


def table(found, view: str = "units") -> list[list]:
    """The layout district offices use: title, period, unit, header, rows, total."""
    levels = [str(LEVEL_LABELS[s]) for s in LEVEL_ORDER]
    figures_names = [_("Valid ratings"), _("Good ratings"), _("Bad ratings"), _("Good rating rate")]
    title = _("Figures by unit") if view == "units" else str(VIEWS[view][1])
    head = [
        [title],
        [_("Period"), _period(found)],
        [_("Unit"), f"{found['root']['name']} ({found['root']['id']})"],
        [_("Made"), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")],
    ]
    if found.get("channel"):
        head.insert(3, [_("Channel"), str(CHANNEL_LABELS.get(found["channel"], found["channel"]))])

    def cells(row):
        rate = "" if row["good_rate"] is None else f"{row['good_rate'] * 100:.1f}%"
        levels = [row["by_stars"][str(s)] for s in LEVEL_ORDER]
        return [*levels, row["valid"], row["good"], row["bad"], rate]

    if view == "units":
        out = [*head, [_("Unit"), _("Code"), *levels, *figures_names]]
        for row in [*found["rows"], found["total"]]:
            out.append([row["name"], row["unit_id"], *cells(row)])
        return out
    if view == "bad":
        out = list(head)
        for part, label in (("units", _("Unit")), ("windows", _("Window")),
                            ("tags", _("Content tag")), ("hours", _("Hour of day"))):  # fmt: skip
            out.append([])
            out.append([label, _("Code"), *levels, *figures_names])
            out.extend([row["name"], row["key"], *cells(row)] for row in found[part])
        return out
    activity = view in WITH_ACTIVITY and not found.get("channel")
    extra = [_("Service events handled"), _("Active rating rate")] if activity else []
    out = [*head, [_("Name"), _("Code"), *levels, *figures_names, *extra]]
    for row in found["rows"]:
        more = []
        if activity:
            rate = row["active_rate"]
            more = [row["handled"], "" if rate is None else f"{rate * 100:.1f}%"]
        out.append([row["name"], row["key"], *cells(row), *more])
    out.append([_("Total"), "", *cells(found["total"])])
    return out


@bp.get("/analytics/export")
@requires("ratings")
def export():
    from sync_server import exports

    fmt = request.args.get("format", "csv")
    view = request.args.get("view", "units")
    if fmt not in FORMATS or (view != "units" and view not in VIEWS):
        abort(404)
    try:
        found = compute(view, request.args)
    except api.ParamError as exc:
        page = render_template(
            "analytics.html", error=str(exc), figures=None, view="units", views=VIEWS, kept={}
        )
        return page, 400
    found = {**found, "channel": request.args.get("channel", "").strip() or None}  # checked
    name = "hcp-figures" if view == "units" else f"hcp-figures-{view}"
    return exports.response(iter(table(found, view)), fmt, name, _("Figures"))


# --- joining the app -----------------------------------------------------------------------


def init_app(app) -> None:
    """Nothing to join: the blueprint is registered by create_app and its API
    routes are described in sync_server/openapi.py, the one place for them."""
