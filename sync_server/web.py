"""The admin pages: dashboard, evaluations, devices and (admins) quarantine.

A thin blueprint over sync_server/queries.py (what the API shows too).
Pages are plain server-rendered HTML in Chinese by default (English with
`?lang=en`); the dashboard refreshes itself from the JSON API every
HCP_DASHBOARD_POLL_MS milliseconds. No page ever shows a rater's contact.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

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
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from protocols.levels import BAD_STARS, CHANNELS, STARS
from sync_server import api, completeness, contacts, queries
from sync_server.auth import requires, wants_json
from sync_server.db import get_engine

bp = Blueprint("web", __name__)

# English message ids; the zh_CN catalog turns them into the official names
# (protocols.levels.LEVEL_NAMES), which a test checks.
LEVEL_LABELS = {
    5: _l("Very satisfied"),
    4: _l("Satisfied"),
    3: _l("Basically satisfied"),
    2: _l("Dissatisfied"),
    1: _l("Very dissatisfied"),
}
ROLE_LABELS = {
    "admin": _l("Administrator"),
    "supervisor": _l("Supervisor"),
    "unit_manager": _l("Unit manager"),
    "technician": _l("Technician"),
    "clerk": _l("Data-entry clerk"),
}
CHANNEL_LABELS = {
    "keypad": _l("Window keypad"),
    "kiosk": _l("Hall kiosk"),
    "qr_window": _l("Window QR code"),
    "qr_case": _l("Case QR code"),
    "web": _l("Website"),
    "sms": _l("SMS"),
    "hotline": _l("12345 hotline"),
    "paper": _l("Paper card"),
}


def local_time(utc_text) -> str:
    """'2026-11-26T08:30:00Z' (or with microseconds) -> '2026-11-26 16:30:00' in HCP_TIMEZONE.

    Anything else is shown as the text it is, and so is a time with no local
    equivalent (late on 9999-12-31 east of UTC)."""
    if not utc_text:
        return ""
    try:
        moment = dt.datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
        zone = ZoneInfo(current_app.config["HCP_TIMEZONE"])
        if moment.tzinfo is None:
            return utc_text
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    except (AttributeError, TypeError, ValueError, OverflowError):
        return str(utc_text)


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _page_url(page: int) -> str:
    args = request.args.to_dict(flat=False)
    args["page"] = [str(page)]
    return url_for(request.endpoint, **args)


def _lang_url(code: str) -> str:
    """The current page in another language, keeping its query (filters, page)."""
    args = request.args.to_dict(flat=False)
    args["lang"] = [code]
    return url_for(request.endpoint or "web.dashboard", **(request.view_args or {}), **args)


# The header's feature entries in the order a district office works: the 差评
# loop, then the citizen channels, reporting upward, then the devices. An entry
# not named here comes after these, in the order its feature registered it.
NAV_ORDER = (
    "cases.case_list",
    "rankings.digest_page",
    "rankings.page",
    "deadline_settings.page",
    "citizen_sheets.sheet",
    "paper.entry",
    "outbox.page",
    "gaming.page",
    "fleet.overview_page",
    "firmware.page",
)


def register_nav(app, endpoint: str, label, capability: str, prefix: str | None = None) -> None:
    """A feature's entry in the header: shown to users who `can(capability)`,
    marked active on `endpoint` or, with `prefix`, on every endpoint that
    starts with it (a blueprint's name and a dot). `label` is a lazy_gettext."""
    entries = app.extensions.setdefault("hcp_nav", [])
    entries.append(
        {"endpoint": endpoint, "label": label, "capability": capability, "prefix": prefix}
    )
    rank = {name: n for n, name in enumerate(NAV_ORDER)}
    entries.sort(key=lambda entry: rank.get(entry["endpoint"], len(rank)))  # stable


def init_app(app) -> None:
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(percent, "percent")

    @app.context_processor
    def _labels():
        return {
            "LEVEL_LABELS": LEVEL_LABELS,
            "CHANNEL_LABELS": CHANNEL_LABELS,
            "ROLE_LABELS": ROLE_LABELS,
            "STARS": STARS,
            "BAD_STARS": BAD_STARS,
            "CHANNELS": CHANNELS,
            "current_locale": get_locale().language,
            "page_url": _page_url,
            "lang_url": _lang_url,
            "FEATURE_NAV": current_app.extensions.get("hcp_nav", ()),
        }

    for code in (403, 404, 405):
        app.register_error_handler(code, _error_page)


_ERRORS = {
    403: _l("You do not have access to this page."),
    404: _l("Page not found."),
    405: _l("Method not allowed."),
}


def _error_page(exc):
    code = exc.code
    if wants_json():
        return jsonify(
            error={403: "admin only", 404: "not found"}.get(code, exc.name.lower())
        ), code
    return render_template("error.html", code=code, message=_ERRORS[code]), code


def scoped(filters: dict) -> dict:
    """`filters` limited to the current user's units (unit managers, clerks)."""
    scope = current_user.scope()
    if scope is not None:
        filters = {**filters, "units": scope}
    return filters


@bp.get("/")
@login_required
def dashboard():
    if not current_user.can("ratings"):
        if current_user.can("devices"):  # technicians start at their devices
            return redirect(url_for("web.devices"))
        abort(403)
    engine = get_engine()
    latest = queries.list_evaluations(
        engine, scoped({}), 1, current_app.config["HCP_DASHBOARD_LATEST"]
    )
    report = None
    if current_user.can("outbox_read"):  # the report to the province: lag and backlog
        from sync_server import outbox

        with engine.connect() as conn:
            report = outbox.figures(conn)
    return render_template(
        "dashboard.html",
        report=report,
        summary=queries.summarize(engine, scoped({}), queries.good_rate_stars()),
        latest=latest["items"],
        poll_ms=current_app.config["HCP_DASHBOARD_POLL_MS"],
        latest_count=current_app.config["HCP_DASHBOARD_LATEST"],
        timezone=current_app.config["HCP_TIMEZONE"],
        level_names={str(s): str(LEVEL_LABELS[s]) for s in STARS},
        channel_names={c: str(CHANNEL_LABELS[c]) for c in CHANNELS},
    )


@bp.get("/evaluations")
@requires("ratings")
def evaluations():
    try:
        filters = scoped(api.parse_filters(request.args))
        page, per_page = api.parse_paging(request.args)
    except api.ParamError as exc:
        return render_template(
            "evaluations.html", error=str(exc), result=None, summary=None, args=request.args
        ), 400
    engine = get_engine()
    result = queries.list_evaluations(engine, filters, page, per_page)
    pages = max(1, -(-result["total"] // per_page))
    return render_template(
        "evaluations.html",
        error=None,
        result=result,
        pages=pages,
        summary=queries.summarize(engine, filters, queries.good_rate_stars()),
        args=request.args,
    )


@bp.get("/evaluations/<path:record_id>")
@requires("ratings")
def evaluation(record_id):
    item = queries.get_evaluation(get_engine(), record_id, current_user.scope())
    if item is None:
        abort(404)
    return render_template("evaluation.html", item=item, contact=None)


@bp.post("/evaluations/contact")
@requires("contact")
def reveal_contact():
    """Show a rater's contact: an explicit action (a form), audited."""
    record_id = request.form.get("record_id", "")
    engine = get_engine()
    item = queries.get_evaluation(engine, record_id, current_user.scope())
    if item is None:
        abort(404)
    contact = contacts.reveal(engine, record_id, units=current_user.scope())
    return render_template("evaluation.html", item=item, contact=contact or "")


@bp.get("/devices")
@requires("devices")
def devices():
    report = queries.device_report(get_engine(), include_counts=current_user.can("device_counts"))
    return render_template("devices.html", devices=report)


@bp.get("/devices/<device_id>")
@requires("devices")
def device(device_id):
    try:
        report = completeness.device_days(
            get_engine(), device_id, 31, current_app.config["HCP_TIMEZONE"]
        )
    except completeness.UnknownDevice:
        abort(404)
    return render_template("device.html", report=report)


@bp.get("/quarantine")
@requires("quarantine")
def quarantine():
    try:
        page, per_page = api.parse_paging(request.args)
        device_id = api.text_param(request.args, "device_id")
    except api.ParamError as exc:
        return render_template("quarantine.html", error=str(exc), result=None), 400
    result = queries.list_quarantine(get_engine(), page, per_page, device_id)
    pages = max(1, -(-result["total"] // per_page))
    return render_template("quarantine.html", error=None, result=result, pages=pages)
