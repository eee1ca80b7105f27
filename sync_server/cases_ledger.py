"""The ledger (台账) of complex 差评 cases: deadline and progress of each,
and its export in the layout district offices use (title, period, unit,
header row, one row a case, totals), as Excel (openpyxl) or CSV.

A case is in the ledger when it was classified `ledger`; the period is the
time the case was opened (local days in Asia/Shanghai). Voided cases stay listed, marked, and
count apart in the totals.
"""

from __future__ import annotations

import datetime as dt

from flask_babel import gettext as _
from sqlalchemy import and_, select

from sync_server import deadlines
from sync_server.cases import unit_names
from sync_server.cases_workflow import STATE_LABELS, VERDICT_LABELS
from sync_server.schema_cases import case_steps, cases
from sync_server.web import local_time

MAX_ROWS = 20_000


def _now_second() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def on_time(case: dict) -> bool | None:
    """Rectified by the deadline (True), after it (False), not yet (None):
    deadlines.on_time, the definition the rankings count with too."""
    return deadlines.on_time(case["rectified_at"], case["due_at"])


def rows(engine, units=None, since=None, until=None) -> list[dict]:
    """The ledger's cases (`units`: the caller's scope or the subtree asked
    for, None for all), oldest first, each with its latest note."""
    c = cases.c
    conditions = [c.kind == "ledger"]
    if units is not None:
        conditions.append(c.unit_id.in_(sorted(units)))
    if since:
        conditions.append(c.created_at >= since)
    if until:
        conditions.append(c.created_at <= until)  # "…59.5Z" sorts before "…59Z"
    with engine.connect() as conn:
        found = [
            dict(r._mapping)
            for r in conn.execute(
                select(cases).where(and_(*conditions)).order_by(c.id).limit(MAX_ROWS)
            )
        ]
        names = unit_names(conn)
        notes = {}
        if found:
            s = case_steps.c
            for case_id, note in conn.execute(
                select(s.case_id, s.note)
                .where(s.case_id.in_([f["id"] for f in found]), s.note.is_not(None))
                .order_by(s.id)
            ):
                notes[case_id] = note  # the last one wins
    now = _now_second()
    for case in found:
        case["unit_name"] = names.get(case["unit_id"], case["unit_id"] or "")
        case["latest_note"] = notes.get(case["id"])
        case["on_time"] = on_time(case)
        case["overdue"] = bool(
            case["due_at"]
            and case["rectified_at"] is None
            and case["state"] != "voided"
            and case["due_at"] < now
        )
    return found


def totals(found: list[dict]) -> dict:
    counted = [case for case in found if case["state"] != "voided"]
    return {
        "cases": len(counted),
        "voided": len(found) - len(counted),
        "rectified": sum(1 for case in counted if case["rectified_at"]),
        "on_time": sum(1 for case in counted if case["on_time"]),
        "overdue": sum(1 for case in counted if case["overdue"]),
        "visited": sum(1 for case in counted if case["visit_verdict"]),
        "satisfied": sum(1 for case in counted if case["visit_verdict"] == "satisfied"),
        "closed": sum(1 for case in counted if case["state"] == "closed"),
    }


def _yes_no(value) -> str:
    if value is None:
        return ""
    return _("yes") if value else _("no")


def table(found: list[dict], period: str, unit_label: str) -> list[list]:
    """The export: title, period, unit, made at, header, one row a case, totals."""
    header = [
        _("Case"),
        _("Rating"),
        _("Unit"),
        _("Rated at"),
        _("Level"),
        _("Reason"),
        _("Problem found"),
        _("Classified at"),
        _("Deadline"),
        _("Progress"),
        _("Rectified at"),
        _("On time"),
        _("Return visit"),
        _("Latest note"),
    ]
    out = [
        [_("Ledger of complex bad-review cases")],
        [_("Period"), period],
        [_("Unit"), unit_label],
        [_("Made"), local_time(_now_second())[:16]],
        header,
    ]
    for case in found:
        verdict = case["visit_verdict"]
        out.append(
            [
                case["id"],
                case["record_id"],
                case["unit_name"],
                local_time(case["effective_at"]),
                case["stars"],
                case["reason"] or "",
                case["problem"] or "",
                local_time(case["classified_at"]),
                local_time(case["due_at"]),
                str(STATE_LABELS.get(case["state"], case["state"])),
                local_time(case["rectified_at"]),
                _yes_no(case["on_time"]),
                str(VERDICT_LABELS[verdict]) if verdict in VERDICT_LABELS else "",
                case["latest_note"] or "",
            ]
        )
    t = totals(found)
    out.append(
        [
            _("Total"),
            _("%(cases)s cases, %(voided)s voided", cases=t["cases"], voided=t["voided"]),
            "",
            "",
            "",
            "",
            "",
            "",
            _("%(overdue)s overdue", overdue=t["overdue"]),
            _("%(closed)s closed", closed=t["closed"]),
            _("%(rectified)s rectified", rectified=t["rectified"]),
            _("%(on_time)s on time", on_time=t["on_time"]),
            _(
                "%(visited)s visited, %(satisfied)s satisfied",
                visited=t["visited"],
                satisfied=t["satisfied"],
            ),
            "",
        ]
    )
    return out
