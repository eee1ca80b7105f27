"""A 差评 whose reason is owed waits in the outbox for the call-back, then
goes up with that reason; it never blocks what is behind it, and a hold
that lasts too long is shown, never dropped (both databases; the simulated
province is the judge)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from sync_server import cases_workflow, outbox, province_map
from sync_server.cases import case_of_record
from sync_server.schema_citizen import sms_reasons
from sync_server.schema_outbox import outbox as outbox_table
from tests.harness import shared_worlds
from tests.harness.records import add_evaluation
from tests.test_province import drain, province, register_event, sender_for, states, world

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

__all__ = ["province"]  # the fixture, imported for the tests below

RATED = "2026-11-26T08:30:00Z"


def owed(engine, record_id, stars, case_no, **extra):
    """A keypad 差评 the citizen walked away from: no tag, no comment."""
    add_evaluation(engine, record_id, stars, rated_at=RATED, case_no=case_no, service_no="1",
                   window_id="A01", reason_owed=True, **extra)  # fmt: skip


def verify(engine, record_id, reason):
    """The unit's call-back: the verify step records the rater's reason."""
    with engine.begin() as conn:
        case = case_of_record(conn, record_id)
        cases_workflow.take_step(conn, case["id"], "verify", {"note": "回访核实", "reason": reason})


def received(province, record_id):
    return province.ratings[record_id]["payload"]


def test_a_bad_rating_waits_for_its_reason_then_goes_with_it(engine, province):
    world(engine)
    for case in ("C1", "C2", "C3", "C4"):
        register_event(engine, case)
    owed(engine, "kp-01:1", 2, "C1")
    owed(engine, "kp-01:2", 1, "C2")
    owed(engine, "kp-01:3", 1, "C3")
    add_evaluation(engine, "kp-01:4", 5, rated_at=RATED, case_no="C4", service_no="1",
                   tags='["H501"]', content_version="hcp-demo-1")  # fmt: skip
    sender = sender_for(engine, province)
    drain(sender)
    held = ("held", outbox.HELD_REASON)
    assert states(engine) == {
        ("event", "C1/1"): ("acked", None),
        ("event", "C2/1"): ("acked", None),
        ("event", "C3/1"): ("acked", None),
        ("event", "C4/1"): ("acked", None),
        ("rating", "kp-01:1"): held,
        ("rating", "kp-01:2"): held,
        ("rating", "kp-01:3"): held,
        ("rating", "kp-01:4"): ("acked", None),  # not blocked by the held ones before it
    }
    assert province.refused == []
    with engine.connect() as conn:
        figures = outbox.figures(conn)
        listed = outbox.held(conn)
    assert (figures["held"], figures["held_overdue"], figures["unsent"]) == (3, 0, 0)
    assert [(h["ref"], h["state"]) for h in listed] == [
        ("kp-01:1", "held"),
        ("kp-01:2", "held"),
        ("kp-01:3", "held"),
    ]

    verify(engine, "kp-01:1", "等候时间长")  # a tag's text at level 2
    verify(engine, "kp-01:2", "服务态度差、窗口人员中途离岗")  # one tag, one free part
    drain(sender)
    got = states(engine)
    assert got[("rating", "kp-01:1")] == got[("rating", "kp-01:2")] == ("acked", None)
    assert got[("rating", "kp-01:3")] == held
    first, second = received(province, "kp-01:1"), received(province, "kp-01:2")
    assert (first["evalDetail"], first["evalContent"], first["contentVersion"]) == (
        "H201",
        "",
        "hcp-demo-1",
    )
    assert (second["evalDetail"], second["evalContent"]) == ("H101", "服务态度差、窗口人员中途离岗")
    assert first["assessTime"] == province_map.local_time(RATED)  # the time is never changed
    assert province.refused == []


def test_the_raters_sms_reason_releases_it_too_as_free_text(engine, province):
    world(engine)
    register_event(engine, "C10")
    owed(engine, "sms/1", 1, "C10", channel="sms")
    sender = sender_for(engine, province)
    drain(sender)
    assert states(engine)[("rating", "sms/1")] == ("held", outbox.HELD_REASON)
    with engine.begin() as conn:
        conn.execute(
            sms_reasons.insert().values(
                record_id="sms/1", text="材料退回三次", received_at="2026-11-26T09:00:00Z"
            )
        )
    drain(sender)
    assert states(engine)[("rating", "sms/1")] == ("acked", None)
    got = received(province, "sms/1")
    assert (got["evalDetail"], got["evalContent"]) == ("", "材料退回三次")


def test_an_appended_rating_waits_behind_its_held_first_one(engine, province):
    world(engine)
    register_event(engine, "C20")
    owed(engine, "kp-01:20", 2, "C20")
    add_evaluation(engine, "kp-01:21", 5, rated_at="2026-11-26T09:30:00Z", case_no="C20",
                   service_no="1", attempt=2, tags='["H501"]',
                   content_version="hcp-demo-1")  # fmt: skip
    sender = sender_for(engine, province)
    drain(sender)
    assert states(engine)[("rating", "kp-01:21")] == ("pending", None)
    assert province.refused == []
    verify(engine, "kp-01:20", "办事指引不清")
    drain(sender)
    assert [entry for entry in province.log if entry[0] == "rating"] == [
        ("rating", "kp-01:20"),
        ("rating", "kp-01:21"),
    ]
    assert received(province, "kp-01:20")["evalDetail"] == "H202"


def test_a_hold_past_the_wait_is_shown_overdue_and_still_goes_when_the_reason_comes(
    engine, province
):
    world(engine)
    register_event(engine, "C30")
    owed(engine, "kp-01:30", 1, "C30")
    with engine.begin() as conn:
        conn.execute(update(outbox_table).values(stored_at="2026-11-20T08:00:00.000000Z"))
        now = dt.datetime(2026, 11, 23, 8, 0, 1, tzinfo=dt.UTC)  # three days and a second on
        assert outbox.release_held(conn, 3, now) == {"released": 0, "overdue": 1}
        assert outbox.release_held(conn, 3, now) == {"released": 0, "overdue": 0}
        figures = outbox.figures(conn)
        row = conn.execute(select(outbox_table).where(outbox_table.c.ref == "kp-01:30")).one()
    assert (row.state, row.reason) == (
        "overdue",
        "reason owed for more than 3 day(s): the province takes no 差评 without a reason;"
        " record it at the call-back (verify step)",
    )
    assert (figures["held"], figures["held_overdue"], figures["backlog"]["overdue"]) == (1, 1, 1)
    sender = sender_for(engine, province)
    drain(sender)
    assert states(engine)[("rating", "kp-01:30")][0] == "overdue"  # not sent without a reason
    assert "kp-01:30" not in province.ratings
    verify(engine, "kp-01:30", "多次跑动")
    drain(sender)
    assert states(engine)[("rating", "kp-01:30")] == ("acked", None)
    assert received(province, "kp-01:30")["evalDetail"] == "H102"


def test_reason_content_maps_tag_texts_and_keeps_the_rest_as_text():
    tagset = [(2, "H201", "等候时间长"), (2, "H202", "办事指引不清"), (1, "H101", "服务态度差")]
    assert province_map.reason_content("等候时间长", 2, tagset) == (["H201"], "")
    assert province_map.reason_content(" 等候时间长，办事指引不清。", 2, tagset) == (
        ["H201", "H202"],
        "",
    )
    # a tag of another level does not fit: the reason goes as text
    assert province_map.reason_content("服务态度差", 2, tagset) == ([], "服务态度差")
    assert province_map.reason_content("等候时间长;没有座位", 2, tagset) == (
        ["H201"],
        "等候时间长;没有座位",
    )


def test_the_page_and_the_api_show_held_items_and_their_count(engine_app, province):
    from tests.harness.collector import AuthActions

    engine = engine_app.extensions["hcp_engine"]
    world(engine)
    register_event(engine, "C40")
    owed(engine, "kp-01:40", 2, "C40")
    viewer = engine_app.test_client()
    AuthActions(viewer).login("viewer")
    body = viewer.get("/api/v1/outbox").get_json()
    assert (body["held"], body["held_overdue"], body["backlog"]["held"]) == (1, 0, 1)
    assert [(h["ref"], h["case_no"], h["state"], h["reason"]) for h in body["held_items"]] == [
        ("kp-01:40", "C40", "held", outbox.HELD_REASON)
    ]
    zh = viewer.get("/outbox?lang=zh_CN").get_data(as_text=True)
    assert "暂缓上报：待补差评原因" in zh and "kp-01:40" in zh and outbox.HELD_REASON in zh


def test_only_an_overdue_hold_may_be_settled_by_hand_and_that_is_audited(engine_app):
    import pytest

    from sync_server import audit

    engine = engine_app.extensions["hcp_engine"]
    world(engine)
    register_event(engine, "C50")
    owed(engine, "kp-01:50", 1, "C50")
    with engine_app.test_request_context():
        with pytest.raises(outbox.OutboxError) as refused:
            outbox.mark_handled(engine, "rating:kp-01:50", "已电话联系", "admin")
        assert str(refused.value) == "item：rating:kp-01:50 不是被拒收的记录"  # zh_CN by default
        with engine.begin() as conn:
            now = dt.datetime.now(dt.UTC) + dt.timedelta(days=4)
            assert outbox.release_held(conn, 3, now) == {"released": 0, "overdue": 1}
        outbox.mark_handled(
            engine, "rating:kp-01:50", "评价人拒绝说明原因，已与省平台核对", "admin"
        )
    assert states(engine)[("rating", "kp-01:50")][0] == "handled"
    [entry] = audit.entries(engine, action="outbox.handled")["items"]
    assert entry["target"] == "rating:kp-01:50"
    assert entry["before"]["state"] == "overdue" and entry["after"] == {
        "state": "handled",
        "note": "评价人拒绝说明原因，已与省平台核对",
    }
