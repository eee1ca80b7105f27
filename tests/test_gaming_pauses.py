"""Ratings while a window was paused: the window PC reports each pause and
resume its keypad acknowledged to the collector, and the gaming rule
`while_paused` flags a rating of that window (any channel) timed inside a
pause, with its evidence (both databases)."""

from __future__ import annotations

import datetime as dt
import os
import time
import tty

import pytest
from sqlalchemy import select

from sync_server import db, gaming, org, tokens
from sync_server.schema_outbox import window_pauses
from tests.harness import shared_worlds
from tests.harness.records import add_evaluation
from tests.harness.shared_worlds import serve_web
from tests.harness.window_pc import running_window

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


def _utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def world(engine):
    org.seed(engine)
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "units", "hall-xg", "雪宫街道便民服务中心", "370305002", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        org.add(conn, "windows", "B01", "雪宫一号窗", "hall-xg")
        _id, token = tokens.create(conn, "window PC A01", "clerk", "370305001", "admin")
    return token


def pauses(engine):
    p = window_pauses.c
    with engine.connect() as conn:
        return [
            (r.window_id, r.paused_at, r.resumed_at)
            for r in conn.execute(select(p.window_id, p.paused_at, p.resumed_at).order_by(p.id))
        ]


# --- the collector's end -----------------------------------------------------------


def poster(app):
    """A call of the pause API with the window PC's token of a new world in `app`."""
    token = world(app.extensions["hcp_engine"])
    client = app.test_client()

    def post(window, body, bearer=token):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        answer = client.post(f"/api/v1/windows/{window}/pauses", json=body, headers=headers)
        return answer.status_code, answer.get_json()

    post.engine = app.extensions["hcp_engine"]
    return post


@pytest.fixture
def api(engine_app):
    return poster(engine_app)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def refusing_api(request, tmp_path_factory):
    """The pause API of one world per database for the reports the collector
    refuses (each checks that no pause was stored)."""
    made = []
    with shared_worlds.module_world(
        request, tmp_path_factory, lambda app: made.append(poster(app))
    ):
        yield made[0]


def test_pauses_and_resumes_make_intervals_and_a_report_sent_again_counts_once(api):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    paused, resumed = _utc(now - dt.timedelta(minutes=9)), _utc(now - dt.timedelta(minutes=2))
    assert api("A01", {"action": "pause", "at": paused}) == (
        201,
        {"window_id": "A01", "paused_at": paused, "resumed_at": None},
    )
    assert api("A01", {"action": "pause", "at": paused})[0] == 200  # sent again
    later = _utc(now - dt.timedelta(minutes=5))
    assert api("A01", {"action": "pause", "at": later}) == (  # paused already
        200,
        {"window_id": "A01", "paused_at": paused, "resumed_at": None},
    )
    done = {"window_id": "A01", "paused_at": paused, "resumed_at": resumed}
    assert api("A01", {"action": "resume", "at": resumed}) == (200, done)
    assert api("A01", {"action": "resume", "at": resumed}) == (200, done)  # sent again
    assert pauses(api.engine) == [("A01", paused, resumed)]


@pytest.mark.parametrize(
    ("window", "body", "status", "error"),
    [
        ("A01", {"action": "stop", "at": "2026-11-26T08:00:00Z"}, 400,
         "action: must be pause or resume"),
        ("A01", {"action": "pause", "at": "2026-11-26 08:00:00"}, 400,
         "at: must be a UTC time YYYY-MM-DDTHH:MM:SSZ"),
        ("A01", {"action": "pause", "at": "2026-02-30T08:00:00Z"}, 400, "at: not a calendar time"),
        ("A01", {"action": "pause", "at": "2099-01-01T00:00:00Z"}, 400, "at: in the future"),
        ("A01", {"action": "pause", "at": "2026-11-26T08:00:00Z", "who": "x"}, 400,
         'body: must be {"action": "pause" | "resume", "at": "<UTC time>"}'),
        ("A99", {"action": "pause", "at": "2026-11-26T08:00:00Z"}, 404,
         "window: no window A99 in your units"),
        ("B01", {"action": "pause", "at": "2026-11-26T08:00:00Z"}, 404,
         "window: no window B01 in your units"),  # another street's window
        ("A01", {"action": "resume", "at": "2026-11-26T08:00:00Z"}, 409,
         "resume: window A01 has no pause open before 2026-11-26T08:00:00Z"),
    ],
)  # fmt: skip
def test_a_bad_report_is_refused_naming_what_is_wrong(refusing_api, window, body, status, error):
    assert refusing_api(window, body) == (status, {"error": error})
    assert pauses(refusing_api.engine) == []


def test_a_report_needs_the_window_pcs_token(refusing_api):
    api = refusing_api
    assert api("A01", {"action": "pause", "at": "2026-11-26T08:00:00Z"}, bearer=None)[0] == 401
    assert api("A01", {"action": "pause", "at": "2026-11-26T08:00:00Z"}, bearer="hcp_no")[0] == 401
    assert pauses(api.engine) == []


# --- end to end: the window PC reports what its keypad acknowledged -----------------


def test_the_window_pc_reports_each_acknowledged_pause_and_resume(engine_app, tmp_path):
    from tests.test_window_link import Keypad, PtyUART, make_app, request

    engine = engine_app.extensions["hcp_engine"]
    token = world(engine)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    server, thread = serve_web(engine_app, "127.0.0.1", 0)
    master, slave = os.openpty()
    tty.setraw(slave)
    keypad = Keypad(make_app(tmp_path), PtyUART(master))
    keypad.start()
    collector = ["--collector", f"http://127.0.0.1:{server.server_port}",
                 "--token-file", str(token_file), "--window", "A01"]  # fmt: skip
    try:
        with running_window(os.ttyname(slave), extra_args=collector) as http_port:
            before = _utc(dt.datetime.now(dt.UTC))
            assert request(http_port, "POST", "/pause", {}) == (200, {"ok": True})
            assert request(http_port, "POST", "/resume", {}) == (200, {"ok": True})
            deadline = time.monotonic() + 20
            while not (pauses(engine) and pauses(engine)[0][2]):
                assert time.monotonic() < deadline, pauses(engine)
                time.sleep(0.05)
            status, answer = request(http_port, "GET", "/status")
    finally:
        keypad.stop.set()
        keypad.join(timeout=2)
        os.close(master)
        os.close(slave)
        server.shutdown()
        thread.join(5)
    [(window, paused, resumed)] = pauses(engine)
    after = _utc(dt.datetime.now(dt.UTC))
    assert window == "A01" and before <= paused <= resumed <= after
    assert status == 200 and answer["pause_reports"] == {
        "sent": 2, "refused": 0, "dropped": 0, "failures": 0, "waiting": 0, "last_error": None,
    }  # fmt: skip
    with engine.connect() as conn:
        assert conn.execute(select(window_pauses.c.reported_by)).scalar().startswith("token:")


# --- the rule ---------------------------------------------------------------------------


def test_ratings_of_a_window_inside_its_pause_are_flagged_with_their_evidence(engine):
    world(engine)
    with engine.begin() as conn:
        conn.execute(
            window_pauses.insert(),
            [
                {"window_id": "A01", "paused_at": "2026-11-26T06:00:00Z",
                 "resumed_at": "2026-11-26T06:30:00Z", "reported_by": "token:1",
                 "received_at": db.utc_now()},
                {"window_id": "A01", "paused_at": "2026-11-26T08:00:00Z", "resumed_at": None,
                 "reported_by": "token:1", "received_at": db.utc_now()},
            ],
        )  # fmt: skip
    rated = {
        "in-keypad": ("2026-11-26T06:10:00Z", "keypad", "A01"),
        "in-qr": ("2026-11-26T06:29:59Z", "qr_window", "A01"),
        "in-paper": ("2026-11-26T06:05:00Z", "paper", "A01"),
        "grace": ("2026-11-26T06:00:20Z", "keypad", "A01"),  # pressed as the pause began
        "before": ("2026-11-26T05:59:00Z", "keypad", "A01"),
        "after": ("2026-11-26T06:30:00Z", "keypad", "A01"),
        "other-window": ("2026-11-26T06:10:00Z", "keypad", "B01"),
        "open-pause": ("2026-11-26T09:00:00Z", "qr_window", "A01"),
        "open-too-long": ("2026-11-26T12:00:01Z", "qr_window", "A01"),
    }
    for record_id, (at, channel, window) in rated.items():
        add_evaluation(engine, record_id, 5, rated_at=at, channel=channel, window_id=window)
    with engine.connect() as conn:
        found = [f for f in gaming.scan(conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z")
                 if f["rule"] == "while_paused"]  # fmt: skip
    assert [f["record_id"] for f in found] == ["in-paper", "in-keypad", "in-qr", "open-pause"]
    assert found[0] == {
        "rule": "while_paused",
        "key": "in-paper",
        "record_id": "in-paper",
        "subject": "A01",
        "records": 1,
        "evidence": {
            "records": ["in-paper"],
            "window": "A01",
            "channel": "paper",
            "rated_at": "2026-11-26T06:05:00Z",
            "paused_at": "2026-11-26T06:00:00Z",
            "resumed_at": "2026-11-26T06:30:00Z",
            "seconds_into_pause": 300,
        },
    }
    assert found[3]["evidence"]["resumed_at"] is None
    with engine.connect() as conn:  # the grace and the open limit are settings
        strict = gaming.scan(conn, "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z",
                             {"HCP_GAMING_PAUSE_GRACE_S": 0,
                              "HCP_GAMING_PAUSE_OPEN_MINUTES": 600})  # fmt: skip
    assert sorted(f["record_id"] for f in strict if f["rule"] == "while_paused") == [
        "grace", "in-keypad", "in-paper", "in-qr", "open-pause", "open-too-long",
    ]  # fmt: skip


def test_a_report_the_collector_did_not_take_is_sent_again_in_order(engine_app):
    from hcp.window import PauseReporter
    from tests.harness.window_pc import free_port

    engine = engine_app.extensions["hcp_engine"]
    token = world(engine)
    port = free_port()  # nobody listens there yet: the collector is away
    reporter = PauseReporter(f"http://127.0.0.1:{port}", token, "A01", timeout=2, retry_s=0.05)
    try:
        now = time.time()
        reporter.report("pause", now - 120)
        reporter.report("resume", now - 60)
        deadline = time.monotonic() + 10
        while reporter.counters["failures"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert reporter.waiting == 2 and pauses(engine) == []
        assert reporter.status()["last_error"].startswith("collector: unreachable (")
        server, thread = serve_web(engine_app, "127.0.0.1", port)  # the collector is back
        try:
            while reporter.waiting:
                assert time.monotonic() < deadline + 10
                time.sleep(0.02)
        finally:
            server.shutdown()
            thread.join(5)
    finally:
        reporter.close()
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    assert pauses(engine) == [
        ("A01", _utc(moment - dt.timedelta(seconds=120)), _utc(moment - dt.timedelta(seconds=60)))
    ]
    assert (reporter.counters["sent"], reporter.counters["refused"]) == (2, 0)
