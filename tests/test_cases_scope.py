# ruff: noqa: F811 (the world fixture is imported from test_cases)
"""A case's unit, not where its rating was placed, decides who works it: a
unit that gets a 差评 by an assignment rule sees the rating on the case page
and may call the rater back (the reveal audited as everywhere), while the unit
that holds the window does not see the case (issue 9).

The world is tests/test_cases.py's: window B01 sits in 雪宫街道 (um2), and a
rule sends B01's 差评 to 闻韶街道 (um).
"""

from __future__ import annotations

from sqlalchemy import select

from sync_server import audit, db, phones
from sync_server.schema_cases import case_rules
from tests.harness.collector import AuthActions
from tests.harness.records import add_evaluation
from tests.test_cases import check, engine_of, login, walk, world  # noqa: F401 (world: a fixture)

PHONE = "13812345678"


def rule_assigned_case(app) -> int:
    """A 差评 at 雪宫's window B01, given to 闻韶街道 by a window rule; its case id."""
    engine = engine_of(app)
    with engine.begin() as conn:
        conn.execute(
            case_rules.insert().values(
                match_kind="window",
                match_id="B01",
                unit_id="370305001",
                created_by="admin",
                created_at=db.utc_now(),
            )
        )
    add_evaluation(engine, "kp-05:1", 1, window_id="B01", comment="窗口推诿")
    # the number the rater left (as the QR page, portal and SMS keep it, sealed)
    with app.app_context(), engine.begin() as conn:
        phones.keep(conn, phones.app_key(), "kp-05:1", PHONE)
    with engine.connect() as conn:
        from sync_server.schema_cases import cases

        row = conn.execute(
            select(cases.c.id, cases.c.unit_id, cases.c.assigned_by).where(
                cases.c.record_id == "kp-05:1"
            )
        ).one()
    assert (row.unit_id, row.assigned_by) == ("370305001", "rule:1")
    return row.id


def reveals(app) -> list[tuple]:
    found = audit.entries(engine_of(app), action="contact.reveal")["items"]
    return [(entry["actor"], entry["target"]) for entry in found]


def reveal(client, case_id):
    token = AuthActions(client).csrf_token(f"/cases/{case_id}")
    return client.post(f"/cases/{case_id}/contact", data={"csrf_token": token})


def test_the_rule_assigned_unit_sees_the_rating_and_calls_the_rater_back(world):
    case_id = rule_assigned_case(world)
    um = login(world, "um")
    page = um.get(f"/cases/{case_id}").get_data(as_text=True)
    # the rating on the case page, without a link to the rating's own page,
    # which follows where the rating was placed (雪宫) and stays closed to 闻韶
    assert "窗口推诿" in page and "kp-05:1" in page
    assert 'href="/evaluations/kp-05:1"' not in page
    assert um.get("/evaluations/kp-05:1").status_code == 404
    assert PHONE not in page and 'id="reveal"' in page
    assert reveals(world) == []

    shown = reveal(um, case_id)
    assert shown.status_code == 200
    text = shown.get_data(as_text=True)
    assert PHONE in text and "本次查看已记入审计日志" in text
    assert reveals(world) == [("um", "kp-05:1")]


def test_the_unit_holding_the_window_neither_sees_the_case_nor_reveals(world):
    case_id = rule_assigned_case(world)
    um2 = login(world, "um2")
    assert um2.get(f"/cases/{case_id}").status_code == 404
    # its csrf token from a page it may open
    token = AuthActions(um2).csrf_token("/cases")
    refused = um2.post(f"/cases/{case_id}/contact", data={"csrf_token": token})
    assert refused.status_code == 404
    assert PHONE not in refused.get_data(as_text=True)
    assert reveals(world) == []


def test_the_supervisor_reveals_and_the_admin_may_not(world):
    case_id = rule_assigned_case(world)
    viewer = login(world, "viewer")
    page = viewer.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'href="/evaluations/kp-05:1"' in page  # every rating is the supervisor's
    assert PHONE in reveal(viewer, case_id).get_data(as_text=True)
    admin = login(world, "admin")
    assert reveal(admin, case_id).status_code == 403
    assert reveals(world) == [("viewer", "kp-05:1")]


def test_the_contact_is_refused_between_call_backs_with_the_reason(world):
    case_id = rule_assigned_case(world)
    um = login(world, "um")
    walk(um, case_id, until="verify")
    page = um.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="reveal"' not in page
    refused = reveal(um, case_id)
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "联系方式：仅在核实、反馈或回访时回电评价人，此案件当前为“已核实”" in text
    assert PHONE not in text
    assert reveals(world) == []
    # fed back: the return visit calls the rater again
    walk_on = ("classify", "rectify", "feed_back")
    for action in walk_on:
        body = {"action": action, "note": "记录"}
        if action == "classify":
            body["kind"] = "fix_now"
        assert um.post(f"/api/v1/cases/{case_id}/steps", json=body).status_code == 200
    assert PHONE in reveal(um, case_id).get_data(as_text=True)
    assert reveals(world) == [("um", "kp-05:1")]


def test_the_api_reveals_for_the_case_unit_with_the_same_refusals(world):
    case_id = rule_assigned_case(world)
    um, um2 = login(world, "um"), login(world, "um2")
    assert um.post("/api/v1/contacts", json={"record_id": "kp-05:1"}).status_code == 404
    shown = check(um, f"/api/v1/cases/{case_id}/contact", {})
    assert shown == {"case_id": case_id, "record_id": "kp-05:1", "contact": PHONE}
    assert check(um2, f"/api/v1/cases/{case_id}/contact", {}, 404) == {"error": "not found"}
    not_json = um.post(f"/api/v1/cases/{case_id}/contact", data="x")
    assert not_json.status_code == 400
    assert not_json.get_json() == {"error": "body: must be JSON (Content-Type: application/json)"}
    walk(um, case_id, until="verify")
    assert check(um, f"/api/v1/cases/{case_id}/contact", {}, 400) == {
        "error": "contact: the rater is called back only to verify, feed back or revisit; "
        "this case is verified"
    }
    assert reveals(world) == [("um", "kp-05:1")]


def test_a_case_or_appeal_number_past_the_id_column_is_no_page(world):
    admin = login(world, "admin")
    token = AuthActions(admin).csrf_token("/cases")
    for number in ("2147483648", "9223372036854775808", "99999999999999999999"):
        assert admin.get(f"/cases/{number}").status_code == 404
        assert admin.post(f"/cases/{number}/assign", data={"csrf_token": token}).status_code == 404
        assert admin.get(f"/cases/appeals/{number}/file").status_code == 404
    assert admin.get("/cases/2147483647").status_code == 404  # the last id: looked up, none
