"""The JSON API under /api/v1 (a session or an API token; roles as in sync_server/auth.py).

A thin blueprint: it checks the query string (`parse_filters`,
`parse_paging`, which the admin pages use too) and answers with what
sync_server/py reads. A bad query parameter is a 400 with
``{"error": "<param>: <problem>"}``.

Evaluations never leave through here with `contact` (confidential, §7) or
`sig`; times are UTC as stored. A `since`/`until` date is a local day in
Asia/Shanghai, as everywhere in the collector (both included); a full
YYYY-MM-DDTHH:MM:SSZ is a UTC instant.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user

from protocols.levels import CHANNELS
from protocols.record import MAX_ID, text_problem, valid_utc_time
from sync_server import completeness, contacts, csrf
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.queries import (
    TEXT_FILTERS,
    device_report,
    get_evaluation,
    good_rate_stars,
    list_evaluations,
    list_quarantine,
    summarize,
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")

FILTERS = TEXT_FILTERS + ("stars", "bad", "since", "until")
PAGING = ("page", "per_page")
IGNORED = ("lang",)  # the language switch works on every URL
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000  # keeps the offset inside what either database takes
MAX_FILTER_TEXT = 64
DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII: \d takes any digit
LOCAL_ZONE = ZoneInfo("Asia/Shanghai")  # the days of every filter and figure


class ParamError(ValueError):
    """A query parameter that cannot be used; str() is the API's error text."""

    def __init__(self, param: str, problem: str):
        super().__init__(f"{param}: {problem}")
        self.param = param


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return bool(text) and all("0" <= ch <= "9" for ch in text)


def text_param(args, name: str) -> str | None:
    """A text parameter any database can be asked about, or None when empty."""
    value = args.get(name, "").strip()
    if not value:
        return None
    if len(value) > MAX_FILTER_TEXT:
        raise ParamError(name, f"longer than {MAX_FILTER_TEXT} characters")
    if text_problem(value):
        raise ParamError(name, text_problem(value))
    return value


def _check_known(args, allowed) -> None:
    for name in args:
        if name not in allowed and name not in IGNORED:
            raise ParamError(name, "unknown parameter")


def _time_bound(args, name: str, end_of_day: bool) -> str | None:
    value = args.get(name, "").strip()
    if not value:
        return None
    if DATE_PATTERN.fullmatch(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise ParamError(name, "not a calendar date") from None
        return local_day_bound(day, end_of_day)
    if valid_utc_time(value):
        return value
    raise ParamError(name, "must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")


def local_day_bound(day: dt.date, end_of_day: bool) -> str:
    """The first (or last) second of a local day, as a stored UTC time."""
    local = dt.time(23, 59, 59) if end_of_day else dt.time()
    try:
        moment = dt.datetime.combine(day, local, tzinfo=LOCAL_ZONE).astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01 starts before UTC's calendar does
        return "0001-01-01T00:00:00Z"
    return moment.replace(tzinfo=None).isoformat() + "Z"


def _stars(args) -> list[int] | None:
    pieces = [p.strip() for value in args.getlist("stars") for p in value.split(",")]
    pieces = [p for p in pieces if p]
    if not pieces:
        return None
    if not all(p in ("1", "2", "3", "4", "5") for p in pieces):
        raise ParamError("stars", "must be integers 1..5")
    return sorted({int(p) for p in pieces})


def parse_filters(args, allowed=FILTERS + PAGING) -> dict:
    """The evaluation filters of a query string; empty values count as absent."""
    _check_known(args, allowed)
    filters: dict = {}
    for name in TEXT_FILTERS:
        value = text_param(args, name)
        if value is None:
            continue
        if name == "channel" and value not in CHANNELS:
            raise ParamError(name, "must be one of " + ", ".join(CHANNELS))
        filters[name] = value
    stars = _stars(args)
    if stars:
        filters["stars"] = stars
    bad = args.get("bad", "").strip()
    if bad not in ("", "0", "1"):
        raise ParamError("bad", "must be 0 or 1")
    if bad == "1":
        filters["bad"] = True
    since = _time_bound(args, "since", end_of_day=False)
    until = _time_bound(args, "until", end_of_day=True)
    if since and until and until < since:
        raise ParamError("until", "is before since")
    if since:
        filters["since"] = since
    if until:
        filters["until"] = until
    return filters


def _number(args, name: str, default: str) -> str:
    """The parameter's ASCII digits without leading zeros ("0" for zero)."""
    text = args.get(name, default).strip() or default
    return (text.lstrip("0") or "0") if _digits(text) else ""


def parse_paging(args) -> tuple[int, int]:
    page = _number(args, "page", "1")
    if page in ("", "0"):
        raise ParamError("page", "must be an integer >= 1")
    if len(page) > len(str(MAX_PAGE)) or int(page) > MAX_PAGE:
        raise ParamError("page", f"must be at most {MAX_PAGE}")
    per_page = _number(args, "per_page", str(DEFAULT_PER_PAGE))
    if not per_page or len(per_page) > 3 or not 1 <= int(per_page) <= MAX_PER_PAGE:
        raise ParamError("per_page", f"must be 1..{MAX_PER_PAGE}")
    return int(page), int(per_page)


@bp.errorhandler(ParamError)
def _bad_parameter(exc: ParamError):
    return jsonify(error=str(exc)), 400


def _scoped(filters: dict) -> dict:
    scope = current_user.scope()
    return filters if scope is None else {**filters, "units": scope}


@bp.get("/evaluations")
@requires("ratings")
def evaluations():
    filters = _scoped(parse_filters(request.args))
    page, per_page = parse_paging(request.args)
    return jsonify(list_evaluations(get_engine(), filters, page, per_page))


@bp.get("/evaluations/summary")
@requires("ratings")
def evaluations_summary():
    filters = _scoped(parse_filters(request.args, allowed=FILTERS))
    return jsonify(summarize(get_engine(), filters, good_rate_stars()))


@bp.get("/evaluations/<path:record_id>")
@requires("ratings")
def evaluation(record_id):
    _check_known(request.args, ())
    item = None
    if len(record_id) <= MAX_ID and not text_problem(record_id):  # a NUL was a 500 (PostgreSQL)
        item = get_evaluation(get_engine(), record_id, current_user.scope())
    if item is None:
        return jsonify(error=f"record_id: unknown record {record_id!r}"), 404
    return jsonify(item)


@bp.post("/contacts")
@csrf.exempt  # JSON only, like PUT /api/v1/pf-map: no other site's page can send it
@requires("contact")
def reveal_contact():
    """The contact left with a rating, on an explicit request; audited."""
    if not request.is_json:
        return jsonify(error="body: must be JSON (Content-Type: application/json)"), 415
    body = request.get_json(silent=True)
    record_id = body.get("record_id") if isinstance(body, dict) else None
    if not isinstance(record_id, str) or not record_id:
        return jsonify(error='body: must be {"record_id": "<id>"}'), 400
    # no stored id is longer, or holds a control character or a lone surrogate
    # (which the database driver cannot even send: a 500 before this check)
    if len(record_id) > MAX_ID or text_problem(record_id):
        return jsonify(error=f"record_id: not a record id (1..{MAX_ID} characters of text)"), 400
    engine = get_engine()
    scope = current_user.scope()
    if get_evaluation(engine, record_id, scope) is None:
        return jsonify(error=f"record_id: unknown record {record_id!r}"), 404
    return jsonify(record_id=record_id, contact=contacts.reveal(engine, record_id, units=scope))


@bp.get("/quarantine")
@requires("quarantine")
def quarantine():
    _check_known(request.args, PAGING + ("device_id",))
    page, per_page = parse_paging(request.args)
    device_id = text_param(request.args, "device_id")
    return jsonify(list_quarantine(get_engine(), page, per_page, device_id))


@bp.get("/devices")
@requires("devices")
def devices():
    _check_known(request.args, ())
    report = device_report(get_engine(), include_counts=current_user.can("device_counts"))
    return jsonify(items=report)


@bp.get("/devices/<device_id>/days")
@requires("devices")
def device_days(device_id):
    _check_known(request.args, ("days",))
    days = _number(request.args, "days", "14")
    if not days or len(days) > 2 or not 1 <= int(days) <= completeness.MAX_DAYS:
        raise ParamError("days", f"must be 1..{completeness.MAX_DAYS}")
    try:
        report = completeness.device_days(
            get_engine(), device_id, int(days), current_app.config["HCP_TIMEZONE"]
        )
    except completeness.UnknownDevice:
        return jsonify(error=f"device_id: unknown device {device_id!r}"), 404
    return jsonify(report)
