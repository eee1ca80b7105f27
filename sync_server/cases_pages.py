"""The pages of the bad-review loop.

- ``GET /cases``: the cases in the user's units (filters: state, unit
  subtree, overdue, kind); ``GET /cases/<id>``: a case, its rating, its
  steps and appeals, and the form of its next step.
- ``POST /cases/<id>/step`` (cases_work): the next step;
  ``POST /cases/<id>/reopen`` (cases_review); ``POST /cases/<id>/appeal``
  (cases_work, with an optional file); ``POST /cases/<id>/assign`` (admins).
- ``GET /cases/appeals`` (cases_review): the appeal queue;
  ``POST /cases/appeals/<id>/decide``; ``GET /cases/appeals/<id>/file``.
- ``GET /cases/ledger`` and ``/cases/ledger/export?format=xlsx|csv``.
- ``GET /cases/alerts``: the alerts of the user's units.
- ``POST /cases/<id>/contact`` (contact): the rater's contact, for the
  call-backs of the case (verify, feed back, return visit), audited.

A unit manager sees and acts on the cases of their own subtree only; any
other case is a 404, as if it did not exist. The scope is the case's unit,
not where the rating was placed: a rule may give a unit the 差评 of a
window it does not hold, and that unit must see the rating and call the
rater back. The contact is shown only by the explicit reveal, which writes
`contact.reveal` to the audit log like the rating page's.
"""

from __future__ import annotations

import datetime as dt
import io

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from sync_server import api, cases, cases_ledger, cases_workflow, contacts, db, org
from sync_server.auth import requires
from sync_server.cases_workflow import CaseError
from sync_server.db import get_engine
from sync_server.org_pages import FORMATS
from sync_server.queries import _tags
from sync_server.schema_cases import case_alerts, case_appeals
from sync_server.schema_citizen import rater_phones
from sync_server.web import register_nav

bp = Blueprint("cases", __name__)
# ids are INTEGER columns: a larger number in a URL is no case (SQLite and
# PostgreSQL would raise on it: a 404, not a 500)
MAX_ID = 2**31 - 1


@bp.before_request
def _no_id_past_the_column():
    for name in ("case_id", "appeal_id"):
        value = (request.view_args or {}).get(name)
        if value is not None and not 0 < value <= MAX_ID:
            abort(404)


ALERT_STATE_LABELS = {
    "pending": _l("waiting to be sent"),
    "sending": _l("being sent"),
    "sent": _l("sent"),
    "failed": _l("failed"),
    "no_contact": _l("no duty contact"),
}
ASSIGNED_LABELS = {
    "window": _l("the unit of the window"),
    "staff": _l("the unit of the staff member"),
    "device": _l("the unit the device was set up for"),
    "item": _l("the unit of the service item"),
    "manual": _l("assigned by an admin"),
    "none": _l("nobody found"),
}


def assigned_label(how: str) -> str:
    if how and how.startswith("rule:"):
        return _("assignment rule #%(id)s", id=how.removeprefix("rule:"))
    return str(ASSIGNED_LABELS.get(how, how))


LIST_ARGS = ("state", "unit", "overdue", "kind", "page", "per_page")


def init_app(app) -> None:
    app.register_blueprint(bp)
    register_nav(app, "cases.case_list", _l("Bad-review cases"), "cases", prefix="cases.")

    @app.context_processor
    def _labels():
        return {
            "CASE_STATE_LABELS": cases_workflow.STATE_LABELS,
            "CASE_ACTION_LABELS": cases_workflow.ACTION_LABELS,
            "CASE_KIND_LABELS": cases_workflow.KIND_LABELS,
            "CASE_VERDICT_LABELS": cases_workflow.VERDICT_LABELS,
            "CASE_OUTCOME_LABELS": cases_workflow.OUTCOME_LABELS,
            "ALERT_STATE_LABELS": ALERT_STATE_LABELS,
            "assigned_label": assigned_label,
        }


def now_second() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soon_hours(conn) -> float:
    from sync_server import deadlines

    return deadlines.setting(conn, "due_soon_hours")


def deadline_state(case: dict, now: str, soon: float) -> str | None:
    """ok | due_soon | overdue while a deadline runs (set, not yet rectified,
    not voided); None otherwise."""
    from sync_server import deadlines

    if not case["due_at"] or case["rectified_at"] or case["state"] in ("voided", "closed"):
        return None
    return deadlines.state(case["due_at"], now, soon)


def parse_list(args) -> dict:
    """The list's filters from a query string (api.ParamError when bad);
    `unit` outside the user's scope is a 404."""
    api._check_known(args, LIST_ARGS)
    state = api.text_param(args, "state")
    if state is not None and state not in cases.STATES:
        raise api.ParamError("state", "must be one of " + ", ".join(cases.STATES))
    kind = api.text_param(args, "kind")
    if kind is not None and kind not in cases.KINDS:
        raise api.ParamError("kind", "must be one of " + ", ".join(cases.KINDS))
    overdue = args.get("overdue", "").strip()
    if overdue not in ("", "0", "1"):
        raise api.ParamError("overdue", "must be 0 or 1")
    unit = api.text_param(args, "unit")
    subtree = None
    if unit is not None:
        scope = current_user.scope()
        if scope is not None and unit not in scope:
            abort(404)
        with get_engine().connect() as conn:
            if org.get(conn, "units", unit) is None:
                raise api.ParamError("unit", "no such unit")
            subtree = org.subtree_ids(conn, unit)
    page, per_page = api.parse_paging(args)
    return {
        "where": cases.case_filter(
            units=current_user.scope(),
            state=state,
            unit_subtree=subtree,
            overdue_at=now_second() if overdue == "1" else None,
            kind=kind,
        ),
        "page": page,
        "per_page": per_page,
    }


def listing(args) -> dict:
    parsed = parse_list(args)
    with get_engine().connect() as conn:
        result = cases.list_cases(conn, parsed["where"], parsed["page"], parsed["per_page"])
        names = cases.unit_names(conn)
        soon = soon_hours(conn)
    now = now_second()
    for case in result["items"]:
        case["unit_name"] = names.get(case["unit_id"], case["unit_id"])
        case["deadline_state"] = deadline_state(case, now, soon)
    return result


@bp.get("/cases")
@requires("cases")
def case_list():
    try:
        result = listing(request.args)
    except api.ParamError as exc:
        return render_template("cases.html", error=str(exc), result=None), 400
    pages = max(1, -(-result["total"] // result["per_page"]))
    return render_template("cases.html", error=None, result=result, pages=pages)


def _rating(conn, record_id: str) -> dict | None:
    ev = db.evaluations.c
    row = conn.execute(
        select(
            ev.id, ev.stars, ev.channel, ev.tags, ev.comment, ev.case_no, ev.item_code,
            ev.window_id, ev.staff_id, ev.effective_at, ev.excluded, ev.reason_owed,
        ).where(ev.id == record_id)
    ).first()  # fmt: skip
    if row is None:
        return None
    item = dict(row._mapping)
    item["tags"] = _tags(item["tags"])
    # a device's contact, or a number left on the QR page, the portal or by SMS
    item["has_contact"] = any(
        conn.execute(select(table.c.record_id).where(table.c.record_id == record_id)).first()
        for table in (db.contacts, rater_phones)
    )
    return item


def sms_reason(conn, rating: dict | None) -> str | None:
    """The reason the rater sent by SMS after a 差评 given by SMS (sms.py
    keeps it apart: the rating itself is never changed), or None."""
    if rating is None or rating["channel"] != "sms":
        return None
    from sync_server import sms

    return sms.reasons_of(conn, rating["id"])


# the states in which the next step calls the rater: verify (open), feed
# back (rectified) and the return visit (fed_back)
CALL_STATES = ("open", "rectified", "fed_back")


def case_view(case_id: int) -> dict:
    """A case with what its page shows; 404 outside the user's units."""
    scope = current_user.scope()
    with get_engine().connect() as conn:
        case = cases.get_case(conn, case_id, scope)
        if case is None:
            abort(404)
        names = cases.unit_names(conn)
        rating = _rating(conn, case["record_id"])
        view = {
            "case": case,
            "rating": rating,
            "sms_reason": sms_reason(conn, rating),
            # the rating's own page follows where the rating was placed, not the case
            "rating_page": org.rating_inside(conn, case["record_id"], scope),
            "steps": cases.steps_of(conn, case_id),
            "appeals": cases_workflow.appeals(conn, case_appeals.c.case_id == case_id),
            "unit_name": names.get(case["unit_id"], case["unit_id"]),
            "deadline_state": deadline_state(case, now_second(), soon_hours(conn)),
            "on_time": cases_ledger.on_time(case),
            "units": org.units(conn) if current_user.can("loop_settings") else [],
        }
    view["next_action"] = cases_workflow.NEXT_ACTION.get(case["state"])
    return view


def _case_page(case_id: int, error=None, status=200, form=None, contact=None):
    view = case_view(case_id)
    return render_template(
        "case.html", error=error, form=form or {}, contact=contact, **view
    ), status


@bp.get("/cases/<int:case_id>")
@requires("cases")
def case_page(case_id):
    return _case_page(case_id)


def _change(case_id: int, change):
    """Run `change(conn)` in one transaction; back to the case page, or the
    page again with the error (400) and nothing changed."""
    try:
        with get_engine().begin() as conn:
            change(conn)
    except LookupError:
        abort(404)
    except CaseError as exc:
        return _case_page(case_id, error=exc.localized(), status=400, form=request.form)
    return redirect(url_for("cases.case_page", case_id=case_id))


@bp.post("/cases/<int:case_id>/step")
@requires("cases_work")
def step(case_id):
    values = request.form.to_dict()
    action = values.pop("action", "")
    return _change(
        case_id,
        lambda conn: cases_workflow.take_step(conn, case_id, action, values, current_user.scope()),
    )


@bp.post("/cases/<int:case_id>/contact")
@requires("contact")
def reveal_contact(case_id):
    """The rater's contact for a call-back of this case: the case's unit (and
    the units above it) may reveal it wherever the rating was placed; the
    reveal is audited (contact.reveal, by contacts.reveal)."""
    engine = get_engine()
    with engine.connect() as conn:
        case = cases.get_case(conn, case_id, current_user.scope())
    if case is None:
        abort(404)
    if case["state"] not in CALL_STATES:
        error = _(
            "Contact: the rater is called back only to verify, feed back or revisit; "
            "this case is %(state)s",
            state=cases_workflow.STATE_LABELS.get(case["state"], case["state"]),
        )
        return _case_page(case_id, error=error, status=400)
    # the scope was checked on the case above: the reveal is for every unit
    contact = contacts.reveal(engine, case["record_id"], units=None)
    return _case_page(case_id, contact=contact or "")


@bp.post("/cases/<int:case_id>/reopen")
@requires("cases_review")
def reopen(case_id):
    values = request.form.to_dict()
    return _change(case_id, lambda conn: cases_workflow.reopen(conn, case_id, values))


@bp.post("/cases/<int:case_id>/assign")
@requires("loop_settings")
def assign(case_id):
    unit_id, note = request.form.get("unit", ""), request.form.get("note")
    return _change(case_id, lambda conn: cases_workflow.assign(conn, case_id, unit_id, note))


def upload_from(files):
    """(name, content type, bytes) of the form's `file`, or None; read only
    up to the limit (MAX_CONTENT_LENGTH bounds the whole request too)."""
    storage = files.get("file")
    if storage is None or not storage.filename:
        return None
    data = storage.stream.read(cases_workflow.MAX_FILE + 1)
    content_type = (storage.mimetype or "").lower()
    return storage.filename, content_type, data


@bp.post("/cases/<int:case_id>/appeal")
@requires("cases_work")
def appeal(case_id):
    values = request.form.to_dict()
    upload = upload_from(request.files)
    return _change(
        case_id,
        lambda conn: cases_workflow.file_appeal(
            conn, case_id, values, upload, current_user.scope()
        ),
    )


@bp.get("/cases/appeals")
@requires("cases_review")
def appeal_queue():
    state = request.args.get("state", "pending")
    if state not in ("pending", *cases_workflow.OUTCOMES, "all"):
        abort(404)
    where = True if state == "all" else case_appeals.c.state == state
    with get_engine().connect() as conn:
        found = cases_workflow.appeals(conn, where)
        names = cases.unit_names(conn)
    return render_template("cases_appeals.html", appeals=found, names=names, state=state)


@bp.post("/cases/appeals/<int:appeal_id>/decide")
@requires("cases_review")
def decide(appeal_id):
    engine = get_engine()
    with engine.connect() as conn:
        appeal_row = cases_workflow.get_appeal(conn, appeal_id)
    if appeal_row is None:
        abort(404)
    values = request.form.to_dict()
    return _change(
        appeal_row["case_id"], lambda conn: cases_workflow.decide(conn, appeal_id, values)
    )


@bp.get("/cases/appeals/<int:appeal_id>/file")
@requires("cases")
def appeal_file(appeal_id):
    a = case_appeals.c
    with get_engine().connect() as conn:
        found = cases_workflow.get_appeal(conn, appeal_id, current_user.scope())
        if found is None or not found["file_bytes"]:
            abort(404)
        data = conn.execute(select(a.file_data).where(a.id == appeal_id)).scalar()
    # always a download, never shown inline: the file is the unit's, not ours to trust
    response = send_file(
        io.BytesIO(data),
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=found["file_name"],
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- the ledger ------------------------------------------------------------------------


def _ledger():
    api._check_known(request.args, ("unit", "since", "until", "format"))
    kept = [(k, v) for k, v in request.args.items(multi=True) if k in ("since", "until")]
    bounds = api.parse_filters(MultiDict(kept), allowed=("since", "until"))
    scope = current_user.scope()
    unit = api.text_param(request.args, "unit")
    units = scope
    label = _("All units")
    with get_engine().connect() as conn:
        if unit is not None:
            if scope is not None and unit not in scope:
                abort(404)
            found = org.get(conn, "units", unit)
            if found is None:
                raise api.ParamError("unit", "no such unit")
            units = org.subtree_ids(conn, unit)
            label = f"{found['name']} ({unit})"
        elif scope is not None:
            found = org.get(conn, "units", current_user.unit_id)
            label = f"{found['name']} ({current_user.unit_id})" if found else ""
    rows = cases_ledger.rows(get_engine(), units, bounds.get("since"), bounds.get("until"))
    period = f"{bounds.get('since') or '—'} — {bounds.get('until') or '—'}"
    return rows, period, label


@bp.get("/cases/ledger")
@requires("cases")
def ledger():
    try:
        rows, period, label = _ledger()
    except api.ParamError as exc:
        return render_template("cases_ledger.html", error=str(exc), rows=None), 400
    return render_template(
        "cases_ledger.html",
        error=None,
        rows=rows,
        totals=cases_ledger.totals(rows),
        period=period,
        label=label,
    )


@bp.get("/cases/ledger/export")
@requires("cases")
def ledger_export():
    fmt = request.args.get("format", "xlsx")
    if fmt not in FORMATS:
        abort(404)
    try:
        rows, period, label = _ledger()
    except api.ParamError as exc:
        return render_template("cases_ledger.html", error=str(exc), rows=None), 400
    table = cases_ledger.table(rows, period, label)
    title = _("Ledger of complex bad-review cases")
    data = org.to_csv(table) if fmt == "csv" else org.to_xlsx(table, title)
    return Response(
        data,
        mimetype=FORMATS[fmt],
        headers={"Content-Disposition": f"attachment; filename=hcp-ledger.{fmt}"},
    )


# --- alerts -----------------------------------------------------------------------------


@bp.get("/cases/alerts")
@requires("cases")
def alerts():
    scope = current_user.scope()
    a = case_alerts.c
    where = True if scope is None else a.unit_id.in_(sorted(scope))
    with get_engine().connect() as conn:
        found = cases.alerts_of(conn, where)
        names = cases.unit_names(conn)
    return render_template("cases_alerts.html", alerts=found, names=names)


@bp.post("/cases/alerts/send")
@requires("loop_settings")
def send_alerts():
    from sync_server import cases_alerts

    sender = cases_alerts.sender_from_config(current_app.config.get("HCP_CASE_ALERT_SENDER"))
    cases_alerts.deliver(get_engine(), sender)
    return redirect(url_for("cases.alerts"))
