"""The daily digest: the 差评 cases due soon and overdue, per unit.

`build(conn, now_utc, scope)` reads the open cases (not closed, not voided)
that have a deadline and sorts them by unit into overdue (red), due soon
(yellow, within the `due_soon_hours` setting) and later; cases still
waiting for their classification have no deadline yet and are counted
apart. It carries the calendar's warnings (a year whose holidays nobody has
entered). The page /digest shows it; `hcp collector digest` prints it and
can write it to a file (sync_server/rankings_cli.py).

Nothing of the rater is in it: no contact, no comment, only the case number,
its window and item, its deadline and its state.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from sync_server import deadlines, org, workdays
from sync_server.schema_cases import cases

DONE_STATES = ("closed", "voided")


def build(conn, now_utc: str | None = None, scope=None, unit: str | None = None) -> dict:
    """The digest at `now_utc` for the units in `scope` (None: all), or the
    subtree of `unit`."""
    now_utc = now_utc or deadlines.format_utc(dt.datetime.now(dt.UTC))
    soon = deadlines.setting(conn, "due_soon_hours")
    names = {u["id"]: u["name"] for u in org.units(conn, include_retired=True)}
    wanted = None if unit is None else org.subtree_ids(conn, unit)
    if scope is not None:
        wanted = set(scope) if wanted is None else wanted & set(scope)
    c = cases.c
    query = select(
        c.id, c.unit_id, c.state, c.kind, c.due_at, c.window_id, c.item_code, c.created_at
    ).where(c.state.not_in(DONE_STATES))
    if wanted is not None:
        query = query.where(c.unit_id.in_(sorted(wanted)))
    by_unit: dict = {}
    for case in conn.execute(query.order_by(c.due_at, c.id)):
        key = case.unit_id or ""
        entry = by_unit.setdefault(
            key,
            {
                "unit_id": case.unit_id,
                "name": names.get(case.unit_id, case.unit_id or ""),
                "overdue": [],
                "due_soon": [],
                "later": 0,
                "unclassified": 0,
            },
        )
        if case.due_at is None:
            entry["unclassified"] += 1
            continue
        state = deadlines.state(case.due_at, now_utc, soon)
        if state == "ok":
            entry["later"] += 1
            continue
        entry[state].append(
            {
                "id": case.id,
                "state": case.state,
                "kind": case.kind,
                "due_at": case.due_at,
                "window_id": case.window_id,
                "item_code": case.item_code,
            }
        )
    units = sorted(
        by_unit.values(),
        key=lambda e: (-len(e["overdue"]), -len(e["due_soon"]), e["unit_id"] or ""),
    )
    today = deadlines.local_day(now_utc)
    return {
        "now": now_utc,
        "day": today.isoformat(),
        "due_soon_hours": soon,
        "warnings": workdays.warnings(conn, today),
        "units": units,
        "totals": {
            "overdue": sum(len(e["overdue"]) for e in units),
            "due_soon": sum(len(e["due_soon"]) for e in units),
            "later": sum(e["later"] for e in units),
            "unclassified": sum(e["unclassified"] for e in units),
        },
    }


def as_text(digest: dict) -> str:
    """The digest as plain text for the terminal or a file, in the UI language."""
    from flask_babel import gettext as _

    lines = [
        _("Daily digest of 差评 cases, %(day)s", day=digest["day"]),
        _(
            "Overdue %(overdue)s, due soon %(due_soon)s, later %(later)s, not classified %(unclassified)s",  # noqa: E501
            **digest["totals"],
        ),
    ]
    lines += [_("Warning: %(text)s", text=text) for text in digest["warnings"]]
    for entry in digest["units"]:
        if not entry["overdue"] and not entry["due_soon"]:
            continue
        lines.append("")
        lines.append(
            _(
                "%(name)s (%(unit)s): overdue %(overdue)s, due soon %(due_soon)s",
                name=entry["name"] or "—",
                unit=entry["unit_id"] or "—",
                overdue=len(entry["overdue"]),
                due_soon=len(entry["due_soon"]),
            )
        )
        for label, key in ((_("overdue"), "overdue"), (_("due soon"), "due_soon")):
            for case in entry[key]:
                lines.append(
                    f"  #{case['id']}  {label}  {_local(case['due_at'])}"
                    f"  {case['window_id'] or ''}  {case['item_code'] or ''}".rstrip()
                )
    return "\n".join(lines) + "\n"


def _local(utc_text: str) -> str:
    moment = deadlines.parse_utc(utc_text).astimezone(deadlines.LOCAL)
    return moment.strftime("%Y-%m-%d %H:%M")
