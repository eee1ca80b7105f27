"""Rankings and 通报 as JSON: ``GET /api/v1/rankings`` (issue 9).

``?period=`` a month ``YYYY-MM`` or days ``YYYY-MM-DD..YYYY-MM-DD`` (this
month so far by default), ``level=`` unit | town | window | staff | item
(default unit), ``by=`` the figure to order by (default good_rate). The
answer is the period's stored snapshot when there is one, else the figures
computed there and then (``stored`` says which), exactly what /rankings
shows: a session or an API token with the `rankings` capability; a unit
manager (or a token scoped to a unit) gets every unit and town, and the
windows, staff and items of their own subtree only. Errors are
``{"error": "<param>: <problem>"}`` in English.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask_babel import force_locale

from sync_server import api, openapi, rankings_data
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.openapi import INT, NSTR, STR, _object, _ref

bp = Blueprint("rankings_api", __name__, url_prefix="/api/v1")

ROW_KEYS = (
    "id", "name", "unit_id", "valid", "good", "bad", "good_rate", "cases_due",
    "cases_on_time", "on_time_rate", "cases_fed_back", "cases_visited", "visit_rate",
    "events", "events_rated", "active_rate",
)  # fmt: skip
NOTICE_LEVELS = ("unit", "town")


def init_app(app) -> None:
    app.register_blueprint(bp)
    openapi.register(PATHS, SCHEMAS)


@bp.errorhandler(api.ParamError)
def _bad_parameter(exc):
    return jsonify(error=str(exc)), 400


@bp.errorhandler(rankings_data.PeriodError)
def _bad_period(exc):
    return jsonify(error=str(exc)), 400


def _choice(name: str, allowed, default: str) -> str:
    value = request.args.get(name, "").strip() or default
    if value not in allowed:
        raise api.ParamError(name, "must be one of " + ", ".join(allowed))
    return value


def _row(row: dict) -> dict:
    item = {key: row.get(key) for key in ROW_KEYS}
    item["ranks"] = {metric: row["ranks"].get(metric) for metric in rankings_data.METRICS}
    return item


@bp.get("/rankings")
@requires("rankings")
def rankings():
    from sync_server.rankings_pages import default_period, load, visible_rows

    api._check_known(request.args, ("period", "level", "by"))
    level = _choice("level", rankings_data.DIMENSIONS, "unit")
    by = _choice("by", rankings_data.METRICS, "good_rate")
    period = request.args.get("period", "").strip() or default_period()
    with force_locale("en"), get_engine().connect() as conn:
        data = load(conn, period)
    notices = None
    if level in NOTICE_LEVELS:
        notices = {
            "praised": data["notices"][level]["praised"],
            "bottom": data["notices"][level]["bottom"],
            "consecutive": data["consecutive"][level],
        }
    return jsonify(
        period=data["period"],
        first_day=data["first_day"],
        last_day=data["last_day"],
        level=level,
        by=by,
        stored=data["stored"],
        computed_at=data.get("computed_at"),
        good_rate_stars=data["good_rate_stars"],
        items=[_row(row) for row in visible_rows(data, level, by)],
        notices=notices,
    )


# --- the description ---------------------------------------------------------------------

NUM = {"type": ["number", "null"]}
NINT = {"type": ["integer", "null"]}
ROW = {
    "id": STR, "name": STR, "unit_id": NSTR, "valid": INT, "good": INT, "bad": INT,
    "good_rate": NUM, "cases_due": INT, "cases_on_time": INT, "on_time_rate": NUM,
    "cases_fed_back": INT, "cases_visited": INT, "visit_rate": NUM, "events": INT,
    "events_rated": INT, "active_rate": NUM,
    "ranks": _object({metric: NINT for metric in rankings_data.METRICS}),
}  # fmt: skip
BRIEF = {"id": STR, "name": STR, "rank": INT, "good_rate": NUM, "valid": INT}
SCHEMAS = {
    "RankingRow": _object(ROW),
    "RankingNotice": _object(BRIEF),
    "Rankings": _object(
        {
            "period": STR,
            "first_day": STR,
            "last_day": STR,
            "level": {"type": "string", "enum": list(rankings_data.DIMENSIONS)},
            "by": {"type": "string", "enum": list(rankings_data.METRICS)},
            "stored": {"type": "boolean"},
            "computed_at": NSTR,
            "good_rate_stars": {"type": "array", "items": INT},
            "items": {"type": "array", "items": _ref("RankingRow")},
            # null for windows, staff and items: the 通报 names units and towns
            "notices": {
                **_object(
                    {
                        key: {"type": "array", "items": _ref("RankingNotice")}
                        for key in ("praised", "bottom", "consecutive")
                    }
                ),
                "type": ["object", "null"],
            },
        }
    ),
}
Q = openapi._query
PATHS = {
    "/api/v1/rankings": openapi._get(
        "Rankings and 通报 of a period (its stored snapshot, else computed now); unit "
        "managers get every unit and town, and the windows, staff and items of their units",
        "Rankings",
        [
            Q("period", "YYYY-MM or YYYY-MM-DD..YYYY-MM-DD (Beijing days); default this month"),
            Q("level", "one of " + ", ".join(rankings_data.DIMENSIONS) + " (default unit)"),
            Q("by", "order by one of " + ", ".join(rankings_data.METRICS) + " (default good_rate)"),
        ],
    ),
}
