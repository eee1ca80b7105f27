"""Evidence of gaming: each rule finds its planted cases in a generated month
and flags no honest rating there; a flag names its rule and evidence, changes
no rating, and a supervisor's review decides (both databases)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from sync_server import audit, db, gaming, gaming_month
from tests.harness import shared_worlds
from tests.harness.collector import AuthActions
from tests.harness.records import add_evaluation
from tests.test_province import register_event, world

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

SMALL = {"windows": 6, "per_day": 10}


def test_a_month_with_planted_gaming_each_rule_finds_its_cases(engine):
    truth, since, until, stored = gaming_month.generate(engine, days=30, seed=7, **SMALL)
    with engine.connect() as conn:
        before = conn.execute(select(db.evaluations).order_by(db.evaluations.c.id)).all()
        findings = gaming.scan(conn, since, until)
    report = gaming_month.score(findings, truth)
    assert {rule: (row["found"], row["planted"]) for rule, row in report.items()} == {
        "staff_entry": (4, 4),
        "burst_no_case": (4, 4),
        "outside_hours": (6, 6),
        "before_handled": (5, 5),
        "one_phone_many": (3, 3),
        "identical_text": (3, 3),
        "top_after_signin": (3, 3),
        "clock_boot": (2, 2),
        "while_paused": (4, 4),
    }
    assert {rule: row["honest_flags"] for rule, row in report.items()} == dict.fromkeys(
        gaming.RULES, 0
    )
    assert gaming.store(engine, findings) == len(findings)
    assert gaming.store(engine, findings) == 0  # a second scan adds nothing
    with engine.connect() as conn:
        after = conn.execute(select(db.evaluations).order_by(db.evaluations.c.id)).all()
        contacts = [row.contact for row in conn.execute(select(db.contacts))]
        kept = [row.evidence for row in conn.execute(select(db.metadata.tables["gaming_flags"]))]
    assert before == after  # flags change no rating
    assert stored == len(after)
    # a phone number never appears in the evidence
    assert not any(phone in text for phone in contacts for text in kept)


def _base(engine):
    world(engine)


def test_a_burst_without_cases_names_its_ratings_and_span(engine):
    _base(engine)
    for n in range(1, 7):
        add_evaluation(engine, f"kp-01:{n}", 5, rated_at=f"2026-11-26T02:0{n}:00Z", window_id="A01")
    add_evaluation(engine, "kp-01:7", 5, rated_at="2026-11-26T02:30:00Z", window_id="A01")
    with engine.connect() as conn:
        found = [f for f in gaming.scan(conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z")
                 if f["rule"] == "burst_no_case"]  # fmt: skip
    assert found == [
        {
            "rule": "burst_no_case",
            "key": "kp-01:kp-01:1",
            "record_id": "kp-01:1",
            "subject": "kp-01",
            "records": 6,
            "evidence": {
                "records": [f"kp-01:{n}" for n in range(1, 7)],
                "first": "2026-11-26T02:01:00Z",
                "last": "2026-11-26T02:06:00Z",
                "stars": [5],
            },
        }
    ]


def test_thresholds_are_settings(engine):
    _base(engine)
    for n in range(1, 4):
        add_evaluation(engine, f"kp-01:{n}", 5, rated_at=f"2026-11-26T02:0{n}:00Z", window_id="A01")
    with engine.connect() as conn:
        default = gaming.scan(conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z")
        lower = gaming.scan(
            conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z", {"HCP_GAMING_BURST_COUNT": 3}
        )
    assert [f["rule"] for f in default] == []
    assert [f["rule"] for f in lower] == ["burst_no_case"]


def test_a_hall_that_never_closes_has_no_outside_hours(engine):
    _base(engine)
    add_evaluation(engine, "kp-01:1", 5, rated_at="2026-11-26T20:00:00Z", window_id="A01")  # 04:00
    with engine.connect() as conn:
        hours = gaming.scan(conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z")
        always = gaming.scan(
            conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z", {"HCP_GAMING_OPENING": "always"}
        )
    assert [f["rule"] for f in hours] == ["outside_hours"]
    assert [f["rule"] for f in always] == []


def test_a_rating_before_its_case_was_handled_and_a_card_typed_by_its_staff(engine):
    _base(engine)
    register_event(engine, "C1", handled_at="2026-11-26T03:00:00Z")
    add_evaluation(engine, "kp-01:1", 5, rated_at="2026-11-26T02:40:00Z", case_no="C1",
                   service_no="1", window_id="A01")  # fmt: skip
    add_evaluation(engine, "paper/1", 5, rated_at="2026-11-26T03:10:00Z", channel="paper",
                   origin="staff_entry", staff_id="1001", entered_by="1001",
                   entered_at="2026-11-26T05:00:00Z", card_date="2026-11-26")  # fmt: skip
    add_evaluation(engine, "paper/2", 5, rated_at="2026-11-26T03:20:00Z", channel="paper",
                   origin="staff_entry", staff_id="1001", entered_by="clerk-7",
                   entered_at="2026-11-26T05:00:00Z", card_date="2026-11-26")  # fmt: skip
    with engine.connect() as conn:
        found = gaming.scan(conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z")
    by_rule = {(f["rule"], f["record_id"]): f["evidence"] for f in found}
    assert by_rule[("before_handled", "kp-01:1")] == {
        "records": ["kp-01:1"],
        "rated_at": "2026-11-26T02:40:00Z",
        "handled_at": "2026-11-26T03:00:00Z",
        "seconds_early": 1200,
    }
    assert by_rule[("staff_entry", "paper/1")] == {"records": ["paper/1"], "entered_by": "1001"}
    assert ("staff_entry", "paper/2") not in by_rule


# --- what a supervisor does -----------------------------------------------------------


def _flagged(engine, stars=(5, 5, 5, 5, 5)):
    _base(engine)
    for n, level in enumerate(stars, start=1):
        add_evaluation(
            engine, f"kp-01:{n}", level, rated_at=f"2026-11-26T02:0{n}:00Z", window_id="A01"
        )
    assert gaming.run(engine, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z") == 1
    with engine.connect() as conn:
        return gaming.flags(conn)[0]["id"]


def _client(app, who="viewer"):
    client = app.test_client()
    AuthActions(client).login(who)
    return client


def test_a_supervisor_reviews_then_confirms_and_only_then_ratings_leave_the_figures(engine_app):
    engine = engine_app.extensions["hcp_engine"]
    flag_id = _flagged(engine, stars=(5, 5, 5, 5, 1))  # the last a 差评, with its case
    client = _client(engine_app)
    page = client.get(f"/gaming/{flag_id}?lang=zh_CN").get_data(as_text=True)
    assert "同一评价器未发起办件却集中评价" in page and "kp-01:5" in page
    token = AuthActions(client).csrf_token(f"/gaming/{flag_id}")
    early = client.post(f"/gaming/{flag_id}/act", data={"csrf_token": token, "action": "confirm",
                                                         "note": "x", "lang": "en"})  # fmt: skip
    assert early.status_code == 400
    assert "action：该线索状态为 open，不能进行此操作" in early.get_data(as_text=True)
    blank = client.post(f"/gaming/{flag_id}/act", data={"csrf_token": token, "action": "review"})
    assert "note：请说明理由（1 至 1000 字）" in blank.get_data(as_text=True)
    with engine.connect() as conn:
        assert not any(r.excluded for r in conn.execute(select(db.evaluations.c.excluded)))
    for action, note in (("review", "调取窗口录像"), ("confirm", "录像显示工作人员自行按键")):
        done = client.post(
            f"/gaming/{flag_id}/act", data={"csrf_token": token, "action": action, "note": note}
        )
        assert done.status_code == 302
    with engine.connect() as conn:
        excluded = dict(conn.execute(select(db.evaluations.c.id, db.evaluations.c.excluded)).all())
    assert excluded == {f"kp-01:{n}": True for n in range(1, 6)}
    from sync_server.schema_cases import cases

    with engine.connect() as conn:  # a 差评 among them had a case: it ends voided
        states = dict(conn.execute(select(cases.c.record_id, cases.c.state)).all())
    assert states == {"kp-01:5": "voided"}
    entries = audit.entries(engine)["items"]
    assert [e["action"] for e in entries[:3]] == ["gaming.confirm", "case.void", "gaming.review"]
    assert entries[0]["after"] == {"state": "confirmed", "note": "录像显示工作人员自行按键",
                                   "excluded": 5}  # fmt: skip


def test_the_flag_list_page_and_api(engine_app):
    from sync_server.openapi import DOCUMENT
    from tests.test_openapi import problems

    engine = engine_app.extensions["hcp_engine"]
    _flagged(engine)
    client = _client(engine_app)
    answer = client.get("/api/v1/gaming/flags?state=open")
    schema = DOCUMENT["paths"]["/api/v1/gaming/flags"]["get"]["responses"]["200"]["content"]
    assert problems(answer.get_json(), schema["application/json"]["schema"], DOCUMENT) == []
    [item] = answer.get_json()["items"]
    assert (item["rule"], item["records"], item["state"]) == ("burst_no_case", 5, "open")
    bad = client.get("/api/v1/gaming/flags?rule=nonsense&lang=en")
    assert bad.status_code == 400
    assert bad.get_json() == {"error": "rule: must be one of " + ", ".join(gaming.RULES)}
    page = client.get("/gaming?lang=zh_CN").get_data(as_text=True)
    assert "刷评线索" in page and "HCP_GAMING_BURST_COUNT = 5" in page
    token = AuthActions(client).csrf_token("/gaming")
    scanned = client.post("/gaming/scan", data={"csrf_token": token, "days": "0"})
    assert scanned.status_code == 400
    assert "days：须为 1 至 92 的整数" in scanned.get_data(as_text=True)


@pytest.mark.parametrize("action", ["dismiss"])
def test_dismissing_keeps_the_ratings_as_they_are(engine_app, action):
    engine = engine_app.extensions["hcp_engine"]
    flag_id = _flagged(engine)
    result = gaming.act(engine, flag_id, action, "正常高峰", "viewer")
    assert result == {"state": "dismissed", "excluded": 0}
    with engine.connect() as conn:
        assert not any(r.excluded for r in conn.execute(select(db.evaluations.c.excluded)))
        flag = gaming.get(conn, flag_id)
    assert (flag["state"], flag["note"], json.dumps(flag["evidence"])[:12]) == (
        "dismissed",
        "正常高峰",
        '{"records": ',
    )


def test_a_planted_demo_burst_is_flagged_and_never_reported_as_casework(engine):
    world(engine)
    ids = gaming_month.plant_burst(engine, "kp-01", "A01", count=8)
    now = dt.datetime.now(dt.UTC)
    since = (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # a hall that never closes, as the demo sets it: "00:00-23:59" still made
    # the burst 8 ratings outside hours when the test ran on a Shanghai weekend
    assert gaming.run(engine, since, until, {"HCP_GAMING_OPENING": "always"}) == 1
    with engine.connect() as conn:
        [flag] = gaming.flags(conn)
    assert (flag["rule"], flag["evidence"]["records"], flag["state"]) == (
        "burst_no_case",
        ids,
        "open",
    )
