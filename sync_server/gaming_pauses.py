"""Pauses of a window's keypad, as the window PC reports them (issue 13).

`POST /api/v1/windows/<window_id>/pauses` with the window PC's API token
(the business system's, capability `service_events`; a unit-scoped token
only for windows in its units) and a JSON body

    {"action": "pause" | "resume", "at": "YYYY-MM-DDTHH:MM:SSZ"}

`at` is when the keypad acknowledged the command (hcp/window.py sends one
report per acknowledged /pause and /resume, again until the collector
answers). A pause opens an interval in `window_pauses`; a resume closes the
latest open one that began at or before it. Both are idempotent: a report
sent again answers 200 with the same interval. The gaming rule
`while_paused` (sync_server/gaming.py) reads the intervals.

Answers: 201 a new pause; 200 a resume, or a report seen before; 400 a bad
body (`<field>: <problem>`); 404 an unknown window or one outside the
token's units; 409 a resume with no pause open before it.
"""

from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, jsonify, request
from flask_login import current_user
from sqlalchemy import select, update

from sync_server import csrf, db, openapi, org
from sync_server.auth import requires
from sync_server.schema_outbox import window_pauses

bp = Blueprint("gaming_pauses", __name__, url_prefix="/api/v1")

UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
FUTURE_S = 300  # a report this far ahead of the collector's clock is refused
ACTIONS = ("pause", "resume")


class PauseError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@bp.errorhandler(PauseError)
def _refused(exc: PauseError):
    return jsonify(error=str(exc)), exc.status


def _at(body: dict) -> str:
    """`at` as UTC text to the second, the way ratings' times are kept."""
    at = body.get("at")
    if not isinstance(at, str) or not UTC_TEXT.fullmatch(at):
        raise PauseError("at: must be a UTC time YYYY-MM-DDTHH:MM:SSZ")
    try:
        moment = dt.datetime.fromisoformat(at[:-1]).replace(tzinfo=dt.UTC)
    except ValueError:
        raise PauseError("at: not a calendar time") from None
    if (moment - dt.datetime.now(dt.UTC)).total_seconds() > FUTURE_S:
        raise PauseError("at: in the future")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _insert(conn):
    """Two reports of the same pause at once: the second inserts nothing."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(window_pauses).on_conflict_do_nothing(index_elements=["window_id", "paused_at"])


def _answer(row) -> dict:
    return {
        "window_id": row.window_id,
        "paused_at": row.paused_at,
        "resumed_at": row.resumed_at,
    }


def report(engine, window_id: str, body, actor: str, scope=None) -> tuple[dict, int]:
    """Record one pause or resume of `window_id`; (answer, HTTP status)."""
    if not isinstance(body, dict) or set(body) - {"action", "at"}:
        raise PauseError('body: must be {"action": "pause" | "resume", "at": "<UTC time>"}')
    action = body.get("action")
    if action not in ACTIONS:
        raise PauseError("action: must be pause or resume")
    at = _at(body)
    if not org.CODE_PATTERN.fullmatch(window_id):  # a NUL was a 500 on PostgreSQL
        raise PauseError("window: not a window code (1..64 of A-Z a-z 0-9 . _ -)", 404)
    p = window_pauses.c
    with engine.begin() as conn:
        window = org.get(conn, "windows", window_id)
        if window is None or (scope is not None and window["unit"] not in scope):
            raise PauseError(f"window: no window {window_id} in your units", 404)
        if action == "pause":
            open_before = conn.execute(
                select(window_pauses)
                .where(p.window_id == window_id, p.paused_at <= at)
                .order_by(p.paused_at.desc())
                .limit(1)
            ).first()
            if open_before is not None and (
                open_before.paused_at == at or open_before.resumed_at is None
            ):
                return _answer(open_before), 200  # sent again, or paused already
            conn.execute(
                _insert(conn),
                [
                    {
                        "window_id": window_id,
                        "paused_at": at,
                        "resumed_at": None,
                        "reported_by": actor[:80],
                        "received_at": db.utc_now(),
                    }
                ],
            )
            row = conn.execute(
                select(window_pauses).where(p.window_id == window_id, p.paused_at == at)
            ).one()
            return _answer(row), 201
        latest = conn.execute(
            select(window_pauses)
            .where(p.window_id == window_id, p.paused_at <= at)
            .order_by(p.paused_at.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.resumed_at == at:
            return _answer(latest), 200  # sent again
        if latest is None or latest.resumed_at is not None:
            raise PauseError(f"resume: window {window_id} has no pause open before {at}", 409)
        conn.execute(update(window_pauses).where(p.id == latest.id).values(resumed_at=at))
        return {**_answer(latest), "resumed_at": at}, 200


@bp.post("/windows/<window_id>/pauses")
@csrf.exempt  # JSON only: no other site's page can send it
@requires("service_events")
def post_pause(window_id):
    body = request.get_json(silent=True) if request.is_json else None
    if body is None:
        raise PauseError("body: must be JSON (Content-Type: application/json)")
    answer, status = report(
        db.get_engine(), window_id, body, current_user.actor, current_user.scope()
    )
    return jsonify(answer), status


SCHEMAS = {
    "WindowPauseIn": openapi._object(
        {"action": {"type": "string", "enum": list(ACTIONS)}, "at": openapi.STR}
    ),
    "WindowPause": openapi._object(
        {"window_id": openapi.STR, "paused_at": openapi.STR, "resumed_at": openapi.NSTR}
    ),
}
PATHS = {
    "/api/v1/windows/{window_id}/pauses": {
        "post": {
            "summary": "The window PC reports a pause or resume its keypad acknowledged "
            "(idempotent); the gaming rule while_paused reads them",
            "parameters": [openapi._path("window_id")],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": openapi._ref("WindowPauseIn")}},
            },
            "responses": {
                "200": openapi._json("WindowPause", "a resume, or a report seen before"),
                "201": openapi._json("WindowPause", "a new pause"),
                **openapi.ERRORS,
                **openapi.NOT_FOUND,
                "409": openapi._json("Error", "a resume with no pause open before it"),
            },
        }
    }
}


def init_app(app) -> None:
    app.register_blueprint(bp)
    openapi.register(PATHS, SCHEMAS)
