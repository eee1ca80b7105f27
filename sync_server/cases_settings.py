"""The loop's settings an admin keeps (`loop_settings`): assignment rules
(which unit gets the 差评 of a service item, window, staff member or unit;
precedence in sync_server/cases.py) and each unit's duty contacts, who are
alerted of a new case. Every change is audited.

- ``GET /cases/settings``; ``POST /cases/settings/rules`` and
  ``/cases/settings/rules/delete``; ``POST /cases/settings/contacts`` and
  ``/cases/settings/contacts/delete``.

A rule applies to cases made after it; a case made before keeps its unit
(an admin reassigns it on its page).
"""

from __future__ import annotations

import re

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sync_server import audit, db, org
from sync_server.auth import requires
from sync_server.cases import RULE_KINDS, unit_names
from sync_server.db import get_engine
from sync_server.schema_cases import case_rules, duty_contacts

bp = Blueprint("cases_settings", __name__)
PHONE = re.compile(r"\+?[0-9][0-9-]{2,19}")
EMAIL = re.compile(r"[^@\s]{1,100}@[^@\s]{1,99}")
RULE_KIND_LABELS = {
    "item": _l("Service item"),
    "window": _l("Window"),
    "staff": _l("Staff member"),
    "unit": _l("Unit"),
}


class SettingError(ValueError):
    pass


def init_app(app) -> None:
    app.register_blueprint(bp)


def _page(error=None, status=200):
    with get_engine().connect() as conn:
        rules = [
            dict(r._mapping) for r in conn.execute(select(case_rules).order_by(case_rules.c.id))
        ]
        contacts = [
            dict(r._mapping)
            for r in conn.execute(
                select(duty_contacts).order_by(duty_contacts.c.unit_id, duty_contacts.c.id)
            )
        ]
        names = unit_names(conn)
        units = org.units(conn)
    return render_template(
        "cases_settings.html",
        rules=rules,
        contacts=contacts,
        names=names,
        units=units,
        kinds=RULE_KINDS,
        kind_labels=RULE_KIND_LABELS,
        error=error,
    ), status


@bp.get("/cases/settings")
@requires("loop_settings")
def settings():
    return _page()


def _unit(conn, unit_id: str) -> str:
    found = org.get(conn, "units", unit_id) if unit_id else None
    if found is None or found.get("retired_at"):
        raise SettingError(_("unit: no such unit %(code)r", code=unit_id))
    return unit_id


def _changed(change):
    try:
        with get_engine().begin() as conn:
            change(conn)
    except SettingError as exc:
        return _page(str(exc), 400)
    return redirect(url_for("cases_settings.settings"))


@bp.post("/cases/settings/rules")
@requires("loop_settings")
def add_rule():
    form = request.form
    kind, subject = form.get("match_kind", ""), form.get("match_id", "").strip()
    note = form.get("note", "").strip() or None

    def change(conn):
        if kind not in RULE_KINDS:
            raise SettingError(_("match_kind: must be item, window, staff or unit"))
        try:
            org.check_code(subject, "match_id")
        except org.OrgError as exc:
            raise SettingError(str(exc)) from None
        if note and len(note) > 200:
            raise SettingError(_("note: at most 200 characters"))
        unit_id = _unit(conn, form.get("unit", "").strip())
        row = {"match_kind": kind, "match_id": subject, "unit_id": unit_id, "note": note}
        try:
            with conn.begin_nested():
                conn.execute(
                    case_rules.insert().values(
                        **row, created_by=audit._who()[0], created_at=db.utc_now()
                    )
                )
        except IntegrityError:
            raise SettingError(
                _("match_id: a rule for %(code)s exists already", code=subject)
            ) from None
        audit.record(conn, "case_rule.add", f"case_rules:{kind}:{subject}", None, row)

    return _changed(change)


def _delete(table, action: str):
    try:
        row_id = int(request.form.get("id", ""))
    except ValueError:
        abort(404)

    def change(conn):
        row = conn.execute(select(table).where(table.c.id == row_id)).first()
        if row is None:
            abort(404)
        conn.execute(table.delete().where(table.c.id == row_id))
        audit.record(conn, action, f"{table.name}:{row_id}", dict(row._mapping), None)

    return _changed(change)


@bp.post("/cases/settings/rules/delete")
@requires("loop_settings")
def delete_rule():
    return _delete(case_rules, "case_rule.delete")


@bp.post("/cases/settings/contacts")
@requires("loop_settings")
def add_contact():
    form = request.form
    name = form.get("name", "").strip()
    phone = form.get("phone", "").strip() or None
    email = form.get("email", "").strip() or None

    def change(conn):
        unit_id = _unit(conn, form.get("unit", "").strip())
        if not name or len(name) > 100:
            raise SettingError(_("name: 1 to 100 characters"))
        if phone is None and email is None:
            raise SettingError(_("phone: a phone number or an e-mail address is needed"))
        if phone is not None and not PHONE.fullmatch(phone):
            raise SettingError(_("phone: digits, optionally with + and -, up to 20"))
        if email is not None and not EMAIL.fullmatch(email):
            raise SettingError(_("email: not an e-mail address"))
        row = {"unit_id": unit_id, "name": name, "phone": phone, "email": email}
        conn.execute(
            duty_contacts.insert().values(
                **row, created_by=audit._who()[0], created_at=db.utc_now()
            )
        )
        audit.record(conn, "duty_contact.add", f"units:{unit_id}", None, row)

    return _changed(change)


@bp.post("/cases/settings/contacts/delete")
@requires("loop_settings")
def delete_contact():
    return _delete(duty_contacts, "duty_contact.delete")
