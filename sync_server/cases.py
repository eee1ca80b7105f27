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
with some costs three reads (their units, the rules, the duty contacts) and
three bulk inserts (cases, their first steps, their alerts), whatever its size.
"""

from __future__ import annotations

import functools
import json

from sqlalchemy import and_, bindparam, func, select

from protocols.levels import BAD_STARS
from sync_server import db, org
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


@functools.cache
def _where_query():
    ev = db.evaluations.c
    return select(
        ev.id,
        org.placed_at("window", ev.window_id, ev.effective_at, "case").label("window_unit"),
        org.placed_at("staff", ev.staff_id, ev.effective_at, "case").label("staff_unit"),
        org.placed_at("item", ev.item_code, ev.effective_at, "case").label("item_unit"),
        ev.org_id,
    ).where(ev.id.in_(bindparam("ids", expanding=True)))


def _where_they_were(conn, record_ids: list[str]) -> dict:
    """record id -> the units of its window, staff member and item in its time
    (one query a batch, built once: the ingest is hot)."""
    return {row.id: row for row in conn.execute(_where_query(), {"ids": record_ids})}


def choose_unit(row: dict, placed, rules: dict) -> tuple[str | None, str]:
    """(unit, how) for one rating: `placed` from _where_they_were, `rules`
    {(match_kind, match_id): (rule id, unit)}. The order is the module's."""
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


def _rules_for(conn, subjects: set[str]) -> dict:
    r = case_rules.c
    if not subjects:
        return {}
    found = conn.execute(
        select(r.id, r.match_kind, r.match_id, r.unit_id).where(r.match_id.in_(sorted(subjects)))
    )
    return {(row.match_kind, row.match_id): (row.id, row.unit_id) for row in found}


def _contacts_of(conn, unit_ids: set[str]) -> dict:
    d = duty_contacts.c
    found: dict = {}
    if not unit_ids:
        return found
    rows = conn.execute(
        select(d.unit_id, d.name, d.phone, d.email)
        .where(d.unit_id.in_(sorted(unit_ids)))
        .order_by(d.unit_id, d.id)
    )
    for row in rows:
        found.setdefault(row.unit_id, []).append(
            {"name": row.name, "phone": row.phone, "email": row.email}
        )
    return found


def after_store(conn, rows: list[dict]) -> None:
    """A case for each counted 差评 among the new `rows` (features.py), in
    the transaction that stores them: the rating and its case are stored
    together or not at all. A rating already with a case gets no second."""
    bad = [row for row in rows if _counted_bad(row)]
    if not bad:
        return
    ids = [row["id"] for row in bad]
    placed = _where_they_were(conn, ids)
    subjects = {row.get(k) for row in bad for k in ("item_code", "window_id", "staff_id")}
    subjects |= {p.window_unit or p.staff_unit or p.org_id for p in placed.values()}
    rules = _rules_for(conn, {s for s in subjects if s})
    now = db.utc_now()
    new_cases = []
    for row in bad:
        unit_id, how = choose_unit(row, placed.get(row["id"]), rules)
        new_cases.append(
            {
                "record_id": row["id"],
                "unit_id": unit_id,
                "assigned_by": how,
                "state": "open",
                "stars": row["stars"],
                "effective_at": row.get("effective_at") or row["rated_at"],
                "item_code": row.get("item_code"),
                "window_id": row.get("window_id"),
                "staff_id": row.get("staff_id"),
                "reason_owed": bool(row.get("reason_owed")),
                "reopened": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    insert = db.insert_ignoring_duplicates(_engine_of(conn), cases, "record_id")
    made = conn.execute(insert.returning(cases.c.id, cases.c.record_id), new_cases).all()
    if not made:
        return
    case_ids = {record_id: case_id for case_id, record_id in made}
    by_record = {c["record_id"]: c for c in new_cases}
    contacts = _contacts_of(conn, {c["unit_id"] for c in new_cases if c["unit_id"]})
    steps, alerts = [], []
    for record_id, case_id in case_ids.items():
        case = by_record[record_id]
        detail = {"unit_id": case["unit_id"], "assigned_by": case["assigned_by"]}
        steps.append(
            {
                "case_id": case_id,
                "action": "open",
                "from_state": None,
                "to_state": "open",
                "actor": SYSTEM,
                "role": SYSTEM,
                "at": now,
                "note": None,
                "detail": json.dumps(detail, sort_keys=True),
            }
        )
        recipients = contacts.get(case["unit_id"], [])
        alerts.append(
            {
                "case_id": case_id,
                "unit_id": case["unit_id"],
                "recipients": json.dumps(recipients, ensure_ascii=False),
                "state": "pending" if recipients else "no_contact",
                "attempts": 0,
                "created_at": now,
            }
        )
    conn.execute(case_steps.insert(), steps)
    conn.execute(case_alerts.insert(), alerts)


def _engine_of(conn):
    return conn.engine


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
