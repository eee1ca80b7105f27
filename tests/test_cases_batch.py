# ruff: noqa: F811 (the world fixture is imported from test_cases)
"""Making the cases of a batch: the same units as ever for every kind of rule
(item, window, staff member, the unit the rating belongs to), and a batch of
差评 costs the cases feature three reads and one write on PostgreSQL (three
inserts on SQLite) whatever its size
(counted with SQLAlchemy's statement events; hcp/cases_cost.py measures the
time)."""

from __future__ import annotations

from sqlalchemy import event, select

from sync_server import db, features
from sync_server.schema_cases import case_alerts, case_rules, case_steps, duty_contacts
from sync_server.schema_cases import cases as cases_table
from tests.test_cases import engine_of, world  # noqa: F401 (world: a fixture)

RATED = "2026-11-26T08:30:00Z"


def row(record_id, stars, **fields):
    device, seq = record_id.split(":")
    base = {
        "id": record_id, "device_id": device, "seq": int(seq), "stars": stars,
        "channel": "keypad", "rated_at": RATED, "clock": "ntp", "origin": "citizen",
        "attempt": 1, "received_at": db.utc_now(), "excluded": False, "reason_owed": False,
        "effective_at": RATED, "time_source": "device", "window_id": None, "staff_id": None,
        "item_code": None, "org_id": None,
    }  # fmt: skip
    return base | fields


def add_rule(conn, kind, subject, unit):
    conn.execute(
        case_rules.insert().values(
            match_kind=kind, match_id=subject, unit_id=unit, created_by="admin",
            created_at=db.utc_now(),
        )
    )  # fmt: skip


def test_a_batch_gets_its_units_from_each_kind_of_rule_and_three_reads(world):
    engine = engine_of(world)
    with engine.begin() as conn:
        add_rule(conn, "staff", "S07", "hall-ws")  # S07 sits in hall-xg
        add_rule(conn, "unit", "370305001", "hall-xg")  # a device set up for 闻韶街道
        add_rule(conn, "item", "ITEM-9", "370305002")
        conn.execute(
            duty_contacts.insert().values(
                unit_id="hall-ws", name="值班员", phone="0533-7000009", created_by="admin",
                created_at=db.utc_now(),
            )
        )  # fmt: skip
    batch = [
        row("kp-07:1", 1, staff_id="S07"),  # the staff rule
        row("kp-07:2", 2, org_id="370305001"),  # the unit rule, on the device's unit
        row("kp-07:3", 1, window_id="B01", item_code="ITEM-9"),  # the item rule first
        row("kp-07:4", 5, window_id="A01"),  # good: no case
        row("kp-07:5", 2, window_id="A01", org_id=""),  # no rule: its window's unit
        row("kp-07:6", 1),  # nothing known: unassigned
    ]
    seen = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()[:3]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.begin() as conn:
            features.store_evaluations(conn, engine, batch)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    c = cases_table.c
    with engine.connect() as conn:
        made = conn.execute(
            select(c.record_id, c.unit_id, c.assigned_by).order_by(c.record_id)
        ).all()
        alerts = conn.execute(
            select(case_alerts.c.unit_id, case_alerts.c.state).order_by(case_alerts.c.id)
        ).all()
    assert [tuple(m) for m in made] == [
        ("kp-07:1", "hall-ws", "rule:1"),
        ("kp-07:2", "hall-xg", "rule:2"),
        ("kp-07:3", "370305002", "rule:3"),
        ("kp-07:5", "hall-ws", "window"),
        ("kp-07:6", None, "none"),
    ]
    assert [tuple(a) for a in alerts] == [
        ("hall-ws", "pending"),
        ("hall-xg", "no_contact"),
        ("370305002", "no_contact"),
        ("hall-ws", "pending"),
        (None, "no_contact"),
    ]
    after_figures = seen[seen.index("INSERT INTO figures_daily") + 1 :]  # the cases' turn
    of_cases = [
        s for s in after_figures
        if "placements" in s or "case_rules" in s or "duty_contacts" in s
        or s.split()[-1] in ("cases", "case_steps", "case_alerts") or s.startswith("WITH made AS")
    ]  # fmt: skip
    reads = [
        "SELECT placements.kind, placements.subject_id,",
        "SELECT case_rules.match_kind, case_rules.match_id,",
        "SELECT duty_contacts.unit_id, duty_contacts.name,",
    ]
    if engine.dialect.name == "postgresql":  # the cases, steps and alerts in one statement
        assert of_cases == [*reads, "WITH made AS"]
    else:
        assert of_cases == [
            *reads,
            "INSERT INTO cases",
            "INSERT INTO case_steps",
            "INSERT INTO case_alerts",
        ]


def test_a_rating_with_a_case_already_gets_no_second_and_the_others_their_own_steps(world):
    engine = engine_of(world)
    with engine.begin() as conn:
        conn.execute(
            duty_contacts.insert().values(
                unit_id="hall-ws", name="值班员", phone="0533-7000009", created_by="admin",
                created_at=db.utc_now(),
            )
        )  # fmt: skip
        conn.execute(
            cases_table.insert().values(
                record_id="kp-08:2", unit_id="370305002", assigned_by="manual", state="verified",
                stars=2, effective_at=RATED, reopened=0, created_at=RATED, updated_at=RATED,
            )
        )  # fmt: skip
    batch = [
        row("kp-08:1", 1, window_id="A01"),  # A01 sits in hall-ws
        row("kp-08:2", 2, window_id="A01"),  # has its case already
        row("kp-08:3", 2, reason_owed=True),  # nothing known: unassigned
    ]
    with engine.begin() as conn:
        features.store_evaluations(conn, engine, batch)
    c, s, a = cases_table.c, case_steps.c, case_alerts.c
    with engine.connect() as conn:
        made = conn.execute(
            select(c.id, c.record_id, c.unit_id, c.assigned_by, c.state, c.reason_owed).order_by(
                c.id
            )
        ).all()
        steps = conn.execute(
            select(s.case_id, s.action, s.to_state, s.actor, s.role, s.detail).order_by(s.id)
        ).all()
        alerts = conn.execute(
            select(a.case_id, a.unit_id, a.recipients, a.state, a.attempts).order_by(a.id)
        ).all()
    kept, first, third = made
    assert tuple(kept[1:]) == ("kp-08:2", "370305002", "manual", "verified", False)
    assert tuple(first[1:]) == ("kp-08:1", "hall-ws", "window", "open", False)
    assert tuple(third[1:]) == ("kp-08:3", None, "none", "open", True)
    assert [tuple(step) for step in steps] == [
        (first.id, "open", "open", "system", "system", '{"assigned_by": "window", "unit_id": "hall-ws"}'),
        (third.id, "open", "open", "system", "system", '{"assigned_by": "none", "unit_id": null}'),
    ]  # fmt: skip
    contact = '[{"name": "值班员", "phone": "0533-7000009", "email": null}]'
    assert [tuple(alert) for alert in alerts] == [
        (first.id, "hall-ws", contact, "pending", 0),
        (third.id, None, "[]", "no_contact", 0),
    ]


def test_where_a_batch_was_handled_is_what_org_placed_at_says_in_sql(world):
    """Each 差评's window, staff and item units found in Python equal
    org.placed_at's in SQL, at the edges of the spans too (a move at T: the
    old span ends at T, the new one starts at T)."""
    from sqlalchemy import literal

    from sync_server import cases, org

    engine = engine_of(world)
    spans = [
        ("window", "WX", "unit-a", "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"),
        ("window", "WX", "unit-b", "2026-06-01T00:00:00Z", None),
        ("staff", "SX", "unit-c", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        ("item", "IX", "unit-d", "2026-02-01T00:00:00Z", None),
    ]
    with engine.begin() as conn:
        for kind, subject, unit, start, end in spans:
            conn.execute(
                db.placements.insert().values(
                    kind=kind, subject_id=subject, unit_id=unit, valid_from=start, valid_to=end
                )
            )
    times = ["2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z", "2026-03-15T00:00:00Z",
             "2026-04-01T00:00:00Z", "2026-05-31T23:59:59Z", "2026-06-01T00:00:00Z"]  # fmt: skip
    rows = [
        row(f"kp-09:{n}", 1, window_id=w, staff_id=s, item_code=i, org_id=o, effective_at=at)
        for n, (at, (w, s, i, o)) in enumerate(
            (
                (at, subjects)
                for at in times
                for subjects in (("WX", "SX", "IX", "o-1"), ("WY", None, None, None))
            ),
            start=1,
        )
    ]
    with engine.connect() as conn:
        found = cases._where_they_were(conn, rows)
        for r in rows:

            def sql(kind, subject, r=r):
                at = literal(r["effective_at"])
                return conn.execute(select(org.placed_at(kind, literal(subject), at))).scalar()

            expected = (
                sql("window", r["window_id"]), sql("staff", r["staff_id"]),
                sql("item", r["item_code"]), r["org_id"],
            )  # fmt: skip
            assert tuple(found[r["id"]]) == expected, r
    assert {found[f"kp-09:{n}"].window_unit for n in (3, 9, 11)} == {"unit-a", "unit-b"}
