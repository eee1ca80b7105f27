"""The outbox's page and API (sync_server/outbox.py).

- ``GET /outbox`` (outbox_read): the lag (oldest unsent, store→acknowledged
  p50/p95), the backlog by state, what the sender last heard from the
  province, the dead letters with the province's reasons, the latest rows;
- ``POST /outbox/retry`` (outbox): a dead letter back to the queue, its
  payload built again from what is stored now (after a fix);
- ``POST /outbox/handled`` (outbox): a dead letter, or a 差评 whose reason
  never came (overdue), marked handled, with a note;
- ``POST /outbox/resend`` (outbox): every acknowledged row of a period
  (local dates, both included) queued again;
- ``GET /api/v1/outbox`` (outbox_read): the same figures and letters as JSON.

Every change is audited (sync_server/audit.py).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from sync_server import openapi, outbox
from sync_server.auth import requires
from sync_server.db import get_engine

bp = Blueprint("outbox", __name__)

STATE_LABELS = {
    "pending": _l("Waiting to be sent"),
    "held": _l("Held: reason owed"),
    "overdue": _l("Held: reason owed, past the wait"),
    "acked": _l("Acknowledged by the province"),
    "dead": _l("Refused by the province"),
    "unmapped": _l("Cannot be put in the province's form"),
    "skipped": _l("Not reported (repeat rating)"),
    "handled": _l("Refused, handled by an admin"),
}
SENDER_LABELS = {
    "ok": _l("Sending normally"),
    "unreachable": _l("The province does not answer"),
    "garbage": _l("The province answers something unreadable"),
    "credential": _l("The province refuses our credential"),
    "error": _l("The province answers with an error"),
    "no_reason": _l("The province refuses without a reason"),
}
NULL_NUMBER = {"type": ["number", "null"]}
LETTER = openapi._object(
    {
        "id": openapi.INT,
        "kind": {"type": "string", "enum": ["event", "rating"]},
        "ref": openapi.STR,
        "stored_at": openapi.STR,
        "state": {"type": "string", "enum": ["dead", "unmapped"]},
        "reason": openapi.NSTR,
        "attempts": openapi.INT,
        "last_error": openapi.NSTR,
    }
)
HELD_ITEM = openapi._object(
    {
        "id": openapi.INT,
        "kind": {"type": "string", "enum": ["rating"]},
        "ref": openapi.STR,
        "case_no": openapi.NSTR,
        "stored_at": openapi.STR,
        "state": {"type": "string", "enum": ["held", "overdue"]},
        "reason": openapi.NSTR,
    }
)
SCHEMAS = {
    "OutboxStatus": openapi._object(
        {
            "backlog": {
                "type": "object",
                "properties": {state: openapi.INT for state in STATE_LABELS},
                "required": list(STATE_LABELS),
                "additionalProperties": False,
            },
            "unsent": openapi.INT,
            "held": openapi.INT,
            "held_overdue": openapi.INT,
            "oldest_unsent_at": openapi.NSTR,
            "oldest_unsent_age_s": NULL_NUMBER,
            "acked_sample": openapi.INT,
            "p50_ack_s": NULL_NUMBER,
            "p95_ack_s": NULL_NUMBER,
            "flagged_late": openapi.INT,
            "sender": {
                "type": ["object", "null"],
                "properties": {
                    "state": {"type": "string", "enum": list(SENDER_LABELS)},
                    "detail": openapi.NSTR,
                    "at": openapi.STR,
                    "last_ack_at": openapi.NSTR,
                },
                "required": ["state", "detail", "at", "last_ack_at"],
                "additionalProperties": False,
            },
            "dead_letters": {"type": "array", "items": LETTER},
            "held_items": {"type": "array", "items": HELD_ITEM},
        }
    )
}
PATHS = {
    "/api/v1/outbox": openapi._get(
        "The report to the province: backlog by state, the oldest unsent item, "
        "store→acknowledged p50/p95 in seconds, the sender's state, the dead letters "
        "and the 差评 held until their reason is recorded",
        "OutboxStatus",
    )
}


def init_app(app) -> None:
    from sync_server.web import register_nav

    app.register_blueprint(bp)
    register_nav(app, "outbox.page", _l("Reporting upward"), "outbox_read", prefix="outbox.")
    openapi.register(PATHS, SCHEMAS)


def _status() -> dict:
    with get_engine().connect() as conn:
        answer = outbox.figures(conn)
        answer["dead_letters"] = outbox.letters(conn)
        answer["held_items"] = outbox.held(conn)
    return answer


def _page(error=None, status=200, done=None):
    with get_engine().connect() as conn:
        figures = outbox.figures(conn)
        letters = outbox.letters(conn)
        held = outbox.held(conn)
        recent = outbox.recent(conn)
    return render_template(
        "outbox.html",
        figures=figures,
        letters=letters,
        held=held,
        recent=recent,
        STATE_LABELS=STATE_LABELS,
        SENDER_LABELS=SENDER_LABELS,
        error=error,
        done=done,
    ), status


@bp.get("/outbox")
@requires("outbox_read")
def page():
    return _page(done=request.args.get("done"))


@bp.post("/outbox/retry")
@requires("outbox")
def retry():
    try:
        outbox.retry(get_engine(), request.form.get("item", ""))
    except outbox.OutboxError as exc:
        return _page(error=str(exc), status=400)
    return redirect(url_for("outbox.page", done="retry"))


@bp.post("/outbox/handled")
@requires("outbox")
def handled():
    try:
        outbox.mark_handled(
            get_engine(),
            request.form.get("item", ""),
            request.form.get("note", ""),
            current_user.username,
        )
    except outbox.OutboxError as exc:
        return _page(error=str(exc), status=400)
    return redirect(url_for("outbox.page", done="handled"))


def _day_start(text: str, field: str) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise outbox.OutboxError(_("%(field)s: must be a date YYYY-MM-DD", field=field)) from None
    zone = ZoneInfo(current_app.config["HCP_TIMEZONE"])
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


@bp.post("/outbox/resend")
@requires("outbox")
def resend():
    try:
        start = _day_start(request.form.get("from", ""), "from")
        end = _day_start(request.form.get("to", ""), "to") + dt.timedelta(days=1)
        count = outbox.resend(
            get_engine(),
            start.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            end.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        )
    except outbox.OutboxError as exc:
        return _page(error=str(exc), status=400)
    return redirect(url_for("outbox.page", done=f"resend:{count}"))


@bp.get("/api/v1/outbox")
@requires("outbox_read")
def api_status():
    return jsonify(_status())
