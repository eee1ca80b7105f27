"""The analytics API's part of the OpenAPI document (sync_server/openapi.py).

/api/v1/analytics/units is described by openapi.py itself (it came first);
the views added with the pre-aggregated figures are described here.
"""

from __future__ import annotations

from sync_server import openapi
from sync_server.openapi import INT, NINT, NSTR, STR, _object, _ref

NUMBER_OR_NULL = {"type": ["number", "null"]}
FIGURES = {
    "by_stars": _object({str(s): INT for s in range(1, 6)}),
    "valid": INT,
    "good": INT,
    "bad": INT,
    "good_rate": NUMBER_OR_NULL,
}
HEAD = {
    "view": STR,
    "root": _object({"id": STR, "name": STR}),
    "since": NSTR,
    "until": NSTR,
    "channel": NSTR,
    "grain": NSTR,
    "good_rate_stars": {"type": "array", "items": INT},
}
SCHEMAS = {
    "Figures": _object(FIGURES),
    "FigureRow": _object(
        {"key": STR, "name": STR, **FIGURES, "handled": NINT, "active_rate": NUMBER_OR_NULL}
    ),
    "ConcentrationRow": _object({"key": STR, "name": STR, **FIGURES}),
    "ViewFigures": _object(
        {**HEAD, "rows": {"type": "array", "items": _ref("FigureRow")}, "total": _ref("Figures")}
    ),
    "BadConcentration": _object(
        {
            **HEAD,
            **{
                part: {"type": "array", "items": _ref("ConcentrationRow")}
                for part in ("units", "windows", "tags", "hours")
            },
        }
    ),
}
COMMON = [
    openapi._query("unit", "whose subtree is counted (default: the caller's own unit or the root)"),
    openapi._query("since", "YYYY-MM-DD, a day in Asia/Shanghai (inclusive)"),
    openapi._query("until", "YYYY-MM-DD, a day in Asia/Shanghai (inclusive)"),
]  # fmt: skip
PATHS = {
    "/api/v1/analytics/{view}": openapi._get(
        "Figures by window, staff, item, channel, tag, hour or over time (view: window | staff "
        "| item | channel | tag | hour | trend), from the pre-aggregated figures; handled and "
        "active_rate (主动评价率) for window, staff and item",
        "ViewFigures",
        [
            openapi._path("view"),
            *COMMON,
            openapi._query("channel", "one channel (views channel and trend only)"),
            openapi._query("grain", "trend: day (default), week or month"),
        ],
        openapi.NOT_FOUND,
    ),
    "/api/v1/analytics/bad": openapi._get(
        "Where 差评 concentrate: the units, windows and content tags with the most (top 10), "
        "and 差评 by hour of day",
        "BadConcentration",
        COMMON,
        openapi.NOT_FOUND,
    ),
}


def register_all() -> None:
    openapi.register(PATHS, SCHEMAS)
