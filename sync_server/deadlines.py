"""Deadlines of 差评 cases: rules per jurisdiction over the working-day calendar.

A rule belongs to a unit and covers its subtree; the nearest rule up the
tree wins, and with none the built-in default applies (Linzi: 7 natural
days for a general problem, 15 for a complex one). Each kind of problem has
a number of days and a basis:

- ``natural``: calendar days; the day the case starts is not counted, the
  deadline is the end (23:59:59 Beijing time) of the n-th day after it;
- ``working``: the n-th working day after the start day
  (sync_server/workdays.py: holidays and adjusted working weekends), to the
  end of that day.

Linyi's 1/5/15 working days are immediate=1 working, general=5 working,
complex=15 working; Sichuan's 15 working days are general=complex=15
working. `due_at` answers a deadline, `state` says whether it is near.

Loop settings (`loop_settings`, `SETTINGS`) are read with `setting(conn, key)`.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from sqlalchemy import and_, func, select
from sqlalchemy.sql.elements import ColumnElement

from sync_server import db, org
from sync_server.schema_rankings import deadline_rules, loop_settings
from sync_server.workdays import Calendar

LOCAL = ZoneInfo("Asia/Shanghai")
KINDS = ("immediate", "general", "complex")
BASES = ("natural", "working")
MAX_DAYS = 365
# Linzi's rule (DOMAIN §5); immediate (立行立改) falls back to general when a
# rule gives it no days of its own
DEFAULT_RULE = {
    "unit_id": None,
    "immediate_days": None,
    "immediate_basis": None,
    "general_days": 7,
    "general_basis": "natural",
    "complex_days": 15,
    "complex_basis": "natural",
    "note": None,
}
# key: (default, lowest, highest, meaning)
SETTINGS = {
    "due_soon_hours": (48, 1, 24 * 30, "a deadline this near is due soon (yellow)"),
    "bottom_places": (3, 1, 50, "the last this many units of a ranking are near the bottom"),
    "bottom_periods": (2, 2, 12, "near the bottom this many periods running: listed"),
    "praise_places": (3, 1, 50, "the first this many units of a ranking are praised"),
}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class RuleError(ValueError):
    """A rule or setting that cannot be taken; str() names the field."""


def parse_utc(text: str) -> dt.datetime:
    """UTC text (YYYY-MM-DDTHH:MM:SS[.ffffff]Z) as an aware datetime."""
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"time: must be UTC text ending in Z, got {text!r}")
    return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)


def format_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(TIME_FORMAT)


def local_day(utc_text: str) -> dt.date:
    """The Beijing-time date of a UTC time."""
    return parse_utc(utc_text).astimezone(LOCAL).date()


def end_of_local_day(day: dt.date) -> str:
    """23:59:59 Beijing time of `day`, as UTC text."""
    return format_utc(dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=LOCAL))


# --- rules ------------------------------------------------------------------------


def check_rule(values: dict) -> dict:
    """A rule's fields checked and normalised; RuleError names the bad field."""
    rule = {}
    for kind in KINDS:
        days, basis = values.get(f"{kind}_days"), values.get(f"{kind}_basis")
        if kind == "immediate" and days in (None, ""):
            rule["immediate_days"] = rule["immediate_basis"] = None
            continue
        try:
            days = int(days)
        except (TypeError, ValueError):
            raise RuleError(
                _("%(field)s: must be a whole number of days", field=kind + "_days")
            ) from None
        if not 1 <= days <= MAX_DAYS:
            raise RuleError(
                _(
                    "%(field)s: must be 1 to %(most)s, got %(days)s",
                    field=kind + "_days",
                    most=MAX_DAYS,
                    days=days,
                )
            )
        if basis not in BASES:
            raise RuleError(
                _(
                    "%(field)s: must be natural or working, got %(basis)r",
                    field=kind + "_basis",
                    basis=basis,
                )
            )
        rule[f"{kind}_days"], rule[f"{kind}_basis"] = days, basis
    note = values.get("note") or None
    if note is not None and len(note) > 200:
        raise RuleError(_("note: at most 200 characters"))
    rule["note"] = note
    return rule


def rules(conn) -> list[dict]:
    """Every unit's own rule, by unit."""
    query = select(deadline_rules).order_by(deadline_rules.c.unit_id)
    return [dict(row._mapping) for row in conn.execute(query)]


def rule_for(conn, unit_id: str | None) -> dict:
    """The rule in force for `unit_id`: its own, else its nearest ancestor's,
    else DEFAULT_RULE. `unit_id` of the answer says whose rule it is."""
    own = {row["unit_id"]: row for row in rules(conn)}
    seen = set()
    current = unit_id
    while current is not None and current not in seen:
        if current in own:
            return own[current]
        seen.add(current)
        current = org.placed_in(conn, "units", current)
    return dict(DEFAULT_RULE)


def set_rule(conn, unit_id: str, values: dict) -> dict:
    """Store (replace) a unit's rule; returns it. The caller audits."""
    if org.get(conn, "units", unit_id) is None:
        raise RuleError(_("unit: no unit %(unit)r", unit=str(unit_id)[:64]))
    rule = check_rule(values)
    conn.execute(deadline_rules.delete().where(deadline_rules.c.unit_id == unit_id))
    conn.execute(
        deadline_rules.insert().values(
            unit_id=unit_id, updated_by=_actor(), updated_at=db.utc_now(), **rule
        )
    )
    return {"unit_id": unit_id, **rule}


def delete_rule(conn, unit_id: str) -> bool:
    done = conn.execute(deadline_rules.delete().where(deadline_rules.c.unit_id == unit_id))
    return done.rowcount == 1


def _actor() -> str:
    from flask import has_request_context
    from flask_login import current_user

    if has_request_context() and current_user.is_authenticated:
        return current_user.actor
    return "system"


# --- deadlines --------------------------------------------------------------------


def due_on(rule: dict, kind: str, start: dt.date, calendar: Calendar) -> dt.date:
    """The last local day allowed for a problem of `kind` started on `start`."""
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "immediate" and rule.get("immediate_days") is None:
        kind = "general"
    days, basis = rule[f"{kind}_days"], rule[f"{kind}_basis"]
    if basis == "working":
        return calendar.add_working_days(start, days)
    return start + dt.timedelta(days=days)


def due_at(conn, unit_id: str, kind: str, start_utc: str) -> str:
    """When a case of `kind` ("general" | "complex", or "immediate") of
    `unit_id` started at `start_utc` is due: UTC text YYYY-MM-DDTHH:MM:SSZ,
    the end of the last allowed day in Beijing time."""
    start = local_day(start_utc)
    rule = rule_for(conn, unit_id)
    return end_of_local_day(due_on(rule, kind, start, Calendar(conn)))


def state(due_utc: str, now_utc: str, soon_hours: float | None = None) -> str:
    """ "ok", "due_soon" (within `soon_hours`, default the setting's default)
    or "overdue" (now after the deadline)."""
    if soon_hours is None:
        soon_hours = SETTINGS["due_soon_hours"][0]
    due, now = parse_utc(due_utc), parse_utc(now_utc)
    if now > due:
        return "overdue"
    if due - now <= dt.timedelta(hours=soon_hours):
        return "due_soon"
    return "ok"


def state_now(conn, due_utc: str, now_utc: str | None = None) -> str:
    """`state` with the threshold the admin set."""
    now_utc = now_utc or format_utc(dt.datetime.now(dt.UTC))
    return state(due_utc, now_utc, setting(conn, "due_soon_hours"))


def on_time(rectified_at, due_at):
    """Whether a 差评 was rectified on time (差评按期整改): rectified (整改, or
    the explanation given: the rectify step) no later than its deadline, to
    the second. The one definition the case pages, the ledger, the API and
    the rankings use; closing, feeding back and the return visit may come
    after the deadline without making the rectification late.

    Given a case's text values: True, False, or None while there is no
    deadline or no rectification yet. Given SQL columns (cases.c.rectified_at,
    cases.c.due_at): the same test as a SQL condition (false where either is
    NULL), for counting in the database."""
    if isinstance(rectified_at, ColumnElement) or isinstance(due_at, ColumnElement):
        # due_at is YYYY-MM-DDTHH:MM:SSZ, rectified_at has microseconds
        return and_(
            rectified_at.is_not(None),
            due_at.is_not(None),
            func.substr(rectified_at, 1, 19) <= func.substr(due_at, 1, 19),
        )
    if not rectified_at or not due_at:
        return None
    return rectified_at[:19] <= due_at[:19]


# --- loop settings ----------------------------------------------------------------


def setting(conn, key: str) -> int:
    default = SETTINGS[key][0]
    value = conn.execute(select(loop_settings.c.value).where(loop_settings.c.key == key)).scalar()
    return default if value is None else int(value)


def all_settings(conn) -> dict:
    return {key: setting(conn, key) for key in SETTINGS}


def set_setting(conn, key: str, value) -> int:
    if key not in SETTINGS:
        raise RuleError(_("setting: no setting %(key)r", key=key))
    _default, lowest, highest, _meaning = SETTINGS[key]
    text = str(value).strip()
    if len(text) > 12 or not text.lstrip("-").isdigit():  # a bound before int()
        raise RuleError(_("%(field)s: must be a whole number", field=key))
    number = int(text)
    if not lowest <= number <= highest:
        raise RuleError(
            _(
                "%(field)s: must be %(lowest)s to %(highest)s, got %(number)s",
                field=key,
                lowest=lowest,
                highest=highest,
                number=number,
            )
        )
    conn.execute(loop_settings.delete().where(loop_settings.c.key == key))
    conn.execute(
        loop_settings.insert().values(
            key=key, value=str(number), updated_by=_actor(), updated_at=db.utc_now()
        )
    )
    return number
