"""The deadline settings page (admins: loop_settings), every change audited.

- ``GET /deadlines/settings``: the calendar warnings, the loop settings, the
  deadline rules per unit and the admin's calendar entries.
- ``POST /deadlines/settings/values``: the loop settings (due-soon hours,
  praise and bottom places, bottom periods).
- ``POST /deadlines/settings/rule`` and ``.../rule/delete``: a unit's rule.
- ``POST /deadlines/settings/calendar`` and ``.../calendar/delete``: calendar
  entries, one per line ``YYYY-MM-DD holiday|working [note]`` (休/班 too),
  e.g. next year's State Council schedule; refused whole, the line named.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from sync_server import audit, db, deadlines, org, workdays
from sync_server.auth import requires
from sync_server.db import get_engine
from sync_server.schema_rankings import calendar_days

bp = Blueprint("deadline_settings", __name__)

BASIS_LABELS = {"natural": _l("natural days"), "working": _l("working days")}
KIND_LABELS = {
    "immediate": _l("Fix at once"),
    "general": _l("General problem"),
    "complex": _l("Complex problem"),
}
SETTING_LABELS = {
    "due_soon_hours": _l("Due soon: hours before the deadline"),
    "bottom_places": _l("Near the bottom: the last places of a ranking"),
    "bottom_periods": _l("Listed when near the bottom this many periods running"),
    "praise_places": _l("Praised: the first places of a ranking"),
}
WORDS = {"holiday": False, "休": False, "working": True, "班": True}
MAX_LINES = 400
MAX_NOTE = 100


class CalendarError(ValueError):
    """Calendar lines that cannot be taken; str() names the line."""


def parse_calendar(text: str) -> list[dict]:
    rows, seen = [], set()
    lines = (text or "").splitlines()
    if len(lines) > MAX_LINES:
        raise CalendarError(_("at most %(count)s lines", count=MAX_LINES))
    for number, line in enumerate(lines, start=1):
        parts = line.split(None, 2)
        if not parts:
            continue
        try:
            day = dt.date.fromisoformat(parts[0])
        except ValueError:
            day = None
        if day is None or not 2000 <= day.year <= 2100 or len(parts[0]) != 10:
            raise CalendarError(_("line %(line)s: the date must be YYYY-MM-DD", line=number))
        if len(parts) < 2 or parts[1] not in WORDS:
            raise CalendarError(_("line %(line)s: say holiday or working (休 or 班)", line=number))
        note = parts[2].strip() if len(parts) > 2 else None
        if note and len(note) > MAX_NOTE:
            raise CalendarError(
                _("line %(line)s: the note is longer than %(most)s", line=number, most=MAX_NOTE)
            )
        if day in seen:
            raise CalendarError(_("line %(line)s: %(day)s twice", line=number, day=day))
        seen.add(day)
        rows.append({"day": day.isoformat(), "working": WORDS[parts[1]], "note": note or None})
    if not rows:
        raise CalendarError(_("no dates given"))
    return rows


def _entries(conn) -> list[dict]:
    c = calendar_days.c
    return [dict(r._mapping) for r in conn.execute(select(calendar_days).order_by(c.day))]


def _page(error=None, status=200):
    with get_engine().connect() as conn:
        names = {u["id"]: u["name"] for u in org.units(conn)}
        rules = deadlines.rules(conn)
        context = {
            "error": error,
            "warnings": workdays.warnings(conn),
            "settings": deadlines.all_settings(conn),
            "rules": [{**r, "name": names.get(r["unit_id"], r["unit_id"])} for r in rules],
            "default_rule": deadlines.DEFAULT_RULE,
            "entries": _entries(conn),
            "units": org.units(conn),
            "form": request.form if request.method == "POST" else {},
            "BASIS_LABELS": BASIS_LABELS,
            "DEADLINE_KIND_LABELS": KIND_LABELS,
            "SETTING_LABELS": SETTING_LABELS,
            "KINDS": deadlines.KINDS,
        }
    return render_template("deadline_settings.html", **context), status


def _back():
    return redirect(url_for("deadline_settings.page"))


@bp.get("/deadlines/settings")
@requires("loop_settings")
def page():
    return _page()


@bp.post("/deadlines/settings/values")
@requires("loop_settings")
def values():
    try:
        with get_engine().begin() as conn:
            before = deadlines.all_settings(conn)
            for key in deadlines.SETTINGS:
                if key in request.form:
                    deadlines.set_setting(conn, key, request.form[key].strip())
            audit.record(
                conn, "loop.settings", "loop_settings", before, deadlines.all_settings(conn)
            )
    except deadlines.RuleError as exc:
        return _page(str(exc), 400)
    return _back()


@bp.post("/deadlines/settings/rule")
@requires("loop_settings")
def rule():
    unit_id = request.form.get("unit", "").strip()
    fields = {key: request.form.get(key, "").strip() for key in _rule_fields()}
    try:
        with get_engine().begin() as conn:
            before = next((r for r in deadlines.rules(conn) if r["unit_id"] == unit_id), None)
            after = deadlines.set_rule(conn, unit_id, fields)
            audit.record(conn, "loop.rule", f"unit:{unit_id}", _plain(before), after)
    except deadlines.RuleError as exc:
        return _page(str(exc), 400)
    return _back()


def _rule_fields():
    return [f"{k}_{part}" for k in deadlines.KINDS for part in ("days", "basis")] + ["note"]


def _plain(rule):
    if rule is None:
        return None
    return {k: v for k, v in rule.items() if k not in ("updated_by", "updated_at")}


@bp.post("/deadlines/settings/rule/delete")
@requires("loop_settings")
def rule_delete():
    unit_id = request.form.get("unit", "").strip()
    with get_engine().begin() as conn:
        before = next((r for r in deadlines.rules(conn) if r["unit_id"] == unit_id), None)
        if before is not None:
            deadlines.delete_rule(conn, unit_id)
            audit.record(conn, "loop.rule.delete", f"unit:{unit_id}", _plain(before), None)
    if before is None:
        return _page(_("unit: no rule of its own for %(unit)r", unit=unit_id[:64]), 400)
    return _back()


@bp.post("/deadlines/settings/calendar")
@requires("loop_settings")
def calendar():
    try:
        rows = parse_calendar(request.form.get("lines", ""))
    except CalendarError as exc:
        return _page(str(exc), 400)
    now = db.utc_now()
    with get_engine().begin() as conn:
        c = calendar_days.c
        days = [r["day"] for r in rows]
        before = [
            dict(r._mapping)
            for r in conn.execute(select(c.day, c.working, c.note).where(c.day.in_(days)))
        ]
        conn.execute(calendar_days.delete().where(c.day.in_(days)))
        conn.execute(
            calendar_days.insert(),
            [{**r, "updated_by": current_user.actor, "updated_at": now} for r in rows],
        )
        audit.record(conn, "loop.calendar", f"days:{days[0]}..{days[-1]}", before or None, rows)
    return _back()


@bp.post("/deadlines/settings/calendar/delete")
@requires("loop_settings")
def calendar_delete():
    day = request.form.get("day", "").strip()
    with get_engine().begin() as conn:
        c = calendar_days.c
        row = conn.execute(select(c.day, c.working, c.note).where(c.day == day)).first()
        if row is not None:
            conn.execute(calendar_days.delete().where(c.day == day))
            audit.record(conn, "loop.calendar.delete", f"day:{day}", dict(row._mapping), None)
    if row is None:
        return _page(_("day: no calendar entry for %(day)r", day=day[:20]), 400)
    return _back()
