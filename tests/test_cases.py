"""The bad-review loop (issue 9, part A) on SQLite and PostgreSQL: a case per
差评, assignment, every path of the workflow with the figures each changes,
refusals with their exact messages, and the answers against the OpenAPI
document.

The world: 闻韶街道 (370305001) holds hall-ws with window A01; 雪宫街道
(370305002) holds hall-xg with window B01 and staff member S07; service
item ITEM-9 sits in hall-xg. um manages 闻韶街道, um2 雪宫街道; viewer is
the supervisor.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import openpyxl
import pytest
from sqlalchemy import func, select

from sync_server import cases, db, deadlines, org
from sync_server.schema_cases import case_alerts, case_rules, case_steps, duty_contacts
from sync_server.schema_cases import cases as cases_table
from tests.harness.collector import AuthActions, _password_hash
from tests.harness.records import add_evaluation
from tests.test_openapi import problems

PASSWORD = "case-pass-123"
FIX_NOW = ("verify", "classify", "rectify", "feed_back", "visit", "close")


@pytest.fixture
def world(engine_app):
    app = engine_app
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        for username, unit in (("um", "370305001"), ("um2", "370305002")):
            conn.execute(
                db.users.insert().values(
                    username=username,
                    password_hash=_password_hash(PASSWORD),
                    role="unit_manager",
                    unit_id=unit,
                    created_at=db.utc_now(),
                )
            )
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "units", "hall-xg", "雪宫街道便民服务中心", "370305002", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        org.add(conn, "windows", "B01", "雪宫一号窗", "hall-xg")
        org.add(conn, "staff", "S07", "张三", "hall-xg")
        org.add(conn, "items", "ITEM-9", "营业执照", "hall-xg")
    return app


def login(app, who):
    client = app.test_client()
    auth = AuthActions(client)
    if who in ("admin", "viewer"):
        response = auth.login(who)
    else:
        response = auth.login(who, PASSWORD)
    assert response.status_code == 302
    return client


def engine_of(app):
    return app.extensions["hcp_engine"]


def case_rows(app):
    c = cases_table.c
    with engine_of(app).connect() as conn:
        return conn.execute(
            select(c.record_id, c.unit_id, c.assigned_by, c.state).order_by(c.id)
        ).all()


def check(client, path, body=None, status=200, method=None):
    """Call the API, check the status and that the answer matches the document."""
    method = method or ("POST" if body is not None else "GET")
    response = client.open(path, method=method, json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    document = client.get("/api/v1/openapi.json").get_json()
    template = _template(document, path.split("?")[0])
    operation = document["paths"][template][method.lower()]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    assert problems(response.get_json(), schema, document) == []
    return response.get_json()


def _template(document, path):
    for template in document["paths"]:
        parts, wanted = template.split("/"), path.split("/")
        if len(parts) == len(wanted) and all(
            p == w or p.startswith("{") for p, w in zip(parts, wanted, strict=True)
        ):
            exact = [p for p in parts if not p.startswith("{")]
            if all(p in wanted for p in exact):
                return template
    raise AssertionError(f"{path} is not described")


def walk(client, case_id, until="close", kind="fix_now", verdict="satisfied", **extra):
    answer = None
    for action in FIX_NOW:
        body = {"action": action, "note": f"{action} 记录"}
        if action == "classify":
            body["kind"] = kind
        if action == "visit":
            body["verdict"] = verdict
        body.update(extra.get(action, {}))
        answer = check(client, f"/api/v1/cases/{case_id}/steps", body)
        if action == until:
            break
    return answer


def summary(client):
    found = client.get("/api/v1/evaluations/summary").get_json()
    return found["bad"], found["good_rate"], found["excluded"]


def steps(app, case_id):
    s = case_steps.c
    with engine_of(app).connect() as conn:
        return conn.execute(
            select(s.action, s.from_state, s.to_state, s.actor).where(s.case_id == case_id)
        ).all()


# --- making cases -----------------------------------------------------------------------


def test_each_counted_bad_rating_gets_one_case_for_the_unit_of_its_window(world):
    engine = engine_of(world)
    for number, stars in enumerate((5, 4, 3, 2, 1), start=1):
        add_evaluation(engine, f"kp-01:{number}", stars, window_id="A01", comment="评")
    add_evaluation(engine, "kp-01:6", 1, window_id="A01", repeat_of="kp-01:5")
    add_evaluation(engine, "kp-01:7", 2, window_id="A01", excluded=True)
    assert case_rows(world) == [
        ("kp-01:4", "hall-ws", "window", "open"),
        ("kp-01:5", "hall-ws", "window", "open"),
    ]
    assert steps(world, 1) == [("open", None, "open", "system")]
    # the unit has no duty contact yet: the alert says so
    with engine.connect() as conn:
        assert conn.execute(select(case_alerts.c.state)).scalars().all() == [
            "no_contact",
            "no_contact",
        ]


def test_assignment_follows_the_rules_then_window_staff_device_and_item(world):
    engine = engine_of(world)
    with engine.begin() as conn:
        conn.execute(
            duty_contacts.insert().values(
                unit_id="hall-xg",
                name="王五",
                phone="0533-7000001",
                created_by="admin",
                created_at=db.utc_now(),
            )
        )
    add_evaluation(engine, "kp-02:1", 1, staff_id="S07")  # staff only
    add_evaluation(engine, "kp-02:2", 1, org_id="370305001")  # the device's org only
    add_evaluation(engine, "kp-02:3", 1, item_code="ITEM-9")  # the item only
    add_evaluation(engine, "kp-02:4", 1)  # nothing known
    with engine.begin() as conn:
        for kind, subject, unit in (
            ("item", "ITEM-9", "370305001"),
            ("window", "B01", "370305001"),
            ("unit", "hall-ws", "370305002"),
        ):
            conn.execute(
                case_rules.insert().values(
                    match_kind=kind,
                    match_id=subject,
                    unit_id=unit,
                    created_by="admin",
                    created_at=db.utc_now(),
                )
            )
    # an item rule beats the window's unit; a window rule beats its unit; a
    # unit rule sends all of hall-ws's to 雪宫街道
    add_evaluation(engine, "kp-02:5", 2, window_id="B01", item_code="ITEM-9")
    add_evaluation(engine, "kp-02:6", 2, window_id="B01")
    add_evaluation(engine, "kp-02:7", 2, window_id="A01")
    rows = case_rows(world)
    assert [(r.record_id, r.unit_id, r.assigned_by) for r in rows] == [
        ("kp-02:1", "hall-xg", "staff"),
        ("kp-02:2", "370305001", "device"),
        ("kp-02:3", "hall-xg", "item"),
        ("kp-02:4", None, "none"),
        ("kp-02:5", "370305001", "rule:1"),
        ("kp-02:6", "370305001", "rule:2"),
        ("kp-02:7", "370305002", "rule:3"),
    ]
    with engine.connect() as conn:
        alerts = conn.execute(
            select(case_alerts.c.case_id, case_alerts.c.state).order_by(case_alerts.c.id)
        ).all()
    assert [tuple(a) for a in alerts] == [
        (1, "pending"),
        (2, "no_contact"),
        (3, "pending"),
        (4, "no_contact"),
        (5, "no_contact"),
        (6, "no_contact"),
        (7, "no_contact"),
    ]
    # an unassigned case waits for the admin; nobody can work it before
    admin = login(world, "admin")
    refused = check(admin, "/api/v1/cases/4/steps", {"action": "verify", "note": "x"}, 400)
    assert refused == {"error": "unit: this case has no unit yet; an admin assigns it first"}


def test_a_rating_stored_twice_makes_no_second_case(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="慢")
    rows = [{"id": "kp-01:1", "stars": 1, "rated_at": "2026-11-26T08:30:00Z"}]
    with engine.begin() as conn:
        cases.after_store(conn, rows)  # as if the batch came again
    assert len(case_rows(world)) == 1
    assert len(steps(world, 1)) == 1


# --- the paths ---------------------------------------------------------------------------


def test_fixed_at_once_walks_every_step_and_changes_no_figure(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="太慢")
    add_evaluation(engine, "kp-01:2", 5, window_id="A01")
    um = login(world, "um")
    before = summary(um)
    assert before == (1, 0.5, 0)
    answer = walk(um, 1)
    case = answer["case"]
    assert case["state"] == "closed" and case["kind"] == "fix_now"
    assert case["deadline_kind"] == "immediate" and case["visit_verdict"] == "satisfied"
    with engine.connect() as conn:
        created = conn.execute(select(cases_table.c.created_at)).scalar()
        expected_due = deadlines.due_at(conn, "hall-ws", "immediate", created[:19] + "Z")
    assert case["due_at"] == expected_due
    assert case["on_time"] is True and case["deadline_state"] is None
    assert [(s["action"], s["to_state"], s["actor"]) for s in answer["steps"]] == [
        ("open", "open", "system"),
        ("verify", "verified", "um"),
        ("classify", "classified", "um"),
        ("rectify", "rectified", "um"),
        ("feed_back", "fed_back", "um"),
        ("visit", "visited", "um"),
        ("close", "closed", "um"),
    ]
    assert summary(um) == before  # a fixed 差评 is still a 差评
    with engine.connect() as conn:
        actions = conn.execute(
            select(db.audit_log.c.action).where(db.audit_log.c.target == "cases:1")
        ).scalars()
        assert list(actions) == [f"case.{a}" for a in FIX_NOW]


def test_a_ledger_case_gets_the_complex_deadline_and_is_exported(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 2, window_id="A01", comment="材料反复要")
    um = login(world, "um")
    walk(um, 1, until="rectify", kind="ledger", verify={"problem": "系统不互通"})
    with engine.connect() as conn:
        created = conn.execute(select(cases_table.c.created_at)).scalar()
        expected_due = deadlines.due_at(conn, "hall-ws", "complex", created[:19] + "Z")
    ledger = check(um, "/api/v1/cases/ledger")
    assert [(i["id"], i["due_at"], i["state"]) for i in ledger["items"]] == [
        (1, expected_due, "rectified")
    ]
    assert ledger["items"][0]["latest_note"] == "rectify 记录"
    assert ledger["totals"] == {
        "cases": 1,
        "voided": 0,
        "rectified": 1,
        "on_time": 1,
        "overdue": 0,
        "visited": 0,
        "satisfied": 0,
        "closed": 0,
    }
    # the other street's manager sees an empty ledger
    assert check(login(world, "um2"), "/api/v1/cases/ledger")["items"] == []

    book = openpyxl.load_workbook(io.BytesIO(um.get("/cases/ledger/export?format=xlsx").data))
    sheet = list(book.active.values)
    assert sheet[0][0] == "复杂差评整改台账"
    assert sheet[1][0] == "统计时段" and sheet[2][1] == "闻韶街道 (370305001)"
    assert sheet[4][:3] == ("案件", "评价", "单位")
    assert sheet[5][:3] == (1, "kp-01:1", "闻韶街道便民服务中心")
    # times in Beijing time, as district offices read them
    local_due = dt.datetime.fromisoformat(expected_due.replace("Z", "+00:00")) + dt.timedelta(
        hours=8
    )
    assert sheet[4][3] == "评价时间" and sheet[4][8] == "整改期限"
    assert sheet[5][6] == "系统不互通" and sheet[5][8] == local_due.strftime("%Y-%m-%d %H:%M:%S")
    assert sheet[6][0] == "合计" and sheet[6][1] == "1 件，作废 0 件"
    rows = list(csv.reader(io.StringIO(um.get("/cases/ledger/export?format=csv").data.decode("utf-8-sig"))))  # fmt: skip
    assert rows[5][:2] == ["1", "kp-01:1"] and rows[6][0] == "合计"


def test_an_explanation_takes_the_general_deadline(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="不给办")
    um = login(world, "um")
    case = walk(um, 1, kind="explanation")["case"]
    with engine.connect() as conn:
        expected_due = deadlines.due_at(conn, "hall-ws", "general", case["created_at"][:19] + "Z")
    assert (case["kind"], case["deadline_kind"], case["due_at"]) == (
        "explanation",
        "general",
        expected_due,
    )
    assert case["state"] == "closed"


def test_an_upheld_appeal_changes_no_figure_and_the_case_goes_on(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="态度差")
    add_evaluation(engine, "kp-01:2", 4, window_id="A01")
    um, viewer = login(world, "um"), login(world, "viewer")
    before = summary(viewer)
    appeal = check(um, "/api/v1/appeals", {"record_id": "kp-01:1", "evidence": "当事人不在岗"}, 201)
    assert (appeal["state"], appeal["case_id"], appeal["has_file"]) == ("pending", 1, False)
    assert check(viewer, "/api/v1/appeals")["items"][0]["id"] == appeal["id"]
    decided = check(
        viewer,
        f"/api/v1/appeals/{appeal['id']}/decision",
        {"outcome": "upheld", "reason": "监控显示确有其事"},
    )
    assert decided["case"]["appeal_state"] == "upheld" and decided["case"]["state"] == "open"
    assert decided["appeals"][0]["decided_by"] == "viewer"
    assert summary(viewer) == before == (1, 0.5, 0)
    again = check(um, "/api/v1/appeals", {"record_id": "kp-01:1", "evidence": "再议"}, 400)
    assert again == {"error": "appeal: this case was appealed already and the appeal decided"}
    assert walk(um, 1)["case"]["state"] == "closed"


@pytest.mark.parametrize("outcome", ["mistaken", "malicious"])
def test_a_voided_rating_leaves_every_figure_and_stays_stored(world, outcome):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="乱按")
    add_evaluation(engine, "kp-01:2", 2, window_id="A01", comment="慢")
    add_evaluation(engine, "kp-01:3", 5, window_id="A01")
    um, viewer = login(world, "um"), login(world, "viewer")
    assert summary(viewer) == (2, 0.3333, 0)
    figures = viewer.get("/api/v1/analytics/units?unit=370305001").get_json()["total"]
    assert (figures["bad"], figures["valid"]) == (2, 3)
    walk(um, 1, until="classify")
    check(um, "/api/v1/appeals", {"record_id": "kp-01:1", "evidence": "儿童误按"}, 201)
    assert summary(viewer) == (2, 0.3333, 0)  # a pending appeal changes nothing yet
    decided = check(viewer, "/api/v1/appeals/1/decision", {"outcome": outcome, "reason": "核实"})
    assert decided["case"]["state"] == "voided" and decided["case"]["appeal_state"] == outcome
    assert summary(viewer) == (1, 0.5, 1)
    figures = viewer.get("/api/v1/analytics/units?unit=370305001").get_json()["total"]
    assert (figures["bad"], figures["valid"], figures["good_rate"]) == (1, 2, 0.5)
    rating = viewer.get("/api/v1/evaluations/kp-01:1").get_json()
    assert rating["excluded"] is True and rating["stars"] == 1  # kept, marked
    refused = check(um, "/api/v1/cases/1/steps", {"action": "rectify", "note": "x"}, 400)
    assert refused == {"error": "action: the rating was voided on review; this case is finished"}
    page = viewer.get("/cases/1").get_data(as_text=True)
    assert 'id="voided"' in page and 'id="rating-voided"' in page


def test_a_supervisor_reopens_a_closed_case_with_a_reason(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="没解决")
    um, viewer = login(world, "um"), login(world, "viewer")
    walk(um, 1, verdict="unsatisfied")
    assert um.post("/api/v1/cases/1/reopen", json={"reason": "x"}).status_code == 403
    no_reason = check(viewer, "/api/v1/cases/1/reopen", {"reason": " "}, 400)
    assert no_reason == {"error": "reason: required"}
    case = check(viewer, "/api/v1/cases/1/reopen", {"reason": "回访不满意，重新整改"})["case"]
    assert (case["state"], case["reopened"], case["visit_verdict"], case["closed_at"]) == (
        "classified",
        1,
        None,
        None,
    )
    assert steps(world, 1)[-1] == ("reopen", "closed", "classified", "viewer")
    again = check(viewer, "/api/v1/cases/1/reopen", {"reason": "再开"}, 400)
    assert again == {"error": "action: only a closed case can be reopened"}
    # back through rectification to the end
    for action, extra in (
        ("rectify", {}),
        ("feed_back", {}),
        ("visit", {"verdict": "satisfied"}),
        ("close", {}),
    ):
        body = {"action": action, "note": "第二轮", **extra}
        case = check(um, "/api/v1/cases/1/steps", body)["case"]
    assert (case["state"], case["visit_verdict"], case["reopened"]) == ("closed", "satisfied", 1)


# --- refusals ------------------------------------------------------------------------------


def _state_and_steps(app, case_id):
    with engine_of(app).connect() as conn:
        state = conn.execute(
            select(cases_table.c.state).where(cases_table.c.id == case_id)
        ).scalar()
        count = conn.execute(
            select(func.count()).select_from(case_steps).where(case_steps.c.case_id == case_id)
        ).scalar()
    return state, count


@pytest.mark.parametrize(
    ("done", "body", "error"),
    [
        (
            (),
            {"action": "rectify", "note": "x"},
            "action: this case is awaiting verification; its next step is Verify (call the rater back)",
        ),  # fmt: skip
        (
            (),
            {"action": "close", "note": "x"},
            "action: this case is awaiting verification; its next step is Verify (call the rater back)",
        ),  # fmt: skip
        (
            ("verify",),
            {"action": "feed_back", "note": "x"},
            "action: this case is verified; its next step is Classify",
        ),  # fmt: skip
        (
            ("verify",),
            {"action": "verify", "note": "x"},
            "action: this case is verified; its next step is Classify",
        ),  # fmt: skip
        (
            FIX_NOW,
            {"action": "verify", "note": "x"},
            "action: this case is closed; a supervisor may reopen it",
        ),  # fmt: skip
        (
            (),
            {"action": "approve", "note": "x"},
            "action: must be one of verify, classify, rectify, feed_back, visit, close",
        ),  # fmt: skip
        ((), {"action": "verify"}, "note: required"),
        ((), {"action": "verify", "note": 5}, "note: must be text"),
        ((), {"action": "verify", "note": "x" * 2001}, "note: at most 2000 characters"),
        (
            ("verify",),
            {"action": "classify", "note": "x", "kind": "soon"},
            "kind: must be one of fix_now, ledger, explanation",
        ),  # fmt: skip
        (
            ("verify",),
            {"action": "classify", "note": "x", "kind": "ledger", "due_at": "2020-01-01"},
            "due_at: is in the past",
        ),  # fmt: skip
        (
            ("verify",),
            {"action": "classify", "note": "x", "kind": "ledger", "due_at": "2026-02-30"},
            "due_at: not a calendar date",
        ),  # fmt: skip
        (
            ("verify",),
            {"action": "classify", "note": "x", "kind": "ledger", "due_at": "tomorrow"},
            "due_at: must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
        ),  # fmt: skip
        (
            ("verify", "classify", "rectify", "feed_back"),
            {"action": "visit", "note": "x", "verdict": "ok"},
            "verdict: must be satisfied or unsatisfied",
        ),  # fmt: skip
    ],
)
def test_a_step_out_of_order_or_malformed_is_refused_and_changes_nothing(world, done, body, error):
    add_evaluation(engine_of(world), "kp-01:1", 1, window_id="A01", comment="慢")
    um = login(world, "um")
    for action in done:
        extra = {"kind": "fix_now"} if action == "classify" else {}
        extra |= {"verdict": "satisfied"} if action == "visit" else {}
        check(um, "/api/v1/cases/1/steps", {"action": action, "note": "做了", **extra})
    before = _state_and_steps(world, 1)
    assert check(um, "/api/v1/cases/1/steps", body, 400) == {"error": error}
    assert _state_and_steps(world, 1) == before


def test_a_deadline_later_than_the_rules_allow_is_refused_an_earlier_one_kept(world):
    add_evaluation(engine_of(world), "kp-01:1", 1, window_id="A01", comment="慢")
    um = login(world, "um")
    check(um, "/api/v1/cases/1/steps", {"action": "verify", "note": "回电"})
    with engine_of(world).connect() as conn:
        created = conn.execute(select(cases_table.c.created_at)).scalar()
        allowed = deadlines.due_at(conn, "hall-ws", "complex", created[:19] + "Z")
    body = {"action": "classify", "note": "复杂", "kind": "ledger", "due_at": "2999-01-01"}
    refused = check(um, "/api/v1/cases/1/steps", body, 400)
    assert refused == {"error": f"due_at: later than the rules allow ({allowed} UTC)"}
    tomorrow = deadlines.local_day(db.utc_now()[:19] + "Z") + dt.timedelta(days=1)
    body["due_at"] = tomorrow.isoformat()
    case = check(um, "/api/v1/cases/1/steps", body)["case"]
    assert case["due_at"] == deadlines.end_of_local_day(tomorrow) < allowed


def test_a_reason_owed_is_recorded_on_the_case_never_in_the_rating(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 2, window_id="A01", reason_owed=True)
    um = login(world, "um")
    case = check(um, "/api/v1/cases/1")["case"]
    assert case["reason_owed"] is True and case["reason"] is None
    refused = check(um, "/api/v1/cases/1/steps", {"action": "verify", "note": "回电"}, 400)
    assert refused == {"error": "reason: required"}
    body = {"action": "verify", "note": "回电", "reason": "排队太久", "problem": "叫号机故障"}
    case = check(um, "/api/v1/cases/1/steps", body)["case"]
    assert (case["reason"], case["problem"]) == ("排队太久", "叫号机故障")
    rating = um.get("/api/v1/evaluations/kp-01:1").get_json()
    assert (rating["comment"], rating["tags"], rating["reason_owed"]) == (None, [], True)


def test_an_appeal_on_a_good_rating_or_without_evidence_is_refused(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 4, window_id="A01")
    add_evaluation(engine, "kp-01:2", 1, window_id="A01", comment="差")
    um = login(world, "um")
    good = check(um, "/api/v1/appeals", {"record_id": "kp-01:1", "evidence": "x"}, 400)
    assert good == {
        "error": "record_id: a good rating (满意) has no case; only 差评 can be appealed"
    }
    empty = check(um, "/api/v1/appeals", {"record_id": "kp-01:2", "evidence": ""}, 400)
    assert empty == {"error": "evidence: required"}
    big = {"name": "a.pdf", "type": "application/pdf", "base64": "QUFB" * 700_000}
    too_big = check(um, "/api/v1/appeals", {"record_id": "kp-01:2", "evidence": "e", "file": big}, 400)  # fmt: skip
    assert too_big == {"error": "file: larger than 2097152 bytes"}
    exe = {"name": "a.exe", "type": "application/x-msdownload", "base64": "TVo="}
    wrong = check(um, "/api/v1/appeals", {"record_id": "kp-01:2", "evidence": "e", "file": exe}, 400)  # fmt: skip
    assert wrong == {
        "error": "file: must be one of application/pdf, image/jpeg, image/png, text/plain"
    }
    assert check(um, "/api/v1/appeals", {"record_id": "kp-09:9", "evidence": "e"}, 404) == {
        "error": "record_id: unknown record 'kp-09:9'"
    }
    assert check(login(world, "viewer"), "/api/v1/appeals?state=all")["items"] == []


def test_evidence_is_kept_with_the_appeal_and_given_back_as_a_download(world):
    add_evaluation(engine_of(world), "kp-01:1", 1, window_id="A01", comment="差")
    um = login(world, "um")
    evidence = {"name": "监控 截图.png", "type": "image/png", "base64": "iVBORw0KGgo="}
    appeal = check(um, "/api/v1/appeals", {"record_id": "kp-01:1", "evidence": "截图", "file": evidence}, 201)  # fmt: skip
    assert (appeal["has_file"], appeal["file_name"], appeal["file_type"]) == (
        True,
        "监控_截图.png",
        "image/png",
    )
    download = um.get("/cases/appeals/1/file")
    assert download.status_code == 200 and download.data == b"\x89PNG\r\n\x1a\n"
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert login(world, "um2").get("/cases/appeals/1/file").status_code == 404


def test_a_unit_manager_of_another_street_gets_404_and_changes_nothing(world):
    add_evaluation(engine_of(world), "kp-01:1", 1, window_id="A01", comment="闻韶的差评")
    other = login(world, "um2")
    assert other.get("/cases/1").status_code == 404
    assert check(other, "/api/v1/cases/1", status=404) == {"error": "not found"}
    body = {"action": "verify", "note": "x"}
    assert check(other, "/api/v1/cases/1/steps", body, 404) == {"error": "not found"}
    # the same answer as for a rating that does not exist
    assert check(other, "/api/v1/appeals", {"record_id": "kp-01:1", "evidence": "e"}, 404) == {
        "error": "record_id: unknown record 'kp-01:1'"
    }
    assert check(other, "/api/v1/cases")["total"] == 0
    assert "闻韶的差评" not in other.get("/cases").get_data(as_text=True)
    assert _state_and_steps(world, 1) == ("open", 1)


def test_the_list_filters_by_state_unit_subtree_and_overdue(world):
    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="a")
    add_evaluation(engine, "kp-01:2", 1, window_id="B01", comment="b")
    add_evaluation(engine, "kp-01:3", 2, window_id="B01", comment="c")
    admin = login(world, "admin")
    walk(admin, 2, until="classify")
    with engine.begin() as conn:  # case 2's deadline passed (as if days went by)
        conn.execute(
            cases_table.update().where(cases_table.c.id == 2).values(due_at="2026-01-01T15:59:59Z")
        )

    def ids(query):
        return [item["id"] for item in check(admin, "/api/v1/cases" + query)["items"]]

    assert ids("") == [3, 2, 1]
    assert ids("?state=classified") == [2]
    assert ids("?unit=370305002") == [3, 2]
    assert ids("?unit=hall-ws") == [1]
    assert ids("?overdue=1") == [2]
    assert check(admin, "/api/v1/cases/2")["case"]["deadline_state"] == "overdue"
    assert check(admin, "/api/v1/cases?state=lost", status=400) == {
        "error": "state: must be one of open, verified, classified, rectified, fed_back, "
        "visited, closed, voided"
    }
    assert check(admin, "/api/v1/cases?overdue=2", status=400) == {
        "error": "overdue: must be 0 or 1"
    }
    assert check(admin, "/api/v1/cases?color=red", status=400) == {
        "error": "color: unknown parameter"
    }
    assert check(login(world, "um"), "/api/v1/cases?unit=370305002", status=404) == {
        "error": "not found"
    }
    page = admin.get("/cases?overdue=1").get_data(as_text=True)
    assert "deadline-overdue" in page and "逾期" in page


def test_an_admin_assigns_an_unassigned_case(world):
    add_evaluation(engine_of(world), "kp-03:1", 1, comment="无处归属")
    admin = login(world, "admin")
    assert case_rows(world)[0].unit_id is None
    token = AuthActions(admin).csrf_token("/cases/1")
    response = admin.post("/cases/1/assign", data={"csrf_token": token, "unit": "hall-xg"})
    assert response.status_code == 302
    case = check(admin, "/api/v1/cases/1")
    assert (case["case"]["unit_id"], case["case"]["assigned_by"]) == ("hall-xg", "manual")
    assert case["steps"][-1]["detail"] == {"unit_id": "hall-xg", "was": None}
    assert check(login(world, "um2"), "/api/v1/cases")["total"] == 1


def test_the_case_page_walks_with_forms_in_chinese(world):
    add_evaluation(engine_of(world), "kp-01:1", 2, window_id="A01", reason_owed=True)
    um = login(world, "um")
    page = um.get("/cases/1").get_data(as_text=True)
    assert "核实（回电评价人）" in page and "该评价未给出理由" in page
    token = AuthActions(um).csrf_token("/cases/1")
    skipped = um.post("/cases/1/step", data={"csrf_token": token, "action": "close", "note": "x"})
    assert skipped.status_code == 400
    assert "办理步骤：此案件当前为“待核实”，下一步应为“核实（回电评价人）”" in skipped.get_data(
        as_text=True
    )
    done = um.post(
        "/cases/1/step",
        data={"csrf_token": token, "action": "verify", "note": "已回电", "reason": "窗口无人"},
    )
    assert done.status_code == 302 and done.location == "/cases/1"
    assert _state_and_steps(world, 1) == ("verified", 2)


def test_a_rating_voided_elsewhere_ends_its_case_with_a_step(world):
    from sync_server import cases_workflow, figures

    engine = engine_of(world)
    add_evaluation(engine, "kp-01:1", 1, window_id="A01", comment="刷的差评")
    add_evaluation(engine, "kp-01:2", 2, window_id="A01", comment="真的差评")
    with engine.begin() as conn:
        figures.set_excluded(conn, ["kp-01:1"], True)
        ended = cases_workflow.void_cases_of(conn, ["kp-01:1", "kp-01:9"], "刷评线索已确认")
    assert ended == 1
    assert [(r.record_id, r.state) for r in case_rows(world)] == [
        ("kp-01:1", "voided"),
        ("kp-01:2", "open"),
    ]
    assert steps(world, 1)[-1] == ("void", "open", "voided", "system")
    with engine.begin() as conn:  # again: nothing more
        assert cases_workflow.void_cases_of(conn, ["kp-01:1"], "再次") == 0
