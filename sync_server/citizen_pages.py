"""The pages a citizen opens on a phone: window QR, case QR, web portal, kiosk follow-up.

Public (no login); Chinese by default, English with ?lang=en; plain forms,
no script. Each page checks everything it is given (a forged or expired
token, an unknown case, a failed check, an oversized or marked-up text) and
answers with a clear message; nothing is stored until all is right.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from sync_server import citizen_form, citizen_store, db, org, phones
from sync_server import citizen_tokens as tokens
from sync_server.citizen_form import FormError
from sync_server.schema_citizen import used_forms

bp = Blueprint("citizen", __name__)
FORM_TOKEN = re.compile(r"[0-9a-f]{24}")


def refusal_text(key: str) -> str:
    return citizen_store.refusal_text(key)


def client_kind() -> str:
    agent = request.headers.get("User-Agent", "")
    return "mobile" if any(word in agent for word in ("Mobile", "Android", "iPhone")) else "pc"


def today() -> dt.date:
    return tokens.today(current_app.config["HCP_TIMEZONE"])


def start_of_today_utc() -> str:
    zone = ZoneInfo(current_app.config["HCP_TIMEZONE"])
    midnight = dt.datetime.combine(today(), dt.time(), zone)
    return midnight.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


MAX_FORM_BYTES = 16_384  # a rating form is a few hundred bytes


def too_large() -> bool:
    """A citizen's form bigger than any real one: refused. (The CSRF check
    reads the form before this view; the app's MAX_CONTENT_LENGTH bounds that.)"""
    length = request.content_length
    return length is None and request.method == "POST" or (length or 0) > MAX_FORM_BYTES


def done(message: str, status: int = 200, refused: bool = False):
    return render_template("rate_done.html", message=message, refused=refused), status


def _page(ctx: dict, status: int = 200):
    return render_template("rate_page.html", **ctx), status


def rating_flow(ctx: dict, channel: str, client: str, event: dict | None, window: dict | None):
    """The two steps of a rating page and the store; `ctx` has title, action,
    ask_case and case_required (window QR)."""
    engine = db.get_engine()
    form = request.form
    ctx = {"error": None, "field": None, "step": 1, "stars": None, "case_no": "", **ctx}
    attempt = 2 if event is not None and request.args.get("append") == "1" else 1
    if attempt == 2:
        ctx["action"] += "?append=1"
        ctx["appending"] = True
    if event is not None:  # a known event: refused at once, before a level is chosen
        answer = _refusal(event, attempt, ctx["action"])
        if answer is not None:
            return answer
    if request.method == "GET":
        return _page(ctx)
    if too_large():
        return done(_("The form is too large."), 413, True)
    try:
        stars = citizen_form.level(form.get("stars"))
        ctx["stars"] = stars
        if ctx["ask_case"]:
            case_no = citizen_form.case_number(form.get("case_no"), ctx["case_required"])
            ctx["case_no"] = case_no or ""
            if case_no:
                event = _window_event(case_no, window["id"])
    except FormError as exc:
        return _page({**ctx, "error": exc.message, "field": exc.field}, 400)
    if event is not None and ctx["ask_case"]:  # the window QR's case number, just given
        answer = _refusal(event, attempt, ctx["action"])
        if answer is not None:
            return answer
    with engine.connect() as conn:
        ctx.update(citizen_form.choices(conn, stars))
    if form.get("step") != "2":
        ctx.update(step=2, form_token=secrets.token_hex(12))
        return _page(ctx)
    token = form.get("form_token", "")
    ctx.update(step=2, form_token=token)
    if not FORM_TOKEN.fullmatch(token):
        message = _("The form was changed: please start again.")
        return _page({**ctx, "step": 1, "error": message}, 400)
    try:
        with engine.begin() as conn:
            if _used(conn, token):  # the same form sent twice
                return done(_("Thank you for your rating."))
            fields, phone = citizen_form.rating(conn, form, stars)
            used = {"token": token, "at": db.utc_now()}
            if event is not None:
                fields.update(case_no=event["case_no"], service_no=event["service_no"])
                if attempt == 2:
                    fields["attempt"] = 2
            elif window is not None:
                if _window_limit_reached(conn, window["id"]):
                    return done(window_limit_text(), 429, refused=True)
                fields.update(window_id=window["id"], org_id=window.get("unit"))
                used.update(window_id=window["id"], address=(request.remote_addr or "")[:64])
            record_id = citizen_store.store(
                conn, engine, {"channel": channel, "stars": stars, "client": client, **fields}
            )
            conn.execute(used_forms.insert().values(record_id=record_id, **used))
            if phone:
                phones.keep(conn, phones.app_key(), record_id, phone)
    except FormError as exc:
        return _page({**ctx, "error": exc.message, "field": exc.field}, 400)
    except citizen_store.Refused as exc:
        if exc.key:
            return done(refusal_text(exc.key), 409, refused=True)
        return _page({**ctx, "error": exc.message, "field": exc.field}, 400)
    except IntegrityError:  # the same form sent twice at once: the other one stored it
        return done(_("Thank you for your rating."))
    return done(_("Thank you for your rating."))


def _refusal(event: dict, attempt: int, action: str):
    """The answer for an event that cannot be rated now, else None. A rated
    event still in its period offers its one appended rating (追加评价)."""
    with db.get_engine().connect() as conn:
        refused = citizen_store.check_rateable(conn, event, attempt)
        appendable = (
            refused == "already_rated"
            and attempt == 1
            and citizen_store.check_rateable(conn, event, 2) is None
        )
    if refused is None:
        return None
    append_url = (action + "?append=1") if appendable and "?" not in action else None
    return (
        render_template(
            "rate_done.html", message=refusal_text(refused), refused=True, append_url=append_url
        ),
        409,
    )


def window_limit_text() -> str:
    return _(
        "This window has been rated several times from your network today: "
        "please rate with the case number on your receipt."
    )


def _window_limit_reached(conn, window_id: str) -> bool:
    """Ratings of a window without a service event, from this address, today."""
    u = used_forms.c
    count = conn.execute(
        select(func.count()).where(
            u.window_id == window_id,
            u.address == (request.remote_addr or "")[:64],
            u.at >= start_of_today_utc(),
        )
    ).scalar()
    return count >= current_app.config["HCP_WINDOW_QR_MAX_PER_ADDRESS"]


def _used(conn, token: str) -> bool:
    found = conn.execute(select(used_forms.c.token).where(used_forms.c.token == token)).first()
    return found is not None


def _window_event(case_no: str, window_id: str) -> dict:
    """The service event of this window with this case number. Wrong numbers
    count as failed tries, with the portal's limits (citizen_portal.py), so
    the page cannot be used to find out which case numbers exist."""
    from sync_server.citizen_portal import blocked, note_failure, too_many_text

    address = (request.remote_addr or "")[:64]
    with db.get_engine().begin() as conn:
        if blocked(conn, case_no, address):
            raise FormError("case_no", too_many_text())
        event = citizen_store.find_event(conn, case_no)
        if event is None or event.get("window_id") != window_id:
            note_failure(conn, case_no, address)
            event = None
    if event is None:
        raise FormError("case_no", _("Case number: no service of this window has this number."))
    return event


def _window(window_id: str) -> dict | None:
    if not org.CODE_PATTERN.fullmatch(window_id):
        return None
    with db.get_engine().connect() as conn:
        window = org.get(conn, "windows", window_id)
    if window is None or window.get("retired_at"):
        return None
    return window


@bp.route("/r/w/<window_id>", methods=["GET", "POST"])
def window_qr(window_id):
    window = _window(window_id)
    if window is None:
        return done(_("This QR code does not belong to a window in service."), 404, True)
    with db.get_engine().connect() as conn:
        busy = citizen_store.window_events_since(conn, window_id, start_of_today_utc()) > 0
    ctx = {
        "title": window["name"],
        "action": url_for("citizen.window_qr", window_id=window_id),
        "ask_case": True,
        "case_required": busy,
        "event": None,
    }
    return rating_flow(ctx, "qr_window", "mobile", None, window)


def _event_from_token(purpose: str, token: str):
    """(event, None) or (None, the answer for a bad token)."""
    try:
        event_id = tokens.check_event_token(tokens.app_key(), purpose, token, today())
    except tokens.TokenError as exc:
        if exc.kind == "expired":
            return None, done(refusal_text("period_over"), 410, True)
        return None, done(_("This link is not valid: it was changed or made up."), 404, True)
    with db.get_engine().connect() as conn:
        event = citizen_store.event_by_id(conn, event_id)
    if event is None:
        return None, done(_("This link is not valid: it was changed or made up."), 404, True)
    return event, None


def _event_title(event: dict) -> str:
    return _("Case %(case)s", case=event["case_no"])


@bp.route("/r/c/<token>", methods=["GET", "POST"])
def case_qr(token):
    event, answer = _event_from_token("qr_case", token)
    if answer is not None:
        return answer
    ctx = {
        "title": _event_title(event),
        "action": url_for("citizen.case_qr", token=token),
        "ask_case": False,
        "case_required": False,
        "event": event,
    }
    return rating_flow(ctx, "qr_case", "mobile", event, None)


@bp.route("/rate/e/<token>", methods=["GET", "POST"])
def portal_rate(token):
    event, answer = _event_from_token("web", token)
    if answer is not None:
        return answer
    ctx = {
        "title": _event_title(event),
        "action": url_for("citizen.portal_rate", token=token),
        "ask_case": False,
        "case_required": False,
        "event": event,
    }
    return rating_flow(ctx, "web", client_kind(), event, None)


def event_link(event: dict, purpose: str, external: bool = False) -> str:
    """The case QR (or portal) address of a service event."""
    with db.get_engine().connect() as conn:
        last_day = citizen_store.last_day(conn, event)
    token = tokens.event_token(tokens.app_key(), purpose, event["id"], last_day)
    endpoint = "citizen.case_qr" if purpose == "qr_case" else "citizen.portal_rate"
    path = url_for(endpoint, token=token)
    return public_url(path) if external else path


def public_url(path: str) -> str:
    base = current_app.config.get("HCP_PUBLIC_URL") or request.host_url
    return base.rstrip("/") + path


@bp.errorhandler(413)
def _too_large(_exc):
    return done(_("The form is too large."), 413, True)
