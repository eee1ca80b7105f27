"""The simulated province is strict, and the mapping layer passes it: our
records go up through sync_server.province_map and come back the same,
with the province as the judge (both databases)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

import pytest
from sqlalchemy import select

from protocols.levels import MappingError
from simulators.province import Province, serve
from sync_server import db, org, outbox, pf_map, province_map, tags
from sync_server.outbox_sender import ProvinceClient, Sender, SendFailed
from sync_server.schema_channels import service_events
from sync_server.schema_outbox import outbox as outbox_table
from tests.harness import shared_worlds
from tests.harness.records import add_evaluation

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres

HANDLED = "2026-11-26T08:20:00Z"  # 16:20 in Linzi
RATED = "2026-11-26T08:30:00Z"


def register_event(engine, case_no, service_no="1", handled_at=HANDLED, unit="hall-ws", **extra):
    """What the channels feature does: store a service event and tell the outbox,
    in one transaction."""
    event = {
        "case_no": case_no,
        "service_no": service_no,
        "item_code": extra.pop("item_code", "11370305MB0000000X-001"),
        "unit_id": unit,
        "window_id": extra.pop("window_id", "A01"),
        "staff_id": extra.pop("staff_id", "1001"),
        "handled_at": handled_at,
        "registered_at": db.utc_now(),
        "source": "api",
        **extra,
    }
    with engine.begin() as conn:
        conn.execute(service_events.insert().values(**event))
        outbox.event_registered(conn, event)
    return event


def world(engine):
    org.seed(engine)
    tags.seed(engine)
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")


@pytest.fixture
def province():
    state = Province()
    server, url = serve(state)
    state.url = url
    yield state
    server.shutdown()
    server.server_close()


def sender_for(engine, province, **settings):
    credential = province.issue_credential()
    base = {
        "HCP_PROVINCE_URL": province.url,
        "HCP_PROVINCE_CREDENTIAL": credential,
        "HCP_OUTBOX_BACKOFF_S": 0.01,
        "HCP_OUTBOX_BACKOFF_MAX_S": 0.05,
    }
    return Sender(engine, base | settings)


def drain(sender, rounds=20):
    import time

    for _ in range(rounds):
        done = sender.run_once()
        if not done["sent"] and done["failed"] is None and time.monotonic() >= sender.not_before:
            if not done["sent"]:
                return
        time.sleep(0.01)


def states(engine):
    o = outbox_table.c
    with engine.connect() as conn:
        return {
            (row.kind, row.ref): (row.state, row.reason)
            for row in conn.execute(select(o.kind, o.ref, o.state, o.reason))
        }


# --- times and codes, both ways ------------------------------------------------------


def test_times_go_up_in_linzi_local_time_and_come_back_unchanged():
    assert province_map.local_time("2026-11-26T08:30:00Z") == "2026-11-26 16:30:00"
    assert province_map.local_time("2026-12-31T16:00:00.123456Z") == "2027-01-01 00:00:00"
    assert province_map.utc_time("2027-01-01 00:00:00") == "2026-12-31T16:00:00Z"
    assert province_map.utc_time(province_map.local_time(RATED)) == RATED


def test_area_and_department_codes_come_from_the_organisation(engine):
    world(engine)
    with engine.begin() as conn:
        org.add(conn, "units", "370305001001", "某社区", "370305001", kind="community")
        org.add(conn, "units", "dept-x", "区行政审批服务局", "370305", kind="department")
        org.add(conn, "units", "hall-x", "审批大厅", "dept-x", kind="hall")
    with engine.connect() as conn:
        codes = province_map.Organisation(
            conn, {"HCP_PROVINCE_DEPT_CODES": {"dept-x": "11370305MB1234567Y"}}
        )
    assert codes.area_code("hall-ws") == "370305001000"
    assert codes.area_code("370305001001") == "370305001001"
    assert codes.area_code("hall-x") == "370305000000"
    assert codes.dept_code("hall-x") == "11370305MB1234567Y"
    assert codes.dept_code("hall-ws") == province_map.DEFAULTS["HCP_PROVINCE_DEPT_CODE"]
    assert codes.area_code("nowhere") == "370305000000"


def test_a_rating_without_a_service_event_cannot_be_put_in_the_provinces_form(engine):
    with engine.connect() as conn:
        organisation = province_map.Organisation(conn)
    record = {"id": "kp-01:1", "stars": 5, "channel": "keypad", "effective_at": RATED, "attempt": 1}
    with pytest.raises(MappingError) as caught:
        province_map.rating_payload(record, organisation, pf_map.read(engine), None)
    assert str(caught.value).startswith("case_no: the rating names no service event")


# --- the province's own rules --------------------------------------------------------


def post(province, credential, path, items):
    return ProvinceClient(province.url, credential).post(path, items)


def event_item(**extra):
    item = {
        "projectNo": "C1",
        "serviceNo": "1",
        "taskCode": "T1",
        "deptCode": "11370305MB0000000X",
        "areaCode": "370305001000",
        "userId": "1001",
        "handleTime": _local_now(-60),
    }
    return item | extra


def rating_item(**extra):
    item = {
        "evaluationId": "kp-01:1",
        "projectNo": "C1",
        "serviceNo": "1",
        "taskCode": "T1",
        "deptCode": "11370305MB0000000X",
        "areaCode": "370305001000",
        "userId": "1001",
        "pf": 4,
        "satisfaction": 5,
        "evalDetail": "H501",
        "evalContent": "",
        "assessTime": _local_now(-30),
        "assessNumber": 1,
        "contentVersion": "hcp-demo-1",
    }
    return item | extra


def _local_now(offset_s):
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    return province_map.local_time(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_the_province_refuses_a_rating_before_its_service_event(province):
    credential = province.issue_credential()
    [result] = post(province, credential, "/api/v1/evaluations", [rating_item()])
    assert result == {
        "id": "kp-01:1",
        "status": "refused",
        "reason": "projectNo/serviceNo: no service event registered for it",
    }
    [event] = post(province, credential, "/api/v1/service-events", [event_item()])
    assert event["status"] == "accepted" and "flags" not in event
    [result] = post(province, credential, "/api/v1/evaluations", [rating_item()])
    assert result["status"] == "accepted"
    # the same again is a duplicate with the same receipt; a changed time is refused
    [again] = post(province, credential, "/api/v1/evaluations", [rating_item()])
    assert again == {"id": "kp-01:1", "status": "duplicate", "receipt": result["receipt"]}
    [moved] = post(
        province, credential, "/api/v1/evaluations", [rating_item(assessTime=_local_now(-20))]
    )
    assert moved["reason"] == "assessTime: received before with different data"
    assert province.log == [("event", "C1/1"), ("rating", "kp-01:1")]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"satisfaction": 0}, "satisfaction: must be 1 to 5 (5 = 非常满意)"),
        ({"satisfaction": 4}, "evalDetail: H501 belongs to level 5, not 4"),
        ({"pf": 9}, "pf: must be 1 to 7"),
        ({"evalDetail": "H999"}, "evalDetail: H999 is not a code of version hcp-demo-1"),
        ({"contentVersion": "v0"}, "contentVersion: not the tag version in force at assessTime"),
        (
            {"satisfaction": 1, "evalDetail": ""},
            "evalDetail: a 差评 needs a reason (a code or text)",
        ),
        ({"assessNumber": 2}, "assessNumber: an appended rating needs a first one"),
        (
            {"assessTime": _local_now(-3600)},
            "assessTime: before the service was handled (backdated)",
        ),
        ({"assessTime": _local_now(3600)}, "assessTime: in the future"),
        ({"assessTime": "2026-11-26T16:30:00"}, "assessTime: must be YYYY-MM-DD HH:MM:SS"),
        ({"taskCode": "T2"}, "taskCode: differs from the registered service event"),
    ],
)
def test_the_province_refuses_a_bad_rating_naming_the_field(province, change, reason):
    credential = province.issue_credential()
    post(province, credential, "/api/v1/service-events", [event_item()])
    [result] = post(province, credential, "/api/v1/evaluations", [rating_item(**change)])
    assert (result["status"], result["reason"]) == ("refused", reason)


def test_one_first_rating_per_event_and_appended_ones_after_it(province):
    credential = province.issue_credential()
    post(province, credential, "/api/v1/service-events", [event_item()])
    first, second, appended = post(
        province,
        credential,
        "/api/v1/evaluations",
        [
            rating_item(),
            rating_item(evaluationId="web/x"),
            rating_item(evaluationId="web/y", assessNumber=2, satisfaction=2, evalDetail="H201"),
        ],
    )
    assert first["status"] == "accepted" and appended["status"] == "accepted"
    assert second["reason"] == "assessNumber: the service event is rated already (一事一评)"


def test_late_registration_is_flagged_and_can_be_refused():
    for late, expected in (("flag", "accepted"), ("refuse", "refused")):
        province = Province(late_window_s=300, late=late)
        server, province.url = serve(province)
        try:
            credential = province.issue_credential()
            [result] = post(
                province,
                credential,
                "/api/v1/service-events",
                [event_item(handleTime=_local_now(-301))],
            )
        finally:
            server.shutdown()
            server.server_close()
        assert result["status"] == expected
        if late == "flag":
            assert result["flags"] == ["late"]
        else:
            assert result["reason"] == "handleTime: reported more than 300 s after it"


def test_requests_must_be_signed_under_a_live_credential(province):
    credential = province.issue_credential()
    expired = province.issue_credential(valid_s=-1)
    with pytest.raises(SendFailed) as caught:
        post(province, expired, "/api/v1/service-events", [event_item()])
    assert (caught.value.state, str(caught.value)) == (
        "credential",
        "the province refused the credential: credential: expired",
    )
    forged = credential | {"private_key": province.issue_credential()["private_key"]}
    with pytest.raises(SendFailed) as caught:
        post(province, forged, "/api/v1/service-events", [event_item()])
    assert str(caught.value) == "the province refused the credential: signature: does not verify"
    unsigned = urllib.request.Request(
        province.url + "/api/v1/service-events",
        data=json.dumps({"items": [event_item()]}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=5)
    assert json.loads(refused.value.read()) == {"code": 401, "msg": "credential: unknown app id"}
    assert province.log == []


# --- our records through the sender, the province as the judge ------------------------


def test_our_records_reach_the_province_and_map_back_unchanged(engine, province):
    world(engine)
    register_event(engine, "C100", handled_at=HANDLED)
    add_evaluation(
        engine,
        "kp-01:1",
        2,
        rated_at=RATED,
        case_no="C100",
        service_no="1",
        window_id="A01",
        tags='["H201","H203"]',
        content_version="hcp-demo-1",
        comment="等了很久",
    )
    add_evaluation(
        engine,
        "web/abc",
        4,
        rated_at="2026-11-26T09:00:00Z",
        channel="web",
        client="mobile",
        device_id=None,
        case_no="C100",
        service_no="1",
        attempt=2,
        follows="kp-01:1",
        tags='["H401"]',
        content_version="hcp-demo-1",
    )
    province_late = province.late_window_s  # our fixed times are long past: flagged late
    drain(sender_for(engine, province))
    assert states(engine) == {
        ("event", "C100/1"): ("acked", None),
        ("rating", "kp-01:1"): ("acked", None),
        ("rating", "web/abc"): ("acked", None),
    }
    got = province.received()
    assert got["log"] == [["event", "C100/1"], ["rating", "kp-01:1"], ["rating", "web/abc"]]
    [event] = got["events"]
    assert event["flags"] == ["late"] and province_late == 300
    with engine.connect() as conn:
        assert outbox.figures(conn)["flagged_late"] == 3  # our fixed times are long past
    assert province_map.event_record(event["payload"]) == {
        "case_no": "C100",
        "service_no": "1",
        "item_code": "11370305MB0000000X-001",
        "staff_id": "1001",
        "handled_at": HANDLED,
        "dept_code": "11370305MB0000000X",
        "area_code": "370305001000",
    }
    table = pf_map.read(engine)
    back = {
        r["payload"]["evaluationId"]: province_map.rating_record(r["payload"], table)
        for r in got["evaluations"]
    }
    assert back["kp-01:1"] == {
        "id": "kp-01:1",
        "case_no": "C100",
        "service_no": "1",
        "item_code": "11370305MB0000000X-001",
        "stars": 2,
        "channel": "keypad",
        "client": None,
        "tags": ["H201", "H203"],
        "comment": "等了很久",
        "effective_at": RATED,
        "attempt": 1,
        "content_version": "hcp-demo-1",
    }
    assert back["web/abc"]["channel"] == "web" and back["web/abc"]["client"] == "mobile"
    assert back["web/abc"]["attempt"] == 2 and back["web/abc"]["stars"] == 4
    assert got["evaluations"][0]["payload"]["satisfaction"] == 2
    assert got["evaluations"][0]["payload"]["assessTime"] == "2026-11-26 16:30:00"


def test_what_cannot_be_mapped_or_is_refused_is_kept_with_its_reason(engine, province):
    world(engine)
    register_event(engine, "C200")
    add_evaluation(engine, "kp-01:1", 5, case_no="C200", service_no="1", tags='["H501"]',
                   content_version="hcp-demo-1")  # fmt: skip
    add_evaluation(engine, "kp-01:2", 1, case_no="C200", service_no="1", repeat_of="kp-01:1")
    add_evaluation(engine, "kp-01:3", 5)  # no case: nothing to refer to
    add_evaluation(engine, "kp-01:4", 1, case_no="C999", service_no="1", item_code="T9")
    drain(sender_for(engine, province))
    assert states(engine) == {
        ("event", "C200/1"): ("acked", None),
        ("rating", "kp-01:1"): ("acked", None),
        ("rating", "kp-01:2"): (
            "skipped",
            "repeat of kp-01:1: the province takes one first rating per service event",
        ),
        ("rating", "kp-01:3"): (
            "unmapped",
            "case_no: the rating names no service event (case and service number); the "
            "province takes ratings of registered service events only",
        ),
        ("rating", "kp-01:4"): (
            "dead",
            "projectNo/serviceNo: no service event registered for it",
        ),
    }
    assert [entry[1] for entry in province.log] == ["C200/1", "kp-01:1"]


def test_the_province_shows_what_it_received_on_a_page(province):
    credential = province.issue_credential()
    post(province, credential, "/api/v1/service-events", [event_item(projectNo="C<1>")])
    with urllib.request.urlopen(province.url + "/", timeout=5) as response:
        page = response.read().decode()
    assert "已接收 1 条，重复 0 条，拒收 0 条，故障应答 0 次；当前模式 ok" in page
    assert "<td>服务记录</td><td>C&lt;1&gt;/1</td><td>SD0000000001</td>" in page
