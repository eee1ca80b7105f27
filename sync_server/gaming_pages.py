"""Evidence of gaming for supervisors: pages and API (sync_server/gaming.py).

- ``GET /gaming``: the flags (open first, filter by state and rule), the
  rules with their thresholds, and a scan of the last days;
- ``POST /gaming/scan``: run every rule over the last `days` (1..92) days;
- ``GET /gaming/<id>``: one flag, its rule, its evidence, its ratings (each
  linked, with its 差评 case where there is one);
- ``POST /gaming/<id>/act``: review (start a 复核), dismiss or confirm, with
  a note; confirming excludes the named ratings from the figures (audited);
- ``GET /api/v1/gaming/flags``: the flags as JSON.

All need the `gaming` capability (admins and supervisors).
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from sync_server import db, gaming, openapi
from sync_server.auth import requires
from sync_server.db import get_engine

bp = Blueprint("gaming", __name__)

STATE_LABELS = {
    "open": _l("Flag open"),
    "review": _l("Under review (复核)"),
    "dismissed": _l("Flag dismissed"),
    "confirmed": _l("Confirmed: excluded from figures"),
}
# the evidence's fields as a supervisor reads them
EVIDENCE_LABELS = {
    "first": _l("First rating"),
    "last": _l("Last rating"),
    "stars": _l("Levels given"),
    "origin": _l("Made by"),
    "entered_by": _l("Typed in by"),
    "local_time": _l("Local time of the rating"),
    "working_day": _l("On a working day"),
    "rated_at": _l("Rated at"),
    "handled_at": _l("Case handled at"),
    "seconds_early": _l("Seconds before handling"),
    "cases": _l("Different cases"),
    "text": _l("The comment"),
    "window": _l("Window"),
    "windows": _l("Windows"),
    "ratings_in_span": _l("Ratings in the minutes after sign-in"),
    "day": _l("Day"),
    "boots": _l("Boots that day"),
    "clock_ahead": _l("Clock ahead of the collector"),
    "clock_back": _l("Clock set back"),
    "channel": _l("Channel"),
    "paused_at": _l("Window paused at"),
    "resumed_at": _l("Window resumed at"),
    "seconds_into_pause": _l("Seconds into the pause"),
}
FLAG = openapi._object(
    {
        "id": openapi.INT,
        "rule": {"type": "string", "enum": list(gaming.RULES)},
        "key": openapi.STR,
        "record_id": openapi.NSTR,
        "subject": openapi.NSTR,
        "records": openapi.INT,
        "evidence": {"type": "object"},
        "flagged_at": openapi.STR,
        "state": {"type": "string", "enum": list(STATE_LABELS)},
        "note": openapi.NSTR,
        "handled_by": openapi.NSTR,
        "handled_at": openapi.NSTR,
    }
)
SCHEMAS = {"GamingFlags": openapi._object({"items": {"type": "array", "items": FLAG}})}
PATHS = {
    "/api/v1/gaming/flags": openapi._get(
        "Evidence of gaming: each flag names its rule and evidence; a flag changes no rating",
        "GamingFlags",
        [
            openapi._query("state", "open, review, dismissed or confirmed"),
            openapi._query("rule", "one rule: " + ", ".join(gaming.RULES)),
        ],
    )
}


def init_app(app) -> None:
    from sync_server import gaming_pauses
    from sync_server.web import register_nav

    app.register_blueprint(bp)
    register_nav(app, "gaming.page", _l("Gaming evidence"), "gaming", prefix="gaming.")
    openapi.register(PATHS, SCHEMAS)
    gaming_pauses.init_app(app)


def settings() -> dict:
    return {key: current_app.config.get(key, value) for key, value in gaming.SETTINGS.items()}


def _filters():
    state = request.args.get("state") or None
    rule = request.args.get("rule") or None
    if state is not None and state not in STATE_LABELS:
        raise gaming.GamingError(
            _("state: must be one of %(states)s", states=", ".join(STATE_LABELS))
        )
    if rule is not None and rule not in gaming.RULES:
        raise gaming.GamingError(_("rule: must be one of %(rules)s", rules=", ".join(gaming.RULES)))
    return state, rule


@bp.get("/gaming")
@requires("gaming")
def page():
    try:
        state, rule = _filters()
    except gaming.GamingError as exc:
        return render_template("gaming.html", flags=[], error=str(exc), **_context()), 400
    with get_engine().connect() as conn:
        flags = gaming.flags(conn, state, rule)
    return render_template(
        "gaming.html", flags=flags, state=state, rule=rule, error=None, **_context()
    )


def _context() -> dict:
    return {
        "RULES": gaming.RULES,
        "RULE_SETTINGS": gaming.RULE_SETTINGS,
        "STATE_LABELS": STATE_LABELS,
        "settings": settings(),
        "scanned": request.args.get("scanned"),
    }


@bp.post("/gaming/scan")
@requires("gaming")
def scan():
    text = request.form.get("days", "30").strip()
    if not text.isdigit() or not 1 <= int(text) <= 92:
        with get_engine().connect() as conn:
            flags = gaming.flags(conn)
        error = _("days: must be a whole number from 1 to 92")
        return render_template("gaming.html", flags=flags, error=error, **_context()), 400
    new = gaming.run_recent(get_engine(), int(text), settings())
    return redirect(url_for("gaming.page", scanned=new))


@bp.get("/gaming/<int:flag_id>")
@requires("gaming")
def flag(flag_id: int):
    return _flag_page(flag_id)


def _flag_page(flag_id: int, error=None, status=200):
    from sync_server import cases

    with get_engine().connect() as conn:
        found = gaming.get(conn, flag_id)
        if found is None:
            abort(404)
        ids = found["evidence"]["records"]
        ev = db.evaluations.c
        ratings = [
            dict(row._mapping)
            for row in conn.execute(
                select(
                    ev.id,
                    ev.stars,
                    ev.channel,
                    ev.window_id,
                    ev.staff_id,
                    ev.effective_at,
                    ev.comment,
                    ev.excluded,
                )
                .where(ev.id.in_(ids))
                .order_by(ev.effective_at)
            )  # fmt: skip
        ]
        for rating in ratings:
            case = cases.case_of_record(conn, rating["id"])
            rating["case_id"] = case["id"] if case else None
    return render_template(
        "gaming_flag.html",
        flag=found,
        ratings=ratings,
        RULES=gaming.RULES,
        STATE_LABELS=STATE_LABELS,
        ACTIONS=gaming.ACTIONS,
        EVIDENCE_LABELS=EVIDENCE_LABELS,
        error=error,
    ), status


@bp.post("/gaming/<int:flag_id>/act")
@requires("gaming")
def act(flag_id: int):
    try:
        gaming.act(
            get_engine(),
            flag_id,
            request.form.get("action", ""),
            request.form.get("note", ""),
            current_user.username,
        )
    except LookupError:
        abort(404)
    except gaming.GamingError as exc:
        return _flag_page(flag_id, error=str(exc), status=400)
    return redirect(url_for("gaming.flag", flag_id=flag_id))


@bp.get("/api/v1/gaming/flags")
@requires("gaming")
def api_flags():
    try:
        with force_locale("en"):  # the API answers in English, like every API error
            state, rule = _filters()
    except gaming.GamingError as exc:
        return jsonify(error=str(exc)), 400
    with get_engine().connect() as conn:
        return jsonify(items=gaming.flags(conn, state, rule))
