"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

tests/test_openapi.py checks that every /api/v1 route is described here and
validates real answers of each against these schemas. Schemas are plain JSON
Schema (the subset sync_server/schema.py checks); every object that carries
ratings lists its properties with additionalProperties false, so a field that
must never leave (a rater's contact, a signature) fails the test if it does.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from protocols.levels import CHANNELS

bp = Blueprint("openapi", __name__)

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NSTR = {"type": ["string", "null"]}
NINT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict, required=None, extra=False) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": extra,
    }


EVALUATION = {
    "id": STR,
    "device_id": NSTR,
    "seq": NINT,
    "stars": INT,
    "channel": {"type": "string", "enum": list(CHANNELS)},
    "tags": {"type": "array", "items": STR},
    "content_version": NSTR,
    "comment": NSTR,
    "case_no": NSTR,
    "service_no": NSTR,
    "item_code": NSTR,
    "window_id": NSTR,
    "staff_id": NSTR,
    "org_id": NSTR,
    "rated_at": STR,
    "clock": STR,
    "boot_id": NSTR,
    "uptime_ms": NINT,
    "origin": STR,
    "attempt": INT,
    "follows": NSTR,
    "case_staff_id": NSTR,
    "case_org_id": NSTR,
    "handled_at": NSTR,
    "client": NSTR,
    "entered_by": NSTR,
    "entered_at": NSTR,
    "card_date": NSTR,
    "received_at": STR,
    "effective_at": STR,
    "time_source": STR,
    "excluded": BOOL,
    "reason_owed": BOOL,
    # a repeat of a service event rated already: the id of the rating that counts
    "repeat_of": NSTR,
    "level": NSTR,
    "bad": {"type": ["boolean", "null"]},
}
NUMBER_OR_NULL = {"type": ["number", "null"]}
FIGURES = {
    "by_stars": _object({str(s): INT for s in range(1, 6)}),
    "valid": INT,
    "good": INT,
    "bad": INT,
    "good_rate": NUMBER_OR_NULL,
}
FIGURES_HEAD = {
    "view": STR,
    "root": _object({"id": STR, "name": STR}),
    "since": NSTR,
    "until": NSTR,
    "channel": NSTR,
    "grain": NSTR,
    "good_rate_stars": {"type": "array", "items": INT},
}
SCHEMAS = {
    "Error": _object({"error": STR}),
    "Evaluation": _object(EVALUATION),
    "EvaluationDetail": _object(
        {**EVALUATION, "unit": NSTR, "window_unit": NSTR, "staff_unit": NSTR, "has_contact": BOOL}
    ),
    "EvaluationPage": _object(
        {
            "items": {"type": "array", "items": _ref("Evaluation")},
            "page": INT,
            "per_page": INT,
            "total": INT,
        }
    ),
    "Summary": _object(
        {
            "total": INT,
            "by_stars": _object({str(s): INT for s in range(1, 6)}),
            "good": INT,
            "bad": INT,
            "good_rate": {"type": ["number", "null"]},
            "excluded": INT,
            "repeats": INT,  # later ratings of a service event rated already: not counted
        }
    ),
    "Contact": _object({"record_id": STR, "contact": NSTR}),
    "UnitFigures": _object(
        {
            "unit_id": STR,
            "name": STR,
            "by_stars": _object({str(s): INT for s in range(1, 6)}),
            "valid": INT,
            "good": INT,
            "bad": INT,
            "good_rate": {"type": ["number", "null"]},
        }
    ),
    "FiguresByUnit": _object(
        {
            "root": _object({"id": STR, "name": STR}),
            "since": NSTR,
            "until": NSTR,
            "good_rate_stars": {"type": "array", "items": INT},
            "rows": {"type": "array", "items": _ref("UnitFigures")},
            "total": _ref("UnitFigures"),
        }
    ),
    # the analytics (sync_server/analytics.py, from the pre-aggregated figures)
    "Figures": _object(FIGURES),
    "FigureRow": _object(
        {"key": STR, "name": STR, **FIGURES, "handled": NINT, "active_rate": NUMBER_OR_NULL}
    ),
    "ConcentrationRow": _object({"key": STR, "name": STR, **FIGURES}),
    "ViewFigures": _object(
        {
            **FIGURES_HEAD,
            "rows": {"type": "array", "items": _ref("FigureRow")},
            "total": _ref("Figures"),
        }
    ),
    "BadConcentration": _object(
        {
            **FIGURES_HEAD,
            **{
                part: {"type": "array", "items": _ref("ConcentrationRow")}
                for part in ("units", "windows", "tags", "hours")
            },
        }
    ),
    "QuarantinePage": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {
                        "qid": INT,
                        "received_at": STR,
                        "topic": STR,
                        "device_id": NSTR,
                        "record_id": NSTR,
                        "reason": STR,
                        "payload": STR,
                        "payload_bytes": NINT,
                        "payload_sha256": NSTR,
                    }
                ),
            },
            "page": INT,
            "per_page": INT,
            "total": INT,
            "dropped": INT,
        }
    ),
    # a device's completeness fields are described in docs/operator-guide.md
    "DeviceList": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {
                        "device_id": STR,
                        "kind": STR,
                        "name": NSTR,
                        "org_id": NSTR,
                        "window_id": NSTR,
                    },
                    extra=True,
                ),
            }
        }
    ),
    "DeviceDays": _object({"device_id": STR, "days": {"type": "array"}}, extra=True),
    "PfMap": _object({"items": {"type": "array"}, "inverse": {"type": "array"}}),
    "DeviceTags": _object(
        {
            "content_version": STR,
            "tags": {"type": "array", "items": {"type": "array", "minItems": 3, "maxItems": 3}},
        },
        required=[],
    ),
    "UnitList": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {"id": STR, "name": STR, "kind": STR, "parent": NSTR, "retired_at": NSTR}
                ),
            }
        }
    ),
    "AuditPage": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {
                        "id": INT,
                        "at": STR,
                        "actor": STR,
                        "role": STR,
                        "address": NSTR,
                        "action": STR,
                        "target": NSTR,
                        "before": {},
                        "after": {},
                    }
                ),
            },
            "page": INT,
            "per_page": INT,
            "total": INT,
        }
    ),
}


def _json(schema: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


ERRORS = {
    "400": _json("Error", "a bad parameter or body: `<param>: <problem>`"),
    "401": _json("Error", "no session or token, or a refused token"),
    "403": _json("Error", "the role may not do this"),
}


def _query(name: str, description: str, schema=STR) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": STR}


PAGING = [_query("page", "1.. (default 1)", INT), _query("per_page", "1..500 (default 50)", INT)]
FILTERS = [
    _query(name, f"only ratings with this {name}")
    for name in ("device_id", "window_id", "staff_id", "org_id", "channel", "case_no")
] + [
    _query("stars", "levels, e.g. 1,2"),
    _query("bad", "1: 差评 only"),
    _query(
        "since",
        "YYYY-MM-DD: a local day in Asia/Shanghai, from its first second (00:00:00 local = "
        "16:00:00Z the day before); or YYYY-MM-DDTHH:MM:SSZ: a UTC instant; included",
    ),
    _query(
        "until",
        "YYYY-MM-DD: a local day in Asia/Shanghai, to its last second (23:59:59 local = "
        "15:59:59Z); or YYYY-MM-DDTHH:MM:SSZ: a UTC instant; included",
    ),
]


def _get(summary: str, schema: str, params=(), extra=None) -> dict:
    responses = {"200": _json(schema, "OK"), **ERRORS}
    responses.update(extra or {})
    return {"get": {"summary": summary, "parameters": list(params), "responses": responses}}


NOT_FOUND = {"404": _json("Error", "unknown, or outside the caller's units")}
# the analytics take local days only: figures are kept by the local day of each rating
DAY = (
    "YYYY-MM-DD only: a local day in Asia/Shanghai, included (ratings by the local day of "
    "their time; a UTC time is refused)"
)
FIGURES_FILTERS = [
    _query("unit", "whose subtree is counted (default: the caller's own unit or the root)"),
    _query("since", DAY),
    _query("until", DAY),
    _query("channel", "only the ratings of this channel (any view)"),
]

PATHS = {
    "/api/v1/evaluations": _get(
        "Ratings, newest first (unit-scoped roles: their units only)",
        "EvaluationPage",
        FILTERS + PAGING,
    ),
    "/api/v1/evaluations/summary": _get("Counts per level, 好评, 差评, 好评率", "Summary", FILTERS),
    "/api/v1/evaluations/{record_id}": _get(
        "One rating and the unit it belongs to (in its time)",
        "EvaluationDetail",
        [_path("record_id")],
        NOT_FOUND,
    ),
    "/api/v1/contacts": {
        "post": {
            "summary": "Reveal a rater's contact (supervisors, unit managers); audited",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _object({"record_id": STR})}},
            },
            "responses": {"200": _json("Contact", "OK"), **ERRORS, **NOT_FOUND},
        }
    },
    "/api/v1/quarantine": _get(
        "Quarantined messages, redacted",
        "QuarantinePage",
        [_query("device_id", "one device")] + PAGING,
    ),
    "/api/v1/devices": _get("Devices and their completeness", "DeviceList"),
    "/api/v1/devices/{device_id}/days": _get(
        "A device's completeness by day",
        "DeviceDays",
        [_path("device_id"), _query("days", "1..92 (default 14)", INT)],
        NOT_FOUND,
    ),
    "/api/v1/pf-map": {
        **_get("The channel -> provincial pf table in force", "PfMap"),
        "put": {
            "summary": "Replace the pf table (admins)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {"200": _json("PfMap", "OK"), **ERRORS},
        },
    },
    "/api/v1/tags": _get(
        "The content tags in force, as a device config carries them",
        "DeviceTags",
        [_query("mode", "offline (default) or online")],
    ),
    "/api/v1/org/units": _get("The units in the caller's scope", "UnitList"),
    "/api/v1/analytics/units": _get(
        "Counts per level, 差评数 and 好评率 per unit below `unit`, by the unit of each "
        "rating's time; 好评率 over the levels of HCP_GOOD_RATE_STARS",
        "FiguresByUnit",
        FIGURES_FILTERS,
        NOT_FOUND,
    ),
    "/api/v1/analytics/{view}": _get(
        "Figures by window, staff, item, channel, tag, hour or over time (view: window | staff "
        "| item | channel | tag | hour | trend), from the pre-aggregated figures; handled and "
        "active_rate (主动评价率) for window, staff and item",
        "ViewFigures",
        [_path("view"), *FIGURES_FILTERS, _query("grain", "trend: day (default), week or month")],
        NOT_FOUND,
    ),
    "/api/v1/analytics/bad": _get(
        "Where 差评 concentrate: the units, windows and content tags with the most (top 10), "
        "and 差评 by hour of day",
        "BadConcentration",
        FIGURES_FILTERS,
        NOT_FOUND,
    ),
    "/api/v1/audit": _get(
        "The audit log, newest first",
        "AuditPage",
        [_query("action", "e.g. contact.reveal"), _query("target", "e.g. windows:A01")] + PAGING,
    ),
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "hcp collector API",
        "version": "1",
        "description": "Ratings, devices and the organisation of the 好差评 collector. "
        "Authenticate with a session cookie (the web login) or an API token "
        "(`Authorization: Bearer hcp_...`, created by an admin). Errors are "
        '`{"error": "<param>: <problem>"}`.',
    },
    "servers": [{"url": "/"}],
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"},
        },
    },
    "security": [{"bearer": []}, {"session": []}],
    "paths": PATHS,
}


def register(paths: dict, schemas: dict | None = None) -> None:
    """A feature's API routes and schemas join the document (called from its
    init_app; the same paths again are a no-op, so a second app is fine)."""
    for path, item in paths.items():
        if PATHS.get(path, item) != item:
            raise ValueError(f"{path}: described twice, differently")
        PATHS[path] = item
    for name, schema in (schemas or {}).items():
        if SCHEMAS.get(name, schema) != schema:
            raise ValueError(f"schema {name}: described twice, differently")
        SCHEMAS[name] = schema


@bp.get("/api/v1/openapi.json")
def document():
    return jsonify(DOCUMENT)
