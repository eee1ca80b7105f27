"""Registering service events, as the business system does it with its API
token: idempotent, never backdated, malformed fields refused by name, a
clerk's token limited to its units; on SQLite and PostgreSQL.

The world: 闻韶街道 (370305001) with hall-ws, window A01 and staff S1001;
雪宫街道 (370305002) with hall-xg, window B01. The business systems' tokens
have the role clerk, one per street.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import urllib.error
import urllib.request

import pytest
from sqlalchemy import select

from sync_server import org, tokens
from sync_server.schema_channels import service_events
from sync_server.schema_outbox import outbox as outbox_table
from tests.harness import shared_worlds
from tests.harness.collector import AuthActions
from tests.test_openapi import problems

ITEM = "11370305MB2856093X437030500100101"


def utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def minutes_ago(n: float) -> str:
    return utc(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=n))


def event(**fields) -> dict:
    body = {
        "case_no": "LZ2026112700001",
        "service_no": "1",
        "item_code": ITEM,
        "unit_id": "hall-ws",
        "window_id": "A01",
        "staff_id": "S1001",
        "handled_at": minutes_ago(10),
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def build(engine) -> dict:
    """The two streets' halls, windows and staff, and one token per street."""
    made = {}
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "units", "hall-xg", "雪宫街道便民服务中心", "370305002", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        org.add(conn, "windows", "B01", "雪宫一号窗", "hall-xg")
        org.add(conn, "staff", "S1001", "王敏", "hall-ws")
        org.add(conn, "staff", "S2001", "李强", "hall-xg")
        for name, unit in (("ws", "370305001"), ("xg", "370305002")):
            made[name] = tokens.create(conn, f"business-{name}", "clerk", unit, "admin")[1]
        made["supervisor"] = tokens.create(conn, "reports", "supervisor", None, "admin")[1]
    return made


# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@pytest.fixture
def world(engine_app):
    engine_app.tokens = build(engine_app.extensions["hcp_engine"])
    return engine_app


def _build_refusing(app):
    app.tokens = build(app.extensions["hcp_engine"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def refusing(request, tmp_path_factory):
    """One world per database for the module's cases that the app refuses
    (each still checks that nothing was stored, so a refusal that wrongly
    went through fails its own case)."""
    with shared_worlds.module_world(request, tmp_path_factory, _build_refusing) as app:
        yield app


def post(app, body, token="ws", path="/api/v1/service-events"):
    headers = {"Authorization": f"Bearer {app.tokens[token]}"} if token else {}
    return app.test_client().post(path, json=body, headers=headers)


def stored(app) -> list[dict]:
    with app.extensions["hcp_engine"].connect() as conn:
        rows = conn.execute(select(service_events).order_by(service_events.c.id))
        return [dict(row._mapping) for row in rows]


def schema_problems(app, response, path, method, status) -> list[str]:
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    described = document["paths"][path][method]["responses"][str(status)]
    schema = described["content"]["application/json"]["schema"]
    return problems(response.get_json(), schema, document)


# --- registration --------------------------------------------------------------------


def test_an_event_is_registered_once_and_the_same_again_gets_the_same_id(world):
    body = event()
    first = post(world, body)
    assert first.status_code == 201, first.get_json()
    answer = first.get_json()
    assert {k: answer[k] for k in ("case_no", "service_no", "unit_id", "window_id")} == {
        "case_no": "LZ2026112700001",
        "service_no": "1",
        "unit_id": "hall-ws",
        "window_id": "A01",
    }
    assert answer["source"] == "api" and answer["registered_by"].startswith("token:")
    assert answer["rating_id"] is None and answer["has_phone"] is False
    assert schema_problems(world, first, "/api/v1/service-events", "post", 201) == []

    again = post(world, body)
    assert again.status_code == 200
    assert again.get_json()["id"] == answer["id"]
    assert schema_problems(world, again, "/api/v1/service-events", "post", 200) == []
    assert len(stored(world)) == 1
    # the report upward has the new event once (sync_server/outbox.py, called
    # in the registering transaction)
    with world.extensions["hcp_engine"].connect() as conn:
        queued = conn.execute(select(outbox_table.c.kind, outbox_table.c.ref)).all()
    assert [tuple(row) for row in queued] == [("event", "LZ2026112700001/1")]


def test_another_service_of_the_same_case_is_another_event(world):
    assert post(world, event(service_no="1")).status_code == 201
    assert post(world, event(service_no="2")).status_code == 201
    assert [row["service_no"] for row in stored(world)] == ["1", "2"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"staff_id": None}, "staff_id"),
        ({"window_id": None}, "window_id"),
        ({"item_code": "11370305MB2856093X437030500100102"}, "item_code"),
        ({"unit_id": "370305001"}, "unit_id"),
        ({"phone": "13800000000"}, "phone"),
    ],
)
def test_the_same_case_and_service_with_other_content_is_a_conflict(world, change, field):
    body = event()
    assert post(world, body).status_code == 201
    changed = {k: v for k, v in {**body, **change}.items() if v is not None}
    response = post(world, changed)
    assert response.status_code == 409
    assert response.get_json() == {
        "error": f"{field}: differs from the event registered for case LZ2026112700001 service 1"
    }
    assert len(stored(world)) == 1


def test_a_conflicting_handled_at_is_named(world):
    body = event(handled_at=minutes_ago(10))
    assert post(world, body).status_code == 201
    response = post(world, {**body, "handled_at": minutes_ago(5)})
    assert response.status_code == 409
    assert response.get_json()["error"].startswith("handled_at: differs from the event")


def test_a_repeat_of_an_old_registration_is_still_the_same_event(world):
    """A business system retrying after the age limit must not be told it backdates."""
    body = event()
    first = post(world, body).get_json()
    world.config["HCP_EVENT_MAX_AGE_HOURS"] = 0  # now everything is too old
    again = post(world, body)
    assert again.status_code == 200 and again.get_json()["id"] == first["id"]


# --- never backdated -----------------------------------------------------------------


def test_a_time_in_the_future_is_refused(refusing):
    future = utc(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
    response = post(refusing, event(handled_at=future))
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "handled_at: is in the future (more than 300 s ahead of the collector's clock)"
    }
    assert stored(refusing) == []


def test_a_small_clock_skew_is_taken(world):
    ahead = utc(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120))
    assert post(world, event(handled_at=ahead)).status_code == 201


def test_a_time_older_than_the_setting_is_refused(world):
    response = post(world, event(handled_at=minutes_ago(25 * 60)))
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "handled_at: is more than 24 hours ago: service events are registered as "
        "they happen, never backdated"
    }
    world.config["HCP_EVENT_MAX_AGE_HOURS"] = 48
    assert post(world, event(handled_at=minutes_ago(25 * 60))).status_code == 201


# --- malformed fields ----------------------------------------------------------------

LETTERS = "must be 4..64 characters of A-Z a-z 0-9 - _, beginning with a letter or digit"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"case_no": "LZ1"}, f"case_no: {LETTERS}"),
        ({"case_no": "办件2026000001"}, f"case_no: {LETTERS}"),
        ({"case_no": "-LZ20261127"}, f"case_no: {LETTERS}"),
        ({"case_no": "LZ 2026 1127"}, f"case_no: {LETTERS}"),
        ({"case_no": "L" * 65}, "case_no: longer than 64 characters"),
        ({"case_no": 2026112700001}, "case_no: must be a string, got int"),
        ({"case_no": None}, "case_no: is required"),
        ({"service_no": ""}, "service_no: must be 1..32 characters of A-Z a-z 0-9 - _"),
        ({"service_no": "１"}, "service_no: must be 1..32 characters of A-Z a-z 0-9 - _"),
        (
            {"item_code": "11370305mb2856093x"},
            "item_code: must be 8..64 characters of A-Z 0-9 (the 事项实施编码 of the "
            "province's item list)",
        ),
        ({"item_code": None}, "item_code: is required"),
        ({"unit_id": "hall-zz"}, "unit_id: unknown unit 'hall-zz'"),
        ({"unit_id": "hall ws"}, "unit_id: must be 1..64 characters of A-Z a-z 0-9 . _ -"),
        ({"window_id": "A99"}, "window_id: unknown window 'A99'"),
        ({"staff_id": "S9999"}, "staff_id: unknown staff 'S9999'"),
        (
            {"window_id": "B01"},
            "window_id: 'B01' was not in unit 'hall-ws' at {handled_at}",
        ),
        (
            {"staff_id": "S2001"},
            "staff_id: 'S2001' was not in unit 'hall-ws' at {handled_at}",
        ),
        ({"handled_at": "2026-11-27 08:00:00"}, "handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"),
        ({"handled_at": "2026-02-30T08:00:00Z"}, "handled_at: must be UTC time as YYYY-MM-DDTHH:MM:SSZ"),
        ({"phone": "1380000000"}, "phone: must be a mainland mobile number of 11 digits"),
        ({"applicant": "张三"}, "applicant: unknown field"),
    ],
)  # fmt: skip
def test_malformed_fields_are_refused_by_name(refusing, change, error):
    body = event(**change)
    response = post(refusing, body)
    assert response.status_code == 400
    assert response.get_json() == {"error": error.format(handled_at=body.get("handled_at"))}
    assert stored(refusing) == []


def test_a_body_that_is_not_a_json_object_is_refused(refusing):
    client = refusing.test_client()
    headers = {"Authorization": f"Bearer {refusing.tokens['ws']}"}
    response = client.post("/api/v1/service-events", data="case_no=1", headers=headers)
    assert response.status_code == 415
    assert response.get_json() == {"error": "body: must be JSON (Content-Type: application/json)"}
    response = client.post("/api/v1/service-events", json=["LZ2026"], headers=headers)
    assert response.status_code == 400
    assert response.get_json() == {"error": "body: must be a JSON object"}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("[" * 100_000 + "]" * 100_000, "body: not valid JSON"),
        ('{"case_no": ', "body: not valid JSON"),
        ('"LZ2026112700001"', "body: must be a JSON object"),
        ('{"case_no": "<script>alert(1)</script>"}', f"case_no: {LETTERS}"),
        ('{"case_no": "LZ2026\\u0000001"}', f"case_no: {LETTERS}"),
        ('{"case_no": "LZ2026\\ud800001"}', f"case_no: {LETTERS}"),
        ('{"case_no": ["LZ2026112700001"]}', "case_no: must be a string, got list"),
        ('{"' + "x" * 5000 + '": 1}', "x" * 40 + ": unknown field"),
        ('{":": null}', ":: unknown field"),  # a made-up name may hold the separator
    ],
)
def test_hostile_bodies_get_a_clear_error_and_store_nothing(refusing, raw, error):
    headers = {
        "Authorization": f"Bearer {refusing.tokens['ws']}",
        "Content-Type": "application/json",
    }
    client = refusing.test_client()
    response = client.post("/api/v1/service-events", data=raw, headers=headers)
    assert response.status_code == 400
    assert response.get_json() == {"error": error}
    batch = client.post("/api/v1/service-events/batch", data=raw, headers=headers)
    assert batch.status_code == 400
    assert stored(refusing) == []


def test_a_batch_item_that_is_not_an_object_is_refused_alone(world):
    body = {"events": ["LZ2026112700001", event(), None]}
    response = post(world, body, path="/api/v1/service-events/batch")
    assert [(r["status"], r.get("error")) for r in response.get_json()["results"]] == [
        (400, "body: must be a JSON object"),
        (201, None),
        (400, "body: must be a JSON object"),
    ]


def test_the_staff_member_must_have_been_in_the_unit_when_the_service_was_handled(world):
    engine = world.extensions["hcp_engine"]
    moved_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    with engine.begin() as conn:
        org.move(conn, "staff", "S1001", "hall-xg", utc(moved_at))
    before = post(world, event(service_no="1", handled_at=minutes_ago(40)))
    assert before.status_code == 201, before.get_json()
    after = post(world, event(service_no="2", handled_at=minutes_ago(20)))
    assert after.status_code == 400
    assert after.get_json()["error"].startswith("staff_id: 'S1001' was not in unit 'hall-ws' at ")


def test_the_phone_goes_to_the_citizen_feature_and_never_comes_back(world):
    from sync_server import citizen

    response = post(world, event(phone="13800000000"))
    if getattr(citizen, "keep_event_phone", None) is None:
        assert response.status_code == 400
        assert response.get_json() == {
            "error": "phone: this collector does not keep applicants' phones yet"
        }
        assert stored(world) == []
        return
    assert response.status_code == 201
    assert response.get_json()["has_phone"] is True
    assert "13800000000" not in response.get_data(as_text=True)
    assert stored(world)[0]["phone_ref"] not in (None, "13800000000")


# --- who may register ----------------------------------------------------------------


def test_a_clerk_token_registers_only_inside_its_units(world):
    assert post(world, event(unit_id="hall-ws")).status_code == 201  # below 闻韶街道
    response = post(world, event(case_no="XG2026112700001", unit_id="hall-xg", window_id="B01",
                                 staff_id="S2001"))  # fmt: skip
    assert response.status_code == 403
    assert response.get_json() == {"error": "unit_id: 'hall-xg' is outside your units"}
    ok = post(world, event(case_no="XG2026112700001", unit_id="hall-xg", window_id="B01",
                           staff_id="S2001"), token="xg")  # fmt: skip
    assert ok.status_code == 201
    assert [row["unit_id"] for row in stored(world)] == ["hall-ws", "hall-xg"]


def test_roles_without_the_capability_and_strangers_are_refused(refusing):
    response = post(refusing, event(), token="supervisor")
    assert response.status_code == 403
    assert response.get_json() == {"error": "not allowed for the role supervisor"}
    response = post(refusing, event(), token=None)
    assert response.status_code == 401
    assert stored(refusing) == []


def test_an_admin_session_registers_too(world):
    client = world.test_client()
    AuthActions(client).login("admin")
    response = client.post("/api/v1/service-events", json=event())
    assert response.status_code == 201
    assert response.get_json()["registered_by"] == "admin"


def test_the_list_shows_a_clerk_only_its_units(world):
    post(world, event())
    post(world, event(case_no="XG2026112700001", unit_id="hall-xg", window_id="B01",
                      staff_id="S2001"), token="xg")  # fmt: skip
    client = world.test_client()
    headers = {"Authorization": f"Bearer {world.tokens['xg']}"}
    listed = client.get("/api/v1/service-events", headers=headers)
    assert listed.status_code == 200
    assert [item["case_no"] for item in listed.get_json()["items"]] == ["XG2026112700001"]
    assert listed.get_json()["total"] == 1
    assert schema_problems(world, listed, "/api/v1/service-events", "get", 200) == []
    one = client.get("/api/v1/service-events?case_no=LZ2026112700001", headers=headers)
    assert one.get_json()["items"] == []
    bad = client.get("/api/v1/service-events?per_page=0", headers=headers)
    assert bad.status_code == 400 and bad.get_json() == {"error": "per_page: must be 1..500"}


# --- catching up: the batch ----------------------------------------------------------


def test_a_batch_decides_each_event_alone(world):
    body = {
        "events": [
            event(case_no="LZ2026112700001"),
            event(case_no="LZ2026112700002", staff_id="S2001"),
            event(case_no="LZ2026112700001"),
            event(case_no="LZ2026112700003", handled_at=minutes_ago(60 * 30)),
            event(case_no="XG2026112700001", unit_id="hall-xg", window_id="B01", staff_id=None),
            event(case_no="LZ2026112700001", staff_id=None),
        ]
    }
    response = post(world, body, path="/api/v1/service-events/batch")
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [(r["index"], r["status"], r.get("error")) for r in results] == [
        (0, 201, None),
        (1, 400, results[1]["error"]),
        (2, 200, None),
        (3, 400, "handled_at: is more than 24 hours ago: service events are registered as "
                 "they happen, never backdated"),
        (4, 403, "unit_id: 'hall-xg' is outside your units"),
        (5, 409, "staff_id: differs from the event registered for case LZ2026112700001 "
                 "service 1"),
    ]  # fmt: skip
    assert results[1]["error"].startswith("staff_id: 'S2001' was not in unit 'hall-ws' at ")
    assert results[2]["id"] == results[0]["id"]
    assert [row["case_no"] for row in stored(world)] == ["LZ2026112700001"]
    assert schema_problems(world, response, "/api/v1/service-events/batch", "post", 200) == []


def test_a_batch_is_bounded(world):
    world.config["HCP_EVENT_BATCH_MAX"] = 3
    body = {"events": [event(case_no=f"LZ202611270000{i}") for i in range(4)]}
    response = post(world, body, path="/api/v1/service-events/batch")
    assert response.status_code == 400
    assert response.get_json() == {"error": "events: more than 3 events in one batch"}
    for bad, error in (
        ({"events": []}, "events: must be a non-empty list"),
        ({"events": [event()], "more": 1}, 'body: must be {"events": [...]}'),
    ):
        response = post(world, bad, path="/api/v1/service-events/batch")
        assert response.status_code == 400 and response.get_json() == {"error": error}
    assert stored(world) == []


def test_rate_until_is_five_working_days_after_the_local_day(world):
    answer = post(world, event()).get_json()
    from sync_server import workdays

    handled = dt.datetime.strptime(answer["handled_at"], "%Y-%m-%dT%H:%M:%SZ")
    local = (handled + dt.timedelta(hours=8)).date()
    assert answer["rate_until"] == workdays.add_working_days(local, 5).isoformat()


# --- through the window PC -----------------------------------------------------------


@contextlib.contextmanager
def window_pc(collector):
    """`hcp window`'s HTTP service in this process, on a pyserial loopback port
    (no keypad needed for /event)."""
    import serial

    from hcp import window

    port = serial.serial_for_url("loop://", timeout=0.05)
    server, link = window.serve(port, 0, collector=collector)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": shared_worlds.SHUTDOWN_POLL_S},
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        link.close()


def send(url, body) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/event", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_window_pc_registers_events_with_the_collector(world):
    from hcp.window import CollectorLink
    from tests.harness.shared_worlds import serve_web

    web, _thread = serve_web(world, "127.0.0.1", 0)
    try:
        collector = f"http://127.0.0.1:{web.server_port}"
        with window_pc(CollectorLink(collector, world.tokens["ws"], window_id="A01")) as url:
            body = {k: v for k, v in event().items() if k != "window_id"}
            status, answer = send(url, body)
            assert status == 201, answer
            assert (answer["window_id"], answer["case_no"]) == ("A01", "LZ2026112700001")
            again = send(url, body)
            assert again == (200, {**answer, "rate_until": answer["rate_until"]})
            status, answer = send(url, {**body, "service_no": "2", "handled_at": 20261127})
            assert (status, answer) == (400, {"error": "handled_at: must be a string, got int"})
        with window_pc(CollectorLink(collector, world.tokens["ws"])) as url:
            status, answer = send(url, event(case_no="XG2026112700001", unit_id="hall-xg"))
            assert (status, answer) == (403, {"error": "unit_id: 'hall-xg' is outside your units"})
    finally:
        web.shutdown()
    assert [row["source"] for row in stored(world)] == ["api"]


def test_the_window_pc_says_when_it_cannot_register(refusing):
    from hcp.window import CollectorLink
    from tests.harness.window_pc import free_port

    with window_pc(None) as url:
        assert send(url, event()) == (
            503,
            {"error": "event: no collector configured (hcp window --collector --token-file)"},
        )
    nowhere = CollectorLink(f"http://127.0.0.1:{free_port()}", refusing.tokens["ws"])
    with window_pc(nowhere) as url:
        status, answer = send(url, event())
    assert status == 502 and answer["error"].startswith("collector: unreachable (")


# --- the demo ------------------------------------------------------------------------


def test_the_demo_registers_events_for_its_simulated_windows(engine_app):
    from hcp.demo import WINDOWS, _demo_org
    from hcp.service_events import count, register_demo_events

    engine = engine_app.extensions["hcp_engine"]
    _demo_org(engine)
    now = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)
    made = register_demo_events(engine, per_window=2, now=now)
    assert count(engine) == len(made) == 2 * len(WINDOWS)
    a01 = [event for event in made if event["window_id"] == "A01"]
    assert [(e["case_no"], e["handled_at"], e["staff_id"], e["unit_id"]) for e in a01] == [
        ("DEMO-20261127013000-A01-1", "2026-11-27T01:28:00Z", "1001", "demo-hall-qu"),
        ("DEMO-20261127013000-A01-2", "2026-11-27T01:29:00Z", "1001", "demo-hall-qu"),
    ]
    assert {e["source"] for e in made} == {"demo"}
    assert {e["rate_until"] for e in made} == {"2026-12-04"}


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("HCP_RATING_PERIOD_WORKING_DAYS", -1, "must be a whole number 0..60, got -1"),
        ("HCP_RATING_PERIOD_WORKING_DAYS", "5", "must be a whole number 0..60, got '5'"),
        ("HCP_EVENT_BATCH_MAX", 0, "must be a whole number 1..10000, got 0"),
        ("HCP_EVENT_MAX_AGE_HOURS", True, "must be a whole number 0..744, got True"),
    ],
)
def test_a_wrong_setting_stops_the_collector_at_start(tmp_path, setting, value, error):
    from tests.harness.collector import make_app

    with pytest.raises(ValueError) as refused:
        make_app(tmp_path, **{setting: value})
    assert str(refused.value) == f"{setting}: {error}"


def test_a_batch_with_hostile_codes_is_decided_item_by_item(world):
    body = {"events": [event(case_no="LZ\x002026"), event(service_no="1\x00"), event()]}
    response = post(world, body, path="/api/v1/service-events/batch")
    assert response.status_code == 200
    assert [(r["status"], r.get("error", "")[:9]) for r in response.get_json()["results"]] == [
        (400, "case_no: "),
        (400, "service_n"),
        (201, ""),
    ]
