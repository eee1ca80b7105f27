"""The analytics API's part of the OpenAPI document (sync_server/openapi.py).

The views added with the pre-aggregated figures are described here, and so
are the days every filter takes: /api/v1/analytics/units (first described in
openapi.py, which said UTC times were allowed: the analytics never took
them) and the `since`/`until` of the evaluations list and summary, whose
dates are local days like the figures' (sync_server/api.py).
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
DAY = (
    "YYYY-MM-DD only: a local day in Asia/Shanghai, included (ratings by the local day of "
    "their time; a UTC time is refused)"
)
LIST_BOUND = {
    "since": "YYYY-MM-DD: a local day in Asia/Shanghai, from its first second (00:00:00 "
    "local = 16:00:00Z the day before); or YYYY-MM-DDTHH:MM:SSZ: a UTC instant; included",
    "until": "YYYY-MM-DD: a local day in Asia/Shanghai, to its last second (23:59:59 local "
    "= 15:59:59Z); or YYYY-MM-DDTHH:MM:SSZ: a UTC instant; included",
}
COMMON = [
    openapi._query("unit", "whose subtree is counted (default: the caller's own unit or the root)"),
    openapi._query("since", DAY),
    openapi._query("until", DAY),
]  # fmt: skip
CHANNEL = openapi._query("channel", "only the ratings of this channel (any view)")
PATHS = {
    "/api/v1/analytics/{view}": openapi._get(
        "Figures by window, staff, item, channel, tag, hour or over time (view: window | staff "
        "| item | channel | tag | hour | trend), from the pre-aggregated figures; handled and "
        "active_rate (主动评价率) for window, staff and item",
        "ViewFigures",
        [
            openapi._path("view"),
            *COMMON,
            CHANNEL,
            openapi._query("grain", "trend: day (default), week or month"),
        ],
        openapi.NOT_FOUND,
    ),
    "/api/v1/analytics/bad": openapi._get(
        "Where 差评 concentrate: the units, windows and content tags with the most (top 10), "
        "and 差评 by hour of day",
        "BadConcentration",
        [*COMMON, CHANNEL],
        openapi.NOT_FOUND,
    ),
}
UNITS = openapi._get(
    "Counts per level, 差评数 and 好评率 per unit below `unit`, by the unit of each "
    "rating's time; 好评率 over the levels of HCP_GOOD_RATE_STARS",
    "FiguresByUnit",
    [*COMMON, CHANNEL],
    openapi.NOT_FOUND,
)


def register_all() -> None:
    openapi.register(PATHS, SCHEMAS)
    # the days of the analytics and of the evaluations filters, said precisely
    openapi.PATHS["/api/v1/analytics/units"] = UNITS
    for param in openapi.FILTERS:
        if param["name"] in LIST_BOUND:
            param["description"] = LIST_BOUND[param["name"]]
