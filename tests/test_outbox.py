"""The outbox: written with each stored rating, its lag and backlog, dead
letters an admin acts on, re-sending a period, and a clear state for every
bad answer of the province (both databases)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from simulators.province import Province, serve
from sync_server import audit, db, features, outbox
from sync_server.openapi import DOCUMENT
from sync_server.schema_outbox import outbox as outbox_table
from tests.harness import shared_worlds
from tests.harness.collector import AuthActions
from tests.harness.records import add_evaluation
from tests.test_openapi import problems
from tests.test_province import register_event, sender_for, states, world

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@pytest.fixture
def province():
    state = Province()
    server, state.url = serve(state)
    yield state
    server.shutdown()
    server.server_close()


def test_each_stored_rating_gets_its_outbox_row_in_the_same_transaction(engine):
    row = {
        "id": "kp-01:1",
        "device_id": "kp-01",
        "seq": 1,
        "stars": 5,
        "channel": "keypad",
        "rated_at": "2026-11-26T08:30:00Z",
        "clock": "ntp",
        "origin": "citizen",
        "attempt": 1,
        "received_at": "2026-11-26T08:30:01.000000Z",
        "excluded": False,
        "reason_owed": False,
        "effective_at": "2026-11-26T08:30:00Z",
        "time_source": "device",
    }
    with pytest.raises(RuntimeError), engine.begin() as conn:
        features.store_evaluations(conn, engine, [row])
        raise RuntimeError("the batch fails after the outbox step")
    with engine.connect() as conn:
        assert conn.execute(select(outbox_table)).all() == []
        assert conn.execute(select(db.evaluations)).all() == []
    with engine.begin() as conn:
        features.store_evaluations(conn, engine, [row])
    with engine.connect() as conn:
        stored = conn.execute(select(outbox_table)).one()
    assert (stored.kind, stored.ref, stored.state, stored.stored_at, stored.attempts) == (
        "rating",
        "kp-01:1",
        "pending",
        "2026-11-26T08:30:01.000000Z",
        0,
    )


def test_lag_figures_are_exact(engine):
    base = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)

    def at(seconds):
        return (base + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    rows = [
        {"kind": "rating", "ref": f"r{i}", "stored_at": at(i), "state": "acked",
         "attempts": 1, "resends": 0, "acked_at": at(i + lag)}
        for i, lag in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 100])
    ] + [
        {"kind": "rating", "ref": "late1", "stored_at": at(50), "state": "pending",
         "attempts": 3, "resends": 0, "acked_at": None},
        {"kind": "rating", "ref": "late2", "stored_at": at(60), "state": "pending",
         "attempts": 0, "resends": 0, "acked_at": None},
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(outbox_table.insert(), rows)
        figures = outbox.figures(conn, now=base + dt.timedelta(seconds=110))
    assert figures["backlog"]["acked"] == 10 and figures["unsent"] == 2
    assert figures["oldest_unsent_at"] == at(50)
    assert figures["oldest_unsent_age_s"] == 60.0
    assert (figures["p50_ack_s"], figures["p95_ack_s"], figures["acked_sample"]) == (5.0, 100.0, 10)
    assert figures["sender"] is None and figures["flagged_late"] == 0


# --- bad answers: a clear state, nothing lost ----------------------------------------


@pytest.mark.parametrize(
    ("mode", "state", "detail"),
    [
        ("garbage", "garbage", "HTTP 200: the answer is not JSON (17 bytes)"),
        ("refuse_no_reason", "no_reason", "the province refused 1 item(s) without a reason"),
        ("error", "error", "HTTP 500: internal error"),
    ],
)
def test_a_bad_answer_leaves_a_clear_state_and_loses_nothing(engine, province, mode, state, detail):
    world(engine)
    register_event(engine, "C1")
    sender = sender_for(engine, province)
    province.set_mode(mode)
    done = sender.run_once()
    assert done == {"sent": 0, "acked": 0, "failed": state}
    with engine.connect() as conn:
        figures = outbox.figures(conn)
        row = conn.execute(select(outbox_table)).one()
    assert figures["sender"]["state"] == state and figures["sender"]["detail"] == detail
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, detail)
    province.set_mode("ok")
    time.sleep(0.02)  # the back-off of the test settings
    assert sender.run_once() == {"sent": 1, "acked": 1, "failed": None}
    assert states(engine) == {("event", "C1/1"): ("acked", None)}
    with engine.connect() as conn:
        assert outbox.figures(conn)["sender"]["state"] == "ok"


def test_an_expired_credential_and_a_dead_province_leave_clear_states(engine, province):
    world(engine)
    register_event(engine, "C1")
    sender = sender_for(engine, province)
    sender.client.credential = province.issue_credential(valid_s=-1)
    sender.client.signer.private_key = sender.client.credential["private_key"]
    sender.client.signer.public_key = sender.client.credential["public_key"]
    assert sender.run_once()["failed"] == "credential"
    with engine.connect() as conn:
        assert outbox.figures(conn)["sender"]["detail"] == (
            "the province refused the credential: credential: expired"
        )
    dead = sender_for(engine, province, HCP_PROVINCE_URL="http://127.0.0.1:9")
    dead.holder = sender.holder  # the same process, a wrong address
    assert dead.run_once()["failed"] == "unreachable"
    with engine.connect() as conn:
        figures = outbox.figures(conn)
    assert figures["sender"]["detail"].startswith("no answer from the province: ")
    assert figures["unsent"] == 1
    assert province.log == []


def test_backoff_doubles_up_to_its_bound(engine, province):
    world(engine)
    register_event(engine, "C1")
    sender = sender_for(engine, province, HCP_OUTBOX_BACKOFF_S=10, HCP_OUTBOX_BACKOFF_MAX_S=30)
    province.set_mode("error")
    waits = []
    for _ in range(4):
        sender.not_before = 0
        sender.run_once()
        waits.append(round(sender.not_before - time.monotonic()))
    assert waits == [10, 20, 30, 30]


# --- the page, the API and what an admin does ----------------------------------------


def _login(app, who):
    client = app.test_client()
    AuthActions(client).login(who)
    return client


def _csrf(client):
    return AuthActions(client).csrf_token("/outbox")


def test_the_page_and_api_show_lag_backlog_and_dead_letters(engine_app, province):
    engine = engine_app.extensions["hcp_engine"]
    world(engine)
    register_event(engine, "C1")
    add_evaluation(engine, "kp-01:1", 5, case_no="C1", service_no="1")
    add_evaluation(engine, "kp-01:2", 1, case_no="C9", service_no="1", item_code="T9")
    sender = sender_for(engine, province)
    sender.run_once()
    viewer = _login(engine_app, "viewer")
    answer = viewer.get("/api/v1/outbox")
    assert answer.status_code == 200
    schema = DOCUMENT["paths"]["/api/v1/outbox"]["get"]["responses"]["200"]["content"]
    body = answer.get_json()
    assert problems(body, schema["application/json"]["schema"], DOCUMENT) == []
    assert body["backlog"] == {
        "pending": 0, "held": 0, "overdue": 0, "acked": 2, "dead": 1, "unmapped": 0,
        "skipped": 0, "handled": 0,
    }  # fmt: skip
    [letter] = body["dead_letters"]
    assert (letter["ref"], letter["reason"]) == (
        "kp-01:2",
        "projectNo/serviceNo: no service event registered for it",
    )
    page = viewer.get("/outbox?lang=en").get_data(as_text=True)
    assert "projectNo/serviceNo: no service event registered for it" in page
    assert "Mark handled" not in page  # a supervisor reads, an admin acts
    zh = viewer.get("/outbox?lang=zh_CN").get_data(as_text=True)
    assert "上报省平台" in zh and "省平台拒收" in zh


def test_an_admin_retries_marks_handled_and_resends_a_period_audited(engine_app, province):
    engine = engine_app.extensions["hcp_engine"]
    world(engine)
    register_event(engine, "C1")
    add_evaluation(engine, "kp-01:1", 5, case_no="C1", service_no="1")
    add_evaluation(engine, "kp-01:2", 1, case_no="C9", service_no="1", item_code="T9", comment="慢")
    add_evaluation(engine, "kp-01:3", 1, case_no="C8", service_no="1", item_code="T8")
    sender = sender_for(engine, province)
    sender.run_once()
    admin = _login(engine_app, "admin")
    token = _csrf(admin)
    refused = admin.post(
        "/outbox/retry?lang=en", data={"csrf_token": token, "item": "rating:kp-01:1"}
    )
    assert refused.status_code == 400
    assert "item: rating:kp-01:1 is not a dead letter" in refused.get_data(as_text=True)
    unknown = admin.post("/outbox/retry", data={"csrf_token": token, "item": "rating:nope"})
    assert "item: no outbox row rating:nope" in unknown.get_data(as_text=True)
    bad = admin.post("/outbox/handled", data={"csrf_token": token, "item": "rating:kp-01:3"})
    assert "note: say what was done (1 to 500 characters)" in bad.get_data(as_text=True)
    retried = admin.post("/outbox/retry", data={"csrf_token": token, "item": "rating:kp-01:2"})
    assert retried.status_code == 302
    handled = admin.post(
        "/outbox/handled",
        data={"csrf_token": token, "item": "rating:kp-01:3", "note": "办件号有误, 已告知窗口"},
    )
    assert handled.status_code == 302
    assert states(engine)[("rating", "kp-01:2")][0] == "pending"
    assert states(engine)[("rating", "kp-01:3")][0] == "handled"
    # the event of C9 arrives (registered late); the retried rating now passes
    register_event(engine, "C9", item_code="T9")
    time.sleep(0.02)
    sender.run_once()
    sender.run_once()
    assert states(engine)[("rating", "kp-01:2")] == ("acked", None)
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    resent = admin.post(
        "/outbox/resend",
        data={"csrf_token": token, "from": today.isoformat(), "to": today.isoformat()},
    )
    assert resent.status_code == 302 and resent.location.endswith("done=resend:4")
    backwards = admin.post(
        "/outbox/resend", data={"csrf_token": token, "from": "2026-11-27", "to": "2026-11-01"}
    )
    assert "period: the start must come before the end" in backwards.get_data(as_text=True)
    sender.run_once()
    got = province.received()
    assert got["counts"]["duplicate"] == 4 and len(got["log"]) == 4  # each counted once
    assert states(engine)[("rating", "kp-01:1")] == ("acked", None)
    actions = [e["action"] for e in audit.entries(engine)["items"]]
    assert actions == ["outbox.resend", "outbox.handled", "outbox.retry"]


def test_an_event_registered_after_its_rating_still_goes_first(engine, province):
    world(engine)
    add_evaluation(engine, "kp-01:1", 5, case_no="C1", service_no="1", tags='["H501"]',
                   content_version="hcp-demo-1")  # fmt: skip
    register_event(engine, "C1")  # the business system was late
    sender = sender_for(engine, province, HCP_OUTBOX_BATCH=1)
    assert sender.run_once() == {"sent": 2, "acked": 2, "failed": None}
    assert province.log == [("event", "C1/1"), ("rating", "kp-01:1")]


def test_results_that_do_not_name_the_items_sent_are_garbage(engine, province):
    world(engine)
    register_event(engine, "C1")
    register_event(engine, "C2")
    answer = province.handle

    def swapped(*args):
        status, body = answer(*args)
        body["results"].reverse()
        return status, body

    province.handle = swapped
    sender = sender_for(engine, province)
    assert sender.run_once()["failed"] == "garbage"
    with engine.connect() as conn:
        figures = outbox.figures(conn)
    assert figures["sender"]["detail"] == "the answer's results do not name the items sent"
    assert figures["unsent"] == 2


def test_a_province_slower_than_the_timeout_is_unreachable(engine, province):
    world(engine)
    register_event(engine, "C1")
    sender = sender_for(engine, province, HCP_PROVINCE_TIMEOUT_S=0.2)
    province.set_mode("slow", delay_s=1.0)
    assert sender.run_once()["failed"] == "unreachable"
    with engine.connect() as conn:
        detail = outbox.figures(conn)["sender"]["detail"]
    assert detail == "no answer from the province: timed out"


def test_one_sender_at_a_time_and_a_stopped_ones_turn_passes(engine, province):
    world(engine)
    register_event(engine, "C1")
    quick = {"HCP_OUTBOX_LEASE_S": 1, "HCP_PROVINCE_TIMEOUT_S": 0.5}  # a turn of 2.5 s
    first = sender_for(engine, province, **quick)
    second = sender_for(engine, province, **quick)
    assert first.lease_s == 2.5
    first._take()  # holds the turn, as a sender killed in the middle would
    assert second.run_once() == {"sent": 0, "acked": 0, "failed": None}
    time.sleep(2.6)
    assert second.run_once() == {"sent": 1, "acked": 1, "failed": None}
    assert province.log == [("event", "C1/1")]


def test_a_paper_card_waits_for_a_pf_code(engine, province):
    world(engine)
    register_event(engine, "C1")
    add_evaluation(engine, "paper/1", 5, channel="paper", origin="staff_entry", case_no="C1",
                   service_no="1", entered_by="clerk-1", entered_at="2026-11-26T09:00:00Z",
                   card_date="2026-11-26", tags='["H501"]', content_version="hcp-demo-1")  # fmt: skip
    sender = sender_for(engine, province)
    sender.run_once()
    assert states(engine)[("rating", "paper/1")] == (
        "unmapped",
        "channel: no pf code configured for 'paper'",
    )
