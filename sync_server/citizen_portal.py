"""The web portal's search for a service event, and the kiosk follow-up page.

`/rate`: a citizen gives the case number and a check, either the last four
digits of the phone number registered with the service event or the
8-digit code printed on the receipt (citizen_tokens.receipt_code). A match
leads on to the rating form (`/rate/e/<token>`, channel `web`). Failed
checks are counted per case number and per address; past the limits
(HCP_PORTAL_MAX_FAILURES, HCP_PORTAL_MAX_FAILURES_PER_ADDRESS within
HCP_PORTAL_WINDOW_S) the portal refuses to look until the window passes. A
case that does not exist and a check that fails get the same answer, so the
portal cannot be used to find out which case numbers exist.

`/followup`: where the kiosk's thank-you QR code leads. It checks the
kiosk's token and lets the rater add one remark; the kiosk's rating itself
is never changed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re

from flask import Blueprint, current_app, redirect, render_template, request
from flask_babel import gettext as _
from sqlalchemy import delete, func, select

from protocols import record as wire
from sync_server import citizen_form, citizen_store, db, phones
from sync_server import citizen_tokens as tokens
from sync_server.citizen_form import FormError
from sync_server.citizen_pages import done, event_link, too_large
from sync_server.schema_citizen import followup_remarks, portal_failures

bp = Blueprint("citizen_portal", __name__)
CHECK_PATTERN = re.compile(r"[0-9]{4}|[0-9]{8}")


def _since(seconds: int) -> str:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    return start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def blocked(conn, case_no: str, address: str) -> bool:
    config = current_app.config
    since = _since(config["HCP_PORTAL_WINDOW_S"])
    f = portal_failures.c
    by_case = conn.execute(select(func.count()).where(f.case_no == case_no, f.at >= since)).scalar()
    by_address = conn.execute(
        select(func.count()).where(f.address == address, f.at >= since)
    ).scalar()
    return (
        by_case >= config["HCP_PORTAL_MAX_FAILURES"]
        or by_address >= config["HCP_PORTAL_MAX_FAILURES_PER_ADDRESS"]
    )


def too_many_text() -> str:
    minutes = -(-current_app.config["HCP_PORTAL_WINDOW_S"] // 60)
    return _("Too many failed tries. Try again in %(minutes)s minutes.", minutes=minutes)


def note_failure(conn, case_no: str, address: str) -> None:
    conn.execute(portal_failures.insert().values(case_no=case_no, address=address, at=db.utc_now()))
    conn.execute(delete(portal_failures).where(portal_failures.c.at < _since(86400)))


def check_matches(conn, event: dict, check: str) -> bool:
    if len(check) == 8:
        code = tokens.receipt_code(tokens.app_key(), event["case_no"], event["service_no"])
        return hmac.compare_digest(code, check)
    try:
        number = phones.event_phone(conn, phones.app_key(), event["case_no"], event["service_no"])
    except phones.Tampered:
        return False
    return number is not None and hmac.compare_digest(number[-4:], check)


def _find_page(error=None, field=None, status=200):
    return render_template("rate_find.html", error=error, field=field), status


@bp.route("/rate", methods=["GET", "POST"])
def find():
    if request.method == "GET":
        return _find_page()
    if too_large():
        return _find_page(_("The form is too large."), None, 413)
    form = request.form
    try:
        case_no = citizen_form.case_number(form.get("case_no"), required=True)
    except FormError as exc:
        return _find_page(exc.message, exc.field, 400)
    check = (form.get("check") or "").strip()
    if not CHECK_PATTERN.fullmatch(check):
        return _find_page(
            _(
                "Check: the last four digits of your phone number, "
                "or the 8-digit code on your receipt."
            ),
            "check",
            400,
        )
    address = (request.remote_addr or "")[:64]
    engine = db.get_engine()
    with engine.begin() as conn:
        if blocked(conn, case_no, address):
            return _find_page(too_many_text(), "check", 429)
        event = citizen_store.find_event(conn, case_no)
        if event is None or not check_matches(conn, event, check):
            note_failure(conn, case_no, address)
            return _find_page(_("No service matches this case number and check."), "check", 400)
    return redirect(event_link(event, "web"))


# --- the kiosk's follow-up ------------------------------------------------------------


def _kiosk_record(record_id: str, token: str) -> bool:
    """Whether (id, t) came from a kiosk's thank-you screen."""
    if not wire.valid_record_id(record_id) or ":" not in record_id:
        return False
    if not tokens.FOLLOWUP_PATTERN.fullmatch(token or ""):
        return False
    device_id = record_id.split(":", 1)[0]
    d = db.devices.c
    with db.get_engine().connect() as conn:
        key_hex = conn.execute(
            select(d.key_hex).where(d.device_id == device_id, d.kind == "kiosk")
        ).scalar()
    if key_hex is None:
        return False
    return hmac.compare_digest(tokens.followup_token(bytes.fromhex(key_hex), record_id), token)


@bp.route("/followup", methods=["GET", "POST"])
def followup():
    if too_large():
        return done(_("The form is too large."), 413, True)
    source = request.form if request.method == "POST" else request.args
    record_id, token = source.get("id", ""), source.get("t", "")
    if not _kiosk_record(record_id, token):
        return done(_("This link is not valid: it was changed or made up."), 404, True)
    engine = db.get_engine()
    ev = db.evaluations.c
    with engine.connect() as conn:
        arrived = conn.execute(select(ev.id).where(ev.id == record_id)).first() is not None
        remarked = conn.execute(
            select(followup_remarks.c.record_id).where(followup_remarks.c.record_id == record_id)
        ).first()
    page = {"record_id": record_id, "token": token, "arrived": arrived, "error": None}
    if remarked is not None:
        return done(_("Your remark has been added already. Thank you."))
    if request.method == "GET":
        return render_template("rate_followup.html", **page)
    try:
        comment = citizen_form.free_text("comment", request.form.get("comment"), 300)
        if comment is None:
            raise FormError("comment", _("Comment: please write your remark."))
    except FormError as exc:
        return render_template("rate_followup.html", **{**page, "error": exc.message}), 400
    with engine.begin() as conn:
        conn.execute(
            db.insert_ignoring_duplicates(engine, followup_remarks, "record_id").values(
                record_id=record_id, comment=comment, received_at=db.utc_now()
            )
        )
    return done(_("Thank you: your remark has been added."))
