"""The first analytics page: figures by org subtree, and their export.

For a unit (the user's own for unit-scoped roles, else the district or any
unit asked for) and a period: one row per unit directly below it, each
counting every rating of its whole subtree (the unit of each rating's time,
`org.resolved_unit`), plus the unit's own row (ratings placed on it directly)
and a total. Per row: counts per level, valid ratings, 好评, 差评数 and 好评率.

好评率 = ratings at the levels of `HCP_GOOD_RATE_STARS` / valid ratings
(ratings excluded after review are not valid); the default (5, 4, 3) is
(非常满意+满意+基本满意)/valid. 差评 are levels 1 and 2.

These figures are computed from the evaluations each time (a correlated
subquery per rating for its unit). Pre-aggregated tables kept by ingest come
with the rest of issue 8; until then this page is for districts of Linzi's
size, not for ten million ratings.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, jsonify, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import and_, func, select
from werkzeug.datastructures import MultiDict

from protocols.levels import BAD_STARS, STARS
from sync_server import api, db, org
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.org_pages import FORMATS
from sync_server.queries import _conditions, good_rate_stars
from sync_server.web import LEVEL_LABELS

bp = Blueprint("analytics", __name__)

FILTERS = ("since", "until", "channel")


def _row(name, unit_id, counts, rate_stars) -> dict:
    valid = sum(counts.values())
    good = sum(counts[s] for s in STARS if s not in BAD_STARS)
    bad = sum(counts[s] for s in BAD_STARS)
    rated_good = sum(counts[s] for s in rate_stars)
    return {
        "unit_id": unit_id,
        "name": name,
        "by_stars": {str(s): counts[s] for s in STARS},
        "valid": valid,
        "good": good,
        "bad": bad,
        "good_rate": round(rated_good / valid, 4) if valid else None,
    }


def by_subtree(engine, root_id: str, filters: dict, rate_stars=(5, 4, 3)) -> dict:
    """Figures of `root_id`'s subtree, one row per child subtree (see above)."""
    ev = db.evaluations.c
    unit = org.resolved_unit().label("unit")
    with engine.connect() as conn:
        units = {u["id"]: u for u in org.units(conn, include_retired=True)}
        if root_id not in units:
            raise KeyError(root_id)
        children = sorted(
            (u for u in units.values() if u["parent"] == root_id), key=lambda u: u["id"]
        )
        # each unit of the subtree -> the child (or the root itself) it counts under
        under = {root_id: root_id}
        for child in children:
            for unit_id in org.subtree_ids(conn, child["id"]):
                under[unit_id] = child["id"]
        query = (
            select(unit, ev.stars, func.count())
            .where(and_(ev.excluded.is_(False), *_conditions(filters)))
            .group_by(unit, ev.stars)
        )
        if units[root_id]["parent"] is not None:
            # below the top the candidates are few; at the top every rating is one
            query = query.where(org.in_units(set(under)))
        counts = {key: dict.fromkeys(STARS, 0) for key in [c["id"] for c in children] + [root_id]}
        for unit_id, stars, count in conn.execute(query):
            if stars in STARS and unit_id in under:  # not placed in the tree: not counted
                counts[under[unit_id]][stars] += count
    rows = [_row(c["name"], c["id"], counts[c["id"]], rate_stars) for c in children]
    itself = _("%(name)s itself", name=units[root_id]["name"])
    rows.append(_row(itself, root_id, counts[root_id], rate_stars))
    total = {s: sum(counts[key][s] for key in counts) for s in STARS}
    return {
        "root": {"id": root_id, "name": units[root_id]["name"]},
        "since": filters.get("since"),
        "until": filters.get("until"),
        "good_rate_stars": list(rate_stars),
        "rows": rows,
        "total": _row(_("Total"), root_id, total, rate_stars),
    }


def _root() -> str:
    """The unit asked for (`unit`), which must be inside the user's scope."""
    wanted = request.args.get("unit", "").strip()
    scope = current_user.scope()
    if not wanted:
        if scope is not None:
            return current_user.unit_id
        with get_engine().connect() as conn:
            roots = org.tree(conn)
        return roots[0]["id"] if roots else ""
    if scope is not None and wanted not in scope:
        abort(404)
    return wanted


def _figures():
    api._check_known(request.args, ("unit", "since", "until", "channel", "format"))
    kept = MultiDict([(k, v) for k, v in request.args.items(multi=True) if k in FILTERS])
    filters = api.parse_filters(kept, allowed=FILTERS)
    try:
        return by_subtree(get_engine(), _root(), filters, good_rate_stars())
    except KeyError:
        abort(404)


@bp.get("/analytics")
@requires("ratings")
def page():
    try:
        figures = _figures()
    except api.ParamError as exc:
        return render_template("analytics.html", error=str(exc), figures=None), 400
    return render_template("analytics.html", error=None, figures=figures)


@bp.get("/api/v1/analytics/units")
@requires("ratings")
def api_units():
    try:
        return jsonify(_figures())
    except api.ParamError as exc:
        return jsonify(error=str(exc)), 400


def table(figures) -> list[list]:
    """The layout district offices use: title, period, unit, header, rows, total."""
    period = f"{figures['since'] or '—'} — {figures['until'] or '—'}"
    names = [str(LEVEL_LABELS[s]) for s in (5, 4, 3, 2, 1)]
    figures_names = [_("Valid ratings"), _("Good ratings"), _("Bad ratings"), _("Good rating rate")]
    header = [_("Unit"), _("Code"), *names, *figures_names]
    rows = [
        [_("Figures by unit")],
        [_("Period (UTC)"), period],
        [_("Unit"), f"{figures['root']['name']} ({figures['root']['id']})"],
        [_("Made"), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")],
        header,
    ]
    for row in [*figures["rows"], figures["total"]]:
        rate = "" if row["good_rate"] is None else f"{row['good_rate'] * 100:.1f}%"
        rows.append(
            [
                row["name"],
                row["unit_id"],
                *(row["by_stars"][str(s)] for s in (5, 4, 3, 2, 1)),
                row["valid"],
                row["good"],
                row["bad"],
                rate,
            ]  # fmt: skip
        )
    return rows


@bp.get("/analytics/export")
@requires("ratings")
def export():
    fmt = request.args.get("format", "csv")
    if fmt not in FORMATS:
        abort(404)
    try:
        figures = _figures()
    except api.ParamError as exc:
        return render_template("analytics.html", error=str(exc), figures=None), 400
    rows = table(figures)
    data = org.to_csv(rows) if fmt == "csv" else org.to_xlsx(rows, _("Figures by unit"))
    return Response(
        data,
        mimetype=FORMATS[fmt],
        headers={"Content-Disposition": f"attachment; filename=hcp-figures.{fmt}"},
    )


def init_app(app) -> None:
    """Nav entries and API descriptions (the blueprint is registered by create_app)."""
