"""Staff pages of the citizen channels: window QR sheets, a service event's
case QR for the window PC, and the audited reveal of a rater's phone.

- `/qr/windows` (qr_sheets): A4 sheets of window QR labels to print, two by
  three a page, for the technicians who put them up (printed from the
  browser: only the sheets print, one A4 page each); `/qr/windows/<id>.svg`
  one label and `/qr/windows/sheet-<n>.svg` page n of the sheet as SVG files.
- `/api/v1/case-qr` (service_events): the case QR of a service
  event for the window PC's screen, the kiosk or the receipt: its address,
  the code as SVG, the receipt code and the last day it can be used.
- `/citizen/phone` (contact): the phone number a rater left with a rating
  of a citizen channel, shown on an explicit action and logged.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, render_template, request
from flask_login import current_user

from sync_server import citizen_store, db, openapi, org, phones, queries
from sync_server import citizen_tokens as tokens
from sync_server.auth import requires
from sync_server.citizen_pages import event_link, public_url
from sync_server.citizen_qr import code_svg, label_group, sheet_pages

bp = Blueprint("citizen_sheets", __name__)


def _windows() -> list[dict]:
    unit = request.args.get("unit") or None
    with db.get_engine().connect() as conn:
        units = None
        if unit is not None:
            if not org.CODE_PATTERN.fullmatch(unit) or org.get(conn, "units", unit) is None:
                abort(404)
            units = org.subtree_ids(conn, unit)
        windows = org.members(conn, "windows", units)
        names = {u["id"]: u["name"] for u in org.units(conn)}
    for window in windows:
        window["unit_name"] = names.get(window["unit"], "")
    return windows


def window_url(window_id: str) -> str:
    from flask import url_for

    return public_url(url_for("citizen.window_qr", window_id=window_id))


def _label(window: dict) -> tuple[str, str, str]:
    title = f"{window['unit_name']} {window['name']}".strip()
    return title, "扫码评价 · Scan to rate", window_url(window["id"])


@bp.get("/qr/windows")
@requires("qr_sheets")
def sheet():
    windows = _windows()
    pages = sheet_pages([_label(w) for w in windows]) if windows else []
    return render_template("qr_sheet.html", windows=windows, pages=pages)


@bp.get("/qr/windows/sheet-<int:number>.svg")
@requires("qr_sheets")
def sheet_svg(number):
    """One A4 page of the sheet (`?unit=` as the sheet) as an SVG file, for a
    print shop or a printer driver that takes SVG."""
    windows = _windows()
    pages = sheet_pages([_label(w) for w in windows]) if windows else []
    if not 1 <= number <= len(pages):
        abort(404)
    return Response(
        '<?xml version="1.0" encoding="UTF-8"?>\n' + pages[number - 1],
        mimetype="image/svg+xml",
        headers={"Content-Disposition": f'attachment; filename="window-qr-{number}.svg"'},
    )


@bp.get("/qr/windows/<window_id>.svg")
@requires("qr_sheets")
def window_label(window_id):
    with db.get_engine().connect() as conn:
        window = org.get(conn, "windows", window_id)
        names = {u["id"]: u["name"] for u in org.units(conn)}
    if window is None or window.get("retired_at"):
        abort(404)
    window["unit_name"] = names.get(window["unit"], "")
    title, subtitle, url = _label(window)
    body = label_group(title, subtitle, url, 4, 4, 82)
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="90mm" height="114mm" '
        'viewBox="0 0 90 114" font-family="Noto Sans CJK SC, WenQuanYi Micro Hei, sans-serif">'
        f"{body}</svg>"
    )
    return Response(
        svg,
        mimetype="image/svg+xml",
        headers={"Content-Disposition": f'inline; filename="window-{window_id}.svg"'},
    )


def _error(message: str, status: int):
    return jsonify(error=message), status


@bp.get("/api/v1/case-qr")
@requires("service_events")
def case_qr():
    case_no = request.args.get("case_no", "")
    service_no = request.args.get("service_no", "")
    for name, value in (("case_no", case_no), ("service_no", service_no)):
        if not org.CODE_PATTERN.fullmatch(value):
            return _error(f"{name}: 1..64 characters of A-Z a-z 0-9 . _ -", 400)
    with db.get_engine().connect() as conn:
        event = citizen_store.find_event(conn, case_no, service_no)
        if event is None or not current_user.sees_unit(event["unit_id"]):
            return _error("not found", 404)
        last_day = citizen_store.last_day(conn, event)
    url = event_link(event, "qr_case", external=True)
    return jsonify(
        case_no=event["case_no"],
        service_no=event["service_no"],
        url=url,
        svg=code_svg(url, 240),
        receipt_code=tokens.receipt_code(tokens.app_key(), case_no, service_no),
        last_day=last_day.isoformat(),
    )


@bp.post("/citizen/phone")
@requires("contact")
def reveal_phone():
    record_id = request.form.get("record_id", "")
    engine = db.get_engine()
    item = queries.get_evaluation(engine, record_id, current_user.scope())
    if item is None:
        abort(404)
    try:
        phone = phones.reveal(engine, phones.app_key(), record_id, current_user.scope())
        problem = None
    except phones.Tampered:
        phone, problem = None, True
    return render_template("citizen_phone.html", item=item, phone=phone, tampered=problem)


def register_api() -> None:
    qr = openapi._object(
        {
            "case_no": openapi.STR,
            "service_no": openapi.STR,
            "url": openapi.STR,
            "svg": openapi.STR,
            "receipt_code": openapi.STR,
            "last_day": openapi.STR,
        }
    )
    params = [
        {**openapi._query("case_no", "办件编号"), "required": True},
        {**openapi._query("service_no", "the service event within the case"), "required": True},
    ]
    openapi.register(
        {
            "/api/v1/case-qr": openapi._get(
                "A service event's case QR code, receipt code and last day to rate",
                "CaseQr",
                params,
                openapi.NOT_FOUND,
            )
        },
        {"CaseQr": qr},
    )
