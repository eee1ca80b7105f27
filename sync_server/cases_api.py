"""The JSON API of the bad-review loop, under /api/v1 (described in openapi).

- ``GET /api/v1/cases`` (cases): the cases in the caller's units; filters
  state, unit (its subtree), overdue=1, kind; paged.
- ``GET /api/v1/cases/<id>``: a case with its steps and appeals.
- ``POST /api/v1/cases/<id>/steps`` (cases_work): ``{"action": ..., "note":
  ..., ...}``, the case's next step; ``POST /api/v1/cases/<id>/reopen``
  (cases_review): ``{"reason": ...}``.
- ``POST /api/v1/appeals`` (cases_work): ``{"record_id", "evidence"}``
  (JSON, or a form with an optional `file`); ``GET /api/v1/appeals``
  (cases_review, ``?state=pending|upheld|mistaken|malicious|all``);
  ``POST /api/v1/appeals/<id>/decision`` (cases_review): ``{"outcome",
  "reason"}``.
- ``GET /api/v1/cases/ledger`` (cases): the ledger (since, until, unit).
- ``POST /api/v1/cases/<id>/contact`` (contact): ``{}``; the rater's
  contact for a call-back of the case, scoped by the case's unit, audited.

Errors are ``{"error": "<field>: <problem>"}`` in English; a case outside
the caller's units is a 404 like an unknown one.
"""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, abort, jsonify, make_response, request
from flask_babel import force_locale
from flask_login import current_user

from protocols.levels import is_bad, is_stars, level_name
from protocols.record import MAX_ID, text_problem
from sync_server import (
    api,
    cases,
    cases_ledger,
    cases_workflow,
    contacts,
    csrf,
    openapi,
    queries,
)
from sync_server.auth import requires
from sync_server.cases_pages import (
    CALL_STATES,
    _ledger,
    _rating,
    deadline_state,
    listing,
    now_second,
    sms_reason,
    soon_hours,
)
from sync_server.cases_workflow import CaseError
from sync_server.db import get_engine
from sync_server.openapi import BOOL, INT, NSTR, STR, _object, _ref
from sync_server.schema_cases import case_appeals

bp = Blueprint("cases_api", __name__, url_prefix="/api/v1")


def init_app(app) -> None:
    app.register_blueprint(bp)
    openapi.register(PATHS, SCHEMAS)


@bp.before_request
def _ids_in_range():
    """A case or appeal number past what the id column holds names nothing:
    404, before any database is asked (PostgreSQL's integer ends at 2**31-1)."""
    for value in (request.view_args or {}).values():
        if isinstance(value, int) and not 0 < value <= MAX_ROW_ID:
            abort(404)


MAX_ROW_ID = 2**31 - 1


@bp.errorhandler(api.ParamError)
def _bad_parameter(exc):
    return jsonify(error=str(exc)), 400


@bp.errorhandler(CaseError)
def _refused(exc):
    with force_locale("en"):
        return jsonify(error=str(exc)), 400


def _body() -> dict:
    if not request.is_json:
        raise CaseError("body", "must be JSON (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise CaseError("body", "must be a JSON object")
    return body


def public_case(case: dict, now: str, soon: float, names=None) -> dict:
    item = dict(case)
    item["reason_owed"] = bool(item["reason_owed"])
    item["unit_name"] = (names or {}).get(case["unit_id"]) if case["unit_id"] else None
    item["deadline_state"] = deadline_state(case, now, soon)
    item["on_time"] = cases_ledger.on_time(case)
    return item


@bp.get("/cases")
@requires("cases")
def case_list():
    result = listing(request.args)
    for item in result["items"]:
        item["reason_owed"] = bool(item["reason_owed"])
        item["on_time"] = cases_ledger.on_time(item)
        item["unit_name"] = item["unit_name"] if item["unit_id"] else None
    return jsonify(result)


def _detail(case_id: int) -> dict:
    engine = get_engine()
    with engine.connect() as conn:
        case = cases.get_case(conn, case_id, current_user.scope())
        if case is None:
            abort(404)
        names = cases.unit_names(conn)
        found = {
            "case": public_case(case, now_second(), soon_hours(conn), names),
            "sms_reason": sms_reason(conn, _rating(conn, case["record_id"])),
            "steps": cases.steps_of(conn, case_id),
            "appeals": cases_workflow.appeals(conn, case_appeals.c.case_id == case_id),
        }
    for appeal in found["appeals"]:
        appeal["has_file"] = bool(appeal.pop("file_bytes"))
    return found


@bp.get("/cases/<int:case_id>")
@requires("cases")
def case_detail(case_id):
    return jsonify(_detail(case_id))


@bp.post("/cases/<int:case_id>/contact")
@csrf.exempt  # JSON only: no other site's page can send it
@requires("contact")
def case_contact(case_id):
    """The rater's contact for a call-back of this case (verify, feed back,
    return visit), scoped by the case's unit, audited (contact.reveal)."""
    _body()
    engine = get_engine()
    with engine.connect() as conn:
        case = cases.get_case(conn, case_id, current_user.scope())
    if case is None:
        abort(404)
    if case["state"] not in CALL_STATES:
        raise CaseError(
            "contact",
            "the rater is called back only to verify, feed back or revisit; this case is "
            + case["state"],
        )
    contact = contacts.reveal(engine, case["record_id"], units=None)  # case scope checked
    return jsonify(case_id=case_id, record_id=case["record_id"], contact=contact)


def _change(change, case_id: int):
    try:
        with get_engine().begin() as conn:
            change(conn)
    except LookupError:
        abort(404)
    return jsonify(_detail(case_id))


@bp.post("/cases/<int:case_id>/steps")
@csrf.exempt  # JSON only: no other site's page can send it
@requires("cases_work")
def case_step(case_id):
    values = dict(_body())
    action = values.pop("action", None)
    if not isinstance(action, str):
        raise CaseError("action", "required")
    scope = current_user.scope()
    return _change(
        lambda conn: cases_workflow.take_step(conn, case_id, action, values, scope), case_id
    )


@bp.post("/cases/<int:case_id>/reopen")
@csrf.exempt  # JSON only: no other site's page can send it
@requires("cases_review")
def case_reopen(case_id):
    values = _body()
    return _change(lambda conn: cases_workflow.reopen(conn, case_id, values), case_id)


def _case_for_appeal(record_id) -> int:
    """The case of the rating `record_id` for an appeal; 404 when the rating
    is unknown or outside the caller's units, 400 when it has no case."""
    if not isinstance(record_id, str) or not record_id:
        raise CaseError("record_id", "required")
    # no stored id is longer, or holds a control character or a lone surrogate
    # (which the database driver cannot even send)
    if len(record_id) > MAX_ID or text_problem(record_id):
        raise CaseError("record_id", f"not a record id (1..{MAX_ID} characters of text)")
    unknown = make_response(jsonify(error=f"record_id: unknown record {record_id!r}"), 404)
    scope = current_user.scope()
    engine = get_engine()
    with engine.connect() as conn:
        case = cases.case_of_record(conn, record_id)
    if case is not None:
        if scope is not None and case["unit_id"] not in scope:
            abort(unknown)  # the same answer as a rating that does not exist
        return case["id"]
    rating = queries.get_evaluation(engine, record_id, scope)
    if rating is None:
        abort(unknown)
    stars = rating["stars"]
    if is_stars(stars) and not is_bad(stars):
        raise CaseError(
            "record_id",
            f"a good rating ({level_name(stars)}) has no case; only 差评 can be appealed",
        )
    raise CaseError("record_id", "this rating has no case (a repeat, or voided)")


def _upload(value):
    """An evidence file in JSON: {"name", "type", "base64"}; None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("base64"), str):
        raise CaseError("file", 'must be {"name": ..., "type": ..., "base64": ...}')
    if len(value["base64"]) > cases_workflow.MAX_FILE * 4 // 3 + 4:
        raise CaseError("file", f"larger than {cases_workflow.MAX_FILE} bytes")
    try:
        data = base64.b64decode(value["base64"], validate=True)
    except (binascii.Error, ValueError):
        raise CaseError("file", "base64: not valid base64") from None
    name, content_type = value.get("name"), value.get("type")
    if not isinstance(name, str) or not isinstance(content_type, str):
        raise CaseError("file", "name and type: required text")
    return name, content_type.lower(), data


@bp.post("/appeals")
@csrf.exempt  # JSON only: no other site's page can send it
@requires("cases_work")
def appeal_file():
    values = dict(_body())
    upload = _upload(values.pop("file", None))
    case_id = _case_for_appeal(values.get("record_id"))
    scope = current_user.scope()
    with get_engine().begin() as conn:
        appeal_id = cases_workflow.file_appeal(conn, case_id, values, upload, scope)
    with get_engine().connect() as conn:
        found = cases_workflow.appeals(conn, case_appeals.c.id == appeal_id)[0]
    found["has_file"] = bool(found.pop("file_bytes"))
    return jsonify(found), 201


@bp.get("/appeals")
@requires("cases_review")
def appeal_list():
    api._check_known(request.args, ("state",))
    state = request.args.get("state", "pending")
    if state not in ("pending", *cases_workflow.OUTCOMES, "all"):
        raise api.ParamError("state", "must be pending, upheld, mistaken, malicious or all")
    where = True if state == "all" else case_appeals.c.state == state
    with get_engine().connect() as conn:
        found = cases_workflow.appeals(conn, where)
    for appeal in found:
        appeal["has_file"] = bool(appeal.pop("file_bytes"))
    return jsonify(items=found)


@bp.post("/appeals/<int:appeal_id>/decision")
@csrf.exempt  # JSON only: no other site's page can send it
@requires("cases_review")
def appeal_decision(appeal_id):
    values = _body()
    with get_engine().connect() as conn:
        found = cases_workflow.get_appeal(conn, appeal_id)
    if found is None:
        abort(404)
    return _change(lambda conn: cases_workflow.decide(conn, appeal_id, values), found["case_id"])


@bp.get("/cases/ledger")
@requires("cases")
def ledger():
    api._check_known(request.args, ("unit", "since", "until"))
    rows, period, label = _ledger()
    for row in rows:
        row["reason_owed"] = bool(row["reason_owed"])
    return jsonify(period=period, unit=label, items=rows, totals=cases_ledger.totals(rows))


# --- the description ---------------------------------------------------------------------

NBOOL = {"type": ["boolean", "null"]}
CASE = {
    "id": INT,
    "record_id": STR,
    "unit_id": NSTR,
    "unit_name": NSTR,
    "assigned_by": STR,
    "state": {"type": "string", "enum": list(cases.STATES)},
    "kind": NSTR,
    "deadline_kind": NSTR,
    "due_at": NSTR,
    "deadline_state": NSTR,
    "on_time": NBOOL,
    "stars": INT,
    "effective_at": STR,
    "item_code": NSTR,
    "window_id": NSTR,
    "staff_id": NSTR,
    "reason_owed": BOOL,
    "reason": NSTR,
    "problem": NSTR,
    "visit_verdict": NSTR,
    "appeal_state": NSTR,
    "reopened": INT,
    "created_at": STR,
    "verified_at": NSTR,
    "classified_at": NSTR,
    "rectified_at": NSTR,
    "fed_back_at": NSTR,
    "visited_at": NSTR,
    "closed_at": NSTR,
    "updated_at": STR,
}
APPEAL = {
    "id": INT,
    "case_id": INT,
    "record_id": STR,
    "unit_id": NSTR,
    "evidence": STR,
    "file_name": NSTR,
    "file_type": NSTR,
    "has_file": BOOL,
    "filed_by": STR,
    "filed_at": STR,
    "state": STR,
    "decided_by": NSTR,
    "decided_at": NSTR,
    "decision_reason": NSTR,
}
STEP = {
    "id": INT,
    "case_id": INT,
    "action": STR,
    "from_state": NSTR,
    "to_state": STR,
    "actor": STR,
    "role": STR,
    "at": STR,
    "note": NSTR,
    "detail": {"type": ["object", "null"]},
}
LEDGER_CASE = {
    **{k: v for k, v in CASE.items() if k != "deadline_state"},
    "latest_note": NSTR,
    "overdue": BOOL,
}
SCHEMAS = {
    "Case": _object(CASE),
    "CasePage": _object(
        {
            "items": {"type": "array", "items": _ref("Case")},
            "page": INT,
            "per_page": INT,
            "total": INT,
        }  # fmt: skip
    ),
    "CaseStep": _object(STEP),
    "CaseAppeal": _object(APPEAL),
    "CaseDetail": _object(
        {
            "case": _ref("Case"),
            # the reason the rater sent by SMS after a 差评 given by SMS (never in the rating)
            "sms_reason": NSTR,
            "steps": {"type": "array", "items": _ref("CaseStep")},
            "appeals": {"type": "array", "items": _ref("CaseAppeal")},
        }
    ),
    "CaseContact": _object({"case_id": INT, "record_id": STR, "contact": NSTR}),
    "CaseAppealList": _object({"items": {"type": "array", "items": _ref("CaseAppeal")}}),
    "CaseLedger": _object(
        {
            "period": STR,
            "unit": STR,
            "items": {"type": "array", "items": _object(LEDGER_CASE)},
            "totals": _object(
                {
                    k: INT
                    for k in (
                        "cases",
                        "voided",
                        "rectified",
                        "on_time",
                        "overdue",
                        "visited",
                        "satisfied",
                        "closed",
                    )  # fmt: skip
                }
            ),
        }
    ),
}


def _id_path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": INT}


NOT_FOUND = openapi.NOT_FOUND
ERRORS = openapi.ERRORS
Q = openapi._query


def _post(summary: str, body: dict, schema: str, status: str = "200") -> dict:
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object", "properties": body}}},
            },
            "responses": {status: openapi._json(schema, "OK"), **ERRORS, **NOT_FOUND},
        }
    }


PATHS = {
    "/api/v1/cases": openapi._get(
        "差评 cases in the caller's units, newest first",
        "CasePage",
        [
            Q("state", "one of " + ", ".join(cases.STATES)),
            Q("unit", "only this unit's subtree"),
            Q("overdue", "1: only cases whose deadline passed before rectification"),
            Q("kind", "one of " + ", ".join(cases.KINDS)),
            *openapi.PAGING,
        ],
        NOT_FOUND,
    ),
    "/api/v1/cases/{case_id}": openapi._get(
        "A case with its steps and appeals", "CaseDetail", [_id_path("case_id")], NOT_FOUND
    ),
    "/api/v1/cases/{case_id}/steps": _post(
        "The case's next step: verify (note, reason, problem), classify (kind, due_at), "
        "rectify, feed_back, visit (verdict), close; each with a note",
        {
            "action": STR,
            "note": STR,
            "reason": STR,
            "problem": STR,
            "kind": STR,
            "due_at": STR,
            "verdict": STR,
        },  # fmt: skip
        "CaseDetail",
    ),
    "/api/v1/cases/{case_id}/contact": _post(
        "The rater's contact, for a call-back of the case (verify, feed back, return "
        "visit): the case's unit (and those above it) and supervisors; audited",
        {},
        "CaseContact",
    ),
    "/api/v1/cases/{case_id}/reopen": _post(
        "A supervisor reopens a closed case with a reason", {"reason": STR}, "CaseDetail"
    ),
    "/api/v1/appeals": {
        **openapi._get(
            "Appeals (复核纠正), newest first",
            "CaseAppealList",
            [Q("state", "pending (default), upheld, mistaken, malicious or all")],
        ),
        **_post(
            "The case's unit contests a 差评 with evidence and optionally a file "
            '({"name", "type", "base64"}: PDF, JPEG, PNG or text, at most 2 MiB)',
            {"record_id": STR, "evidence": STR, "file": {"type": "object"}},
            "CaseAppeal",
            "201",
        ),
    },
    "/api/v1/appeals/{appeal_id}/decision": _post(
        "A supervisor decides an appeal: upheld, mistaken or malicious (the last two void "
        "the rating), with a reason",
        {"outcome": STR, "reason": STR},
        "CaseDetail",
    ),
    "/api/v1/cases/ledger": openapi._get(
        "The ledger (台账) of complex cases, with totals",
        "CaseLedger",
        [
            Q("unit", "only this unit's subtree"),
            Q("since", "YYYY-MM-DD (UTC), cases opened from"),
            Q("until", "YYYY-MM-DD (UTC), cases opened until"),
        ],
        NOT_FOUND,
    ),
}
for _path_name in (
    "/api/v1/cases/{case_id}/steps",
    "/api/v1/cases/{case_id}/reopen",
    "/api/v1/cases/{case_id}/contact",
):
    PATHS[_path_name]["post"]["parameters"] = [_id_path("case_id")]
PATHS["/api/v1/appeals/{appeal_id}/decision"]["post"]["parameters"] = [_id_path("appeal_id")]
