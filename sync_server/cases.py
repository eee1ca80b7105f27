"""The bad-review loop (差评闭环): a case per 差评, assigned to the unit that
handled it, and what every other part of the loop reads (issue 9).

A feature module (sync_server/features.py): `after_store` makes the cases in
the transaction that stores the ratings; `init_app` registers the pages
(cases_pages.py), the JSON API (cases_api.py) and the settings
(cases_settings.py).

The parts:

- cases.py (this module): making cases, assignment, reading cases;
- cases_workflow.py: the steps (verify → classify → rectify → feed back →
  return visit → close), reopening, appeals and their decisions;
- cases_alerts.py: telling a unit's duty contacts of a new case;
- cases_ledger.py: the ledger (台账) of complex cases and its export.

Which unit gets a case (谁办理谁负责), first match wins:

1. an admin's rule for the rating's service item (`case_rules`, item);
2. a rule for its window; 3. for its staff member;
4. a rule for the unit the rating belongs to (all of unit X's 差评 to Y);
5. the unit of its window at the rating's time; 6. of its staff member;
7. the org_id the device carried (5-7 are `org.resolved_unit`, the unit the
   figures count the rating under);
8. the unit of its service item at that time;
9. nobody: the case waits, unassigned, for an admin to assign it.

The ingest is hot: a batch without 差评 costs one pass over its rows; a batch
with some costs three reads (the placements of their windows, staff and
items, each rating's units then found in Python; the rules that name them;
the duty contacts of the units chosen) and one statement on PostgreSQL that
inserts the cases, their first steps and their alerts (three bulk inserts on
SQLite), whatever its size; each unit's JSON is made once a batch
(hcp/cases_cost.py measures the cost).
"""

from __future__ import annotations

import functools
import json
from typing import NamedTuple

from sqlalchemy import and_, bindparam, func, or_, select

from protocols.levels import BAD_STARS
from sync_server import db, figures, org, pg_array
from sync_server.schema_cases import case_alerts, case_rules, case_steps, cases, duty_contacts

# the states in their order; closed cases may be reopened, voided ones are final
WORKFLOW = ("open", "verified", "classified", "rectified", "fed_back", "visited", "closed")
STATES = (*WORKFLOW, "voided")
ACTIVE = WORKFLOW[:-1]  # still being worked on
KINDS = ("fix_now", "ledger", "explanation")  # 立行立改, 台账, 解释说明
# the deadline rule each classification takes (sync_server/deadlines.py)
DEADLINE_KINDS = {"fix_now": "immediate", "ledger": "complex", "explanation": "general"}
RULE_KINDS = ("item", "window", "staff", "unit")
SYSTEM = "system"


def init_app(app) -> None:
    from sync_server import cases_api, cases_pages, cases_settings

    cases_pages.init_app(app)
    cases_api.init_app(app)
    cases_settings.init_app(app)


# --- making cases ---------------------------------------------------------------------


def _counted_bad(row: dict) -> bool:
    return row.get("stars") in BAD_STARS and not row.get("repeat_of") and not row.get("excluded")


RULE_SUBJECTS = (("item", "item_code"), ("window", "window_id"), ("staff", "staff_id"))


class Placed(NamedTuple):
    """Where one rating was handled, at its own time."""

    window_unit: str | None
    staff_unit: str | None
    item_unit: str | None
    org_id: str | None


_SUBJECT_COLUMNS = (("window", "window_id"), ("staff", "staff_id"), ("item", "item_code"))


def _where_they_were(conn, rows: list[dict]) -> dict:
    """record id -> Placed, for new ratings: one query for the placements of
    their windows, staff members and items, each then found in Python as
    org.placed_at finds it in SQL (figures.Resolver: the span that started
    at or before the rating's time and had not ended)."""
    p = db.placements.c
    wanted = []
    for kind, column in _SUBJECT_COLUMNS:
        subjects = sorted({row[column] for row in rows if row.get(column)})
        if subjects:
            wanted.append(and_(p.kind == kind, p.subject_id.in_(subjects)))
    spans = []
    if wanted:
        query = select(p.kind, p.subject_id, p.unit_id, p.valid_from, p.valid_to)
        spans = conn.execute(query.where(or_(*wanted))).all()
    resolver = figures.Resolver(spans)
    found = {}
    for row in rows:
        at = row.get("effective_at") or row["rated_at"]  # as the case itself takes it
        found[row["id"]] = Placed(
            resolver.placed("window", row.get("window_id"), at),
            resolver.placed("staff", row.get("staff_id"), at),
            resolver.placed("item", row.get("item_code"), at),
            row.get("org_id"),
        )
    return found


def _rules_for(conn, rows: list[dict], placed: dict) -> dict:
    """{(match_kind, match_id): (rule id, unit)} for the rules that name the
    ratings' items, windows, staff members or the units they belong to: one
    query (one index lookup a subject: the rules have one per subject)."""
    subjects: dict[str, set] = {kind: set() for kind in RULE_KINDS}
    for row in rows:
        for kind, column in RULE_SUBJECTS:
            if row.get(column):
                subjects[kind].add(row[column])
        where = placed[row["id"]]
        unit = where.window_unit or where.staff_unit or where.org_id
        if unit:
            subjects["unit"].add(unit)
    r = case_rules.c
    wanted = [
        and_(r.match_kind == kind, r.match_id.in_(sorted(ids)))
        for kind, ids in subjects.items()
        if ids
    ]
    if not wanted:
        return {}
    query = select(r.match_kind, r.match_id, r.id, r.unit_id).where(or_(*wanted))
    return {
        (kind, subject): (rule_id, unit) for kind, subject, rule_id, unit in conn.execute(query)
    }


def choose_unit(row: dict, placed, rules: dict) -> tuple[str | None, str]:
    """(unit, how) for one rating: `placed` its Placed (_where_they_were),
    `rules` {(match_kind, match_id): (rule id, unit)} (the batch's, or more:
    only the rating's own subjects are looked up). The order is the module's."""
    resolved = None
    if placed is not None:
        resolved = placed.window_unit or placed.staff_unit or placed.org_id
    for kind, subject in (
        ("item", row.get("item_code")),
        ("window", row.get("window_id")),
        ("staff", row.get("staff_id")),
        ("unit", resolved),
    ):
        if subject and (kind, subject) in rules:
            rule_id, unit_id = rules[(kind, subject)]
            return unit_id, f"rule:{rule_id}"
    if placed is not None:
        for how, unit_id in (
            ("window", placed.window_unit),
            ("staff", placed.staff_unit),
            ("device", placed.org_id),
            ("item", placed.item_unit),
        ):
            if unit_id:
                return unit_id, how
    return None, "none"


@functools.cache
def _contacts_query():
    d = duty_contacts.c
    return (
        select(d.unit_id, d.name, d.phone, d.email)
        .where(d.unit_id.in_(bindparam("units", expanding=True)))
        .order_by(d.unit_id, d.id)
    )


def _contacts_of(conn, unit_ids: set[str]) -> dict:
    found: dict = {}
    if not unit_ids:
        return found
    for row in conn.execute(_contacts_query(), {"units": sorted(unit_ids)}):
        found.setdefault(row.unit_id, []).append(
            {"name": row.name, "phone": row.phone, "email": row.email}
        )
    return found


# the columns of a new case, in the order the writes below send them
CASE_COLUMNS = (
    "record_id", "unit_id", "assigned_by", "state", "stars", "effective_at", "item_code",
    "window_id", "staff_id", "reason_owed", "reopened", "created_at", "updated_at",
)  # fmt: skip
_CASE_TYPES = (
    "text", "text", "text", "text", "smallint", "text", "text",
    "text", "text", "boolean", "smallint", "text", "text",
)  # fmt: skip
STEP_COLUMNS = (
    "case_id",
    "action",
    "from_state",
    "to_state",
    "actor",
    "role",
    "at",
    "note",
    "detail",
)
ALERT_COLUMNS = ("case_id", "unit_id", "recipients", "state", "attempts", "created_at")

# PostgreSQL: the cases, their open steps and their alerts in one statement
# (one round trip a batch): the cases' rows arrive as one array per column,
# the steps and alerts join the ids the insert gave, in the cases' order.
_WRITE_POSTGRESQL = (
    f"WITH made AS (INSERT INTO cases ({', '.join(CASE_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{t}[]' for t in _CASE_TYPES)}) "
    "ON CONFLICT (record_id) DO NOTHING RETURNING id, record_id, unit_id), "
    "news AS (SELECT made.id, made.unit_id, d.detail, d.recipients, d.alert FROM made "
    "JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
    "AS d(record_id, detail, recipients, alert) ON d.record_id = made.record_id), "
    f"steps AS (INSERT INTO case_steps ({', '.join(STEP_COLUMNS)}) "
    "SELECT id, 'open', NULL, 'open', %s, %s, %s, NULL, detail FROM news ORDER BY id) "
    f"INSERT INTO case_alerts ({', '.join(ALERT_COLUMNS)}) "
    "SELECT id, unit_id, recipients, alert, 0, %s FROM news ORDER BY id"
)
SQLITE_CHUNK = 500  # cases a statement on SQLite (13 variables each; it allows 32,766)


def after_store(conn, rows: list[dict]) -> None:
    """A case for each counted 差评 among the new `rows` (features.py), in
    the transaction that stores them: the rating and its case are stored
    together or not at all. A rating already with a case gets no second.
    Three reads a batch (the placements of its 差评's windows, staff and
    items; the rules that name them or their units; the duty contacts of the
    units chosen) and one write on PostgreSQL (the
    cases, their first steps and their alerts in one statement), three on
    SQLite; each unit's JSON is made once a batch."""
    bad = [row for row in rows if _counted_bad(row)]
    if not bad:
        return
    placed = _where_they_were(conn, bad)
    rules = _rules_for(conn, bad, placed)
    now = db.utc_now()
    new_cases = []
    for row in bad:
        unit_id, how = choose_unit(row, placed[row["id"]], rules)
        new_cases.append(
            (
                row["id"], unit_id, how, "open", row["stars"],
                row.get("effective_at") or row["rated_at"], row.get("item_code"),
                row.get("window_id"), row.get("staff_id"), bool(row.get("reason_owed")),
                0, now, now,
            )
        )  # fmt: skip
    contacts = _contacts_of(conn, {case[1] for case in new_cases if case[1]})
    details: dict = {}  # (unit, how) -> the open step's detail, as JSON
    recipients: dict = {}  # unit -> its duty contacts, as JSON
    follow = []  # per case: record id, the open step's detail, recipients, alert state
    for case in new_cases:
        record_id, unit_id, how = case[0], case[1], case[2]
        if (unit_id, how) not in details:
            details[(unit_id, how)] = json.dumps(
                {"unit_id": unit_id, "assigned_by": how}, sort_keys=True
            )
        if unit_id not in recipients:
            recipients[unit_id] = json.dumps(contacts.get(unit_id, []), ensure_ascii=False)
        state = "pending" if contacts.get(unit_id) else "no_contact"
        follow.append((record_id, details[(unit_id, how)], recipients[unit_id], state))
    if conn.dialect.name == "postgresql":
        kinds = (*_CASE_TYPES, "text", "text", "text", "text")
        columns = [*zip(*new_cases, strict=True), *zip(*follow, strict=True)]
        columns = [
            pg_array.param(list(column), kind) for column, kind in zip(columns, kinds, strict=True)
        ]
        conn.exec_driver_sql(_WRITE_POSTGRESQL, (*columns, SYSTEM, SYSTEM, now, now))
        return
    _write_sqlite(conn, new_cases, follow, now)


def _write_sqlite(conn, new_cases: list[tuple], follow: list[tuple], now: str) -> None:
    """SQLite: the cases in multi-row inserts that return the ids given (a
    case that exists already returns none and gets no step or alert), then
    the steps and the alerts of those made, in their ids' order, each with
    the driver's executemany."""
    made = []
    marks = "(" + ", ".join("?" * len(CASE_COLUMNS)) + ")"
    for start in range(0, len(new_cases), SQLITE_CHUNK):
        chunk = new_cases[start : start + SQLITE_CHUNK]
        sql = (
            f"INSERT INTO cases ({', '.join(CASE_COLUMNS)}) VALUES "
            + ", ".join([marks] * len(chunk))
            + " ON CONFLICT (record_id) DO NOTHING RETURNING id, record_id"
        )
        made += conn.exec_driver_sql(sql, tuple(v for case in chunk for v in case)).all()
    if not made:
        return
    made.sort()
    by_record = {f[0]: (case, f) for case, f in zip(new_cases, follow, strict=True)}
    steps, alerts = [], []
    for case_id, record_id in made:
        case, (_, detail, recipients, state) = by_record[record_id]
        steps.append((case_id, "open", None, "open", SYSTEM, SYSTEM, now, None, detail))
        alerts.append((case_id, case[1], recipients, state, 0, now))
    for table, names, values in (
        ("case_steps", STEP_COLUMNS, steps),
        ("case_alerts", ALERT_COLUMNS, alerts),
    ):
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        conn.exec_driver_sql(sql, values)


# --- reading cases --------------------------------------------------------------------

LIST_COLUMNS = [c for c in cases.columns]


def case_filter(units=None, state=None, unit_subtree=None, overdue_at=None, kind=None):
    """SQL conditions on `cases`: `units` the caller's scope (None: all),
    `unit_subtree` a set of units asked for, `overdue_at` a UTC time: only
    cases not yet rectified whose deadline passed before it."""
    c = cases.c
    conditions = []
    if units is not None:
        conditions.append(c.unit_id.in_(sorted(units)) if units else c.id.is_(None))
    if unit_subtree is not None:
        conditions.append(c.unit_id.in_(sorted(unit_subtree)))
    if state:
        conditions.append(c.state == state)
    if kind:
        conditions.append(c.kind == kind)
    if overdue_at:
        conditions.append(
            and_(c.state.in_(("open", "verified", "classified")), c.due_at < overdue_at)
        )
    return and_(True, *conditions)


def list_cases(conn, where, page: int = 1, per_page: int = 50) -> dict:
    c = cases.c
    total = conn.execute(select(func.count()).select_from(cases).where(where)).scalar()
    rows = conn.execute(
        select(cases)
        .where(where)
        .order_by(c.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return {
        "items": [dict(r._mapping) for r in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
    }


def get_case(conn, case_id: int, units=None) -> dict | None:
    """One case; None when unknown or outside `units` (the caller's scope)."""
    c = cases.c
    row = conn.execute(select(cases).where(c.id == case_id)).first()
    if row is None:
        return None
    if units is not None and row.unit_id not in units:
        return None
    return dict(row._mapping)


def case_of_record(conn, record_id: str) -> dict | None:
    row = conn.execute(select(cases).where(cases.c.record_id == record_id)).first()
    return dict(row._mapping) if row else None


def steps_of(conn, case_id: int) -> list[dict]:
    s = case_steps.c
    rows = conn.execute(select(case_steps).where(s.case_id == case_id).order_by(s.id))
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["detail"] = json.loads(row.detail) if row.detail else None
        out.append(item)
    return out


def alerts_of(conn, where, limit: int = 200) -> list[dict]:
    a = case_alerts.c
    rows = conn.execute(select(case_alerts).where(where).order_by(a.id.desc()).limit(limit))
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["recipients"] = json.loads(row.recipients)
        out.append(item)
    return out


def unit_names(conn) -> dict:
    return {u["id"]: u["name"] for u in org.units(conn, include_retired=True)}
