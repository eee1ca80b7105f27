"""Registering service events (办件服务记录): the business system tells the
collector of each service as it is handled (issue 10, item 1).

    POST /api/v1/service-events        one event   -> 201 new, 200 the same again
    POST /api/v1/service-events/batch  {"events": [...]} (catching up, bounded)
    GET  /api/v1/service-events        the events in the caller's units (paged)

An API token of the role `clerk` (capability `service_events`) registers for
the units of its subtree only. Registration is idempotent: the same event
again answers 200 with the same id; the same (case_no, service_no) with other
content is a 409 naming the first field that differs. It is never backdated:
handled_at ahead of the collector's clock by more than HCP_EVENT_CLOCK_SKEW_S,
or older than HCP_EVENT_MAX_AGE_HOURS, is refused. Formats and the rules are
in docs/service-events.md; every error is `{"error": "<field>: <problem>"}`.
"""

from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, jsonify, request
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from protocols.record import valid_utc_time
from sync_server import csrf, db, openapi, org, outbox
from sync_server.auth import requires
from sync_server.channels import Periods, bind_earlier, lock_cases, parse_utc, setting
from sync_server.schema_channels import event_ratings, service_events

bp = Blueprint("service_events", __name__, url_prefix="/api/v1")

# the formats (docs/service-events.md); ASCII only: \w and \d take other scripts
FORMATS = {
    "case_no": (
        re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,63}"),
        "must be 4..64 characters of A-Z a-z 0-9 - _, beginning with a letter or digit",
    ),
    "service_no": (
        re.compile(r"[A-Za-z0-9_-]{1,32}"),
        "must be 1..32 characters of A-Z a-z 0-9 - _",
    ),
    "item_code": (
        re.compile(r"[A-Z0-9]{8,64}"),
        "must be 8..64 characters of A-Z 0-9 (the 事项实施编码 of the province's item list)",
    ),
    "unit_id": (org.CODE_PATTERN, "must be 1..64 characters of A-Z a-z 0-9 . _ -"),
    "window_id": (org.CODE_PATTERN, "must be 1..64 characters of A-Z a-z 0-9 . _ -"),
    "staff_id": (org.CODE_PATTERN, "must be 1..64 characters of A-Z a-z 0-9 . _ -"),
    "phone": (re.compile(r"1[0-9]{10}"), "must be a mainland mobile number of 11 digits"),
}
REQUIRED = ("case_no", "service_no", "item_code", "unit_id", "handled_at")
OPTIONAL = ("window_id", "staff_id", "phone")
FIELDS = REQUIRED + OPTIONAL
# compared when the same (case_no, service_no) comes again
COMPARED = ("item_code", "unit_id", "window_id", "staff_id", "handled_at")
SOURCES = ("api", "window_pc", "clerk", "demo")
MAX_VALUE = 64


class EventError(ValueError):
    """A registration refused; str() is "<field>: <problem>", `status` the HTTP code."""

    def __init__(self, field: str, problem: str, status: int = 400):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.status = status


def check_fields(body) -> dict:
    """The event's fields, checked for form (not yet against the store)."""
    if not isinstance(body, dict):
        raise EventError("body", "must be a JSON object")
    for key in body:
        if key not in FIELDS:
            raise EventError(str(key)[:40], "unknown field")
    event = {}
    for name in FIELDS:
        value = body.get(name)
        if value is None:
            if name in REQUIRED:
                raise EventError(name, "is required")
            continue
        if not isinstance(value, str):
            raise EventError(name, "must be a string, got " + type(value).__name__)
        if len(value) > MAX_VALUE:
            raise EventError(name, f"longer than {MAX_VALUE} characters")
        if name == "handled_at":
            if not valid_utc_time(value):
                raise EventError(name, "must be UTC time as YYYY-MM-DDTHH:MM:SSZ")
        elif not FORMATS[name][0].fullmatch(value):
            raise EventError(name, FORMATS[name][1])
        event[name] = value
    return event


def _check_time(handled_at: str, now: dt.datetime) -> None:
    moment = parse_utc(handled_at)
    skew = int(setting("HCP_EVENT_CLOCK_SKEW_S"))
    if moment > now + dt.timedelta(seconds=skew):
        raise EventError(
            "handled_at", f"is in the future (more than {skew} s ahead of the collector's clock)"
        )
    hours = int(setting("HCP_EVENT_MAX_AGE_HOURS"))
    if moment < now - dt.timedelta(hours=hours):
        raise EventError(
            "handled_at",
            f"is more than {hours} hours ago: service events are registered as they happen, "
            "never backdated",
        )


def _check_unit(conn, unit_id: str) -> None:
    unit = org.get(conn, "units", unit_id)
    if unit is None or unit["retired_at"]:
        raise EventError("unit_id", f"unknown unit {unit_id!r}")


def _check_org(conn, event: dict) -> None:
    """The unit exists (not retired); the window and the staff member were in
    it (or in a unit below it) when the service was handled."""
    below = None
    for field, what in (("window_id", "windows"), ("staff_id", "staff")):
        code = event.get(field)
        if code is None:
            continue
        if org.get(conn, what, code) is None:
            raise EventError(field, f"unknown {what[:-1] if what == 'windows' else what} {code!r}")
        placed = org.placed_in(conn, what, code, event["handled_at"])
        if below is None:
            below = org.subtree_ids(conn, event["unit_id"])
        if placed not in below:
            raise EventError(
                field, f"{code!r} was not in unit {event['unit_id']!r} at {event['handled_at']}"
            )


def _same(existing: dict, event: dict) -> str | None:
    """The first field in which a repeat differs from the stored event, or None."""
    for name in COMPARED:
        if existing[name] != event.get(name):
            return name
    if (existing["phone_ref"] is not None) != ("phone" in event):
        return "phone"
    return None


def public(event: dict) -> dict:
    """An event as the API shows it: never the phone, only whether one was given."""
    item = {k: v for k, v in event.items() if k != "phone_ref"}
    item["has_phone"] = event["phone_ref"] is not None
    return item


def _keep_phone(conn, event: dict, phone: str) -> str:
    """The applicant's phone goes to the citizen feature, which keeps it
    encrypted apart and gives back a reference."""
    from sync_server import citizen

    keep = getattr(citizen, "keep_event_phone", None)
    if keep is None:
        raise EventError("phone", "this collector does not keep applicants' phones yet")
    return keep(conn, event, phone)


def register(conn, body, source: str, registered_by: str | None, scope=None, now=None):
    """Register one service event in the caller's transaction: (event, created).

    `scope`: the units the caller may register for (None: all). EventError
    names the field (status 400 malformed, 403 outside the scope, 409 a
    different event under the same case and service number)."""
    if source not in SOURCES:
        raise ValueError("source: must be one of " + ", ".join(SOURCES))
    event = check_fields(body)
    _check_unit(conn, event["unit_id"])
    if scope is not None and event["unit_id"] not in scope:
        raise EventError("unit_id", f"{event['unit_id']!r} is outside your units", 403)
    lock_cases(conn, [(event["case_no"], event["service_no"])])
    e = service_events.c
    existing = conn.execute(
        select(service_events).where(
            e.case_no == event["case_no"], e.service_no == event["service_no"]
        )
    ).first()
    if existing is not None:
        existing = dict(existing._mapping)
        differs = _same(existing, event)
        if differs is not None:
            raise EventError(
                differs,
                f"differs from the event registered for case {event['case_no']} "
                f"service {event['service_no']}",
                409,
            )
        return existing, False
    now = now or dt.datetime.now(dt.UTC)
    _check_time(event["handled_at"], now)
    _check_org(conn, event)
    phone = event.pop("phone", None)
    row = {
        **{name: event.get(name) for name in COMPARED},
        "case_no": event["case_no"],
        "service_no": event["service_no"],
        "registered_at": db.utc_now(),
        "source": source,
        "registered_by": (registered_by or "")[:80] or None,
        "rating_id": None,
        "appended_id": None,
        "phone_ref": None,
    }
    row["id"] = conn.execute(service_events.insert().values(**row)).inserted_primary_key[0]
    if phone is not None:
        row["phone_ref"] = _keep_phone(conn, dict(row), phone)
        conn.execute(
            service_events.update().where(e.id == row["id"]).values(phone_ref=row["phone_ref"])
        )
    bind_earlier(conn, row)  # ratings of it that came before it
    outbox.event_registered(conn, dict(row))
    return row, True


def answer(conn, event: dict, periods: Periods | None = None) -> dict:
    item = public(event)
    item["rate_until"] = (periods or Periods(conn)).end(event["handled_at"]).isoformat()
    return item


def register_one(engine, body, source, registered_by, scope=None, now=None):
    """register() in its own transaction: (answer, created). Two systems
    registering one new event at once: the loser's insert fails on the unique
    index and it is decided again against the winner's row."""
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                event, created = register(conn, body, source, registered_by, scope, now)
                return answer(conn, event), created
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def register_batch(engine, items, source, registered_by, scope=None, now=None) -> list[dict]:
    """Several events, each decided alone (a bad one never blocks the others),
    all stored in one transaction. One result per item, in order:
    {"index", "status", "event"} or {"index", "status", "error"}."""
    limit = int(setting("HCP_EVENT_BATCH_MAX"))
    if not isinstance(items, list) or not items:
        raise EventError("events", "must be a non-empty list")
    if len(items) > limit:
        raise EventError("events", f"more than {limit} events in one batch")
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                # every pair's lock at once, in one order (two batches never deadlock)
                lock_cases(
                    conn,
                    [
                        (body["case_no"], body["service_no"])
                        for body in items
                        if isinstance(body, dict)
                        and isinstance(body.get("case_no"), str)
                        and isinstance(body.get("service_no"), str)
                        and FORMATS["case_no"][0].fullmatch(body["case_no"])
                        and FORMATS["service_no"][0].fullmatch(body["service_no"])
                    ],
                )
                results = []
                for index, body in enumerate(items):
                    try:
                        event, created = register(conn, body, source, registered_by, scope, now)
                    except EventError as exc:
                        results.append({"index": index, "status": exc.status, "error": str(exc)})
                        continue
                    item = answer(conn, event)
                    results.append({"index": index, "status": 201 if created else 200, **item})
                return results
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def listing(engine, scope, case_no=None, page=1, per_page=50) -> dict:
    e = service_events.c
    conditions = []
    if scope is not None:
        conditions.append(e.unit_id.in_(sorted(scope)))
    if case_no:
        conditions.append(e.case_no == case_no)
    with engine.connect() as conn:
        total = conn.execute(
            select(func.count()).select_from(service_events).where(*conditions)
        ).scalar()
        rows = conn.execute(
            select(service_events)
            .where(*conditions)
            .order_by(e.handled_at.desc(), e.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
        periods = Periods(conn)
        items = [answer(conn, dict(row._mapping), periods) for row in rows]
        r = event_ratings.c
        ties: dict = {item["id"]: [] for item in items}
        if ties:
            for tie in conn.execute(
                select(r.event_id, r.rating_id, r.role, r.late)
                .where(r.event_id.in_(list(ties)))
                .order_by(r.at, r.rating_id)
            ):
                ties[tie.event_id].append(
                    {"rating_id": tie.rating_id, "role": tie.role, "late": bool(tie.late)}
                )
        for item in items:
            item["ratings"] = ties[item["id"]]
    return {"items": items, "page": page, "per_page": per_page, "total": total}


# --- the API -----------------------------------------------------------------------


def _json_body():
    if not request.is_json:
        raise EventError("body", "must be JSON (Content-Type: application/json)", 415)
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the JSON decoder's answer to [[[[...]]]]
        body = None
    if body is None:
        raise EventError("body", "not valid JSON")
    return body


@bp.errorhandler(EventError)
def _refused(exc: EventError):
    return jsonify(error=str(exc)), exc.status


@bp.post("/service-events")
@csrf.exempt  # JSON only: no other site's page can send it
@requires("service_events")
def register_event():
    answer_body, created = register_one(
        db.get_engine(), _json_body(), "api", current_user.actor, current_user.scope()
    )
    return jsonify(answer_body), 201 if created else 200


@bp.post("/service-events/batch")
@csrf.exempt
@requires("service_events")
def register_events():
    body = _json_body()
    if not isinstance(body, dict) or set(body) != {"events"}:
        raise EventError("body", 'must be {"events": [...]}')
    results = register_batch(
        db.get_engine(), body["events"], "api", current_user.actor, current_user.scope()
    )
    return jsonify(results=results)


@bp.get("/service-events")
@requires("service_events")
def list_events():
    from sync_server.api import ParamError, _check_known, parse_paging, text_param

    try:
        _check_known(request.args, ("case_no", "page", "per_page"))
        page, per_page = parse_paging(request.args)
        case_no = text_param(request.args, "case_no")
    except ParamError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(listing(db.get_engine(), current_user.scope(), case_no, page, per_page))


# --- OpenAPI -----------------------------------------------------------------------

S, NS = openapi.STR, openapi.NSTR
EVENT_IN = openapi._object(
    {
        "case_no": S,
        "service_no": S,
        "item_code": S,
        "unit_id": S,
        "window_id": S,
        "staff_id": S,
        "handled_at": S,
        "phone": S,
    },
    required=list(REQUIRED),
)
EVENT_FIELDS = {
    "id": openapi.INT,
    "case_no": S,
    "service_no": S,
    "item_code": S,
    "unit_id": S,
    "window_id": NS,
    "staff_id": NS,
    "handled_at": S,
    "registered_at": S,
    "source": S,
    "registered_by": NS,
    "rating_id": NS,
    "appended_id": NS,
    "has_phone": openapi.BOOL,
    "rate_until": S,
}
SCHEMAS = {
    "ServiceEventIn": EVENT_IN,
    "ServiceEvent": openapi._object(EVENT_FIELDS),
    "ServiceEventListed": openapi._object(
        {
            **EVENT_FIELDS,
            # every rating tied to the event: the one that counts (first), the
            # appended one, repeats; late: made after the rating period
            "ratings": {
                "type": "array",
                "items": openapi._object(
                    {
                        "rating_id": S,
                        "role": {"type": "string", "enum": ["first", "appended", "repeat"]},
                        "late": openapi.BOOL,
                    }
                ),
            },
        }
    ),
    "ServiceEventPage": openapi._object(
        {
            "items": {"type": "array", "items": openapi._ref("ServiceEventListed")},
            "page": openapi.INT,
            "per_page": openapi.INT,
            "total": openapi.INT,
        }
    ),
    "ServiceEventResults": openapi._object(
        {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": openapi.INT,
                        "status": openapi.INT,
                        "error": S,
                        **EVENT_FIELDS,
                    },
                    "required": ["index", "status"],
                    "additionalProperties": False,
                },
            }
        }
    ),
}
CONFLICT = {
    "409": openapi._json("Error", "the same case and service number with other content"),
    "415": openapi._json("Error", "the body is not JSON"),
}
PATHS = {
    "/api/v1/service-events": {
        **openapi._get(
            "Service events in the caller's units, newest first",
            "ServiceEventPage",
            [openapi._query("case_no", "one case")] + openapi.PAGING,
        ),
        "post": {
            "summary": "Register a service event as it is handled (idempotent; never backdated)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": openapi._ref("ServiceEventIn")}},
            },
            "responses": {
                "200": openapi._json("ServiceEvent", "the same event, registered already"),
                "201": openapi._json("ServiceEvent", "registered"),
                **openapi.ERRORS,
                **CONFLICT,
            },
        },
    },
    "/api/v1/service-events/batch": {
        "post": {
            "summary": "Register up to HCP_EVENT_BATCH_MAX events, each decided alone",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": openapi._object(
                            {"events": {"type": "array", "items": openapi._ref("ServiceEventIn")}}
                        )
                    }
                },
            },
            "responses": {
                "200": openapi._json("ServiceEventResults", "one result per event, in order"),
                **openapi.ERRORS,
                "415": CONFLICT["415"],
            },
        }
    },
}


def init_app(app) -> None:
    app.register_blueprint(bp)
    openapi.register(PATHS, SCHEMAS)
