# ruff: noqa: F811 (the fleet_broker fixture is imported from test_revocation)
"""Configuration as desired state and held commands (issue 11).

On both databases: desired versions, drift and since when, the command
life cycle (pending, sent, accepted, done, failed, expired, cancelled).
End to end on a locked-down Mosquitto with the ingest, the fleet agent and a
simulated keypad running the real firmware (device/): a config pushed is
applied and reported, the drift clears; commands queued while the keypad is
off wait for it, expire when it does not come, and their results are kept.
"""

import datetime as dt
import json
import secrets
import time

import pytest
from sqlalchemy import select

from protocols import messages
from simulators.keypad import SimKeypad
from sync_server import db, fleet, org
from sync_server.fleet_agent import FleetAgent
from sync_server.schema_fleet import fleet_commands, fleet_configs
from tests.test_revocation import fleet_broker, wait_for  # noqa: F401 (fixture)


def world(engine):
    org.seed(engine)
    db.add_device(engine, "kp-01", "11" * 32)
    with engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        conn.execute(db.staff.insert().values(id="1001", name="张敏", created_at=db.utc_now()))


# --- the parts, on both databases ---------------------------------------------------


def test_hours_and_texts_are_parsed_and_refused_with_the_line():
    assert fleet.parse_hours("1-5 08:30-12:00\n\n6 09:00-12:00") == [
        [1, 5, "08:30", "12:00"],
        [6, 6, "09:00", "12:00"],
    ]
    assert fleet.hours_text([[1, 5, "08:30", "12:00"], [6, 6, "09:00", "12:00"]]) == (
        "1-5 08:30-12:00\n6 09:00-12:00"
    )
    for text, message in [
        ("mon 08:30-12:00", "hours: line 1: must look like 1-5 08:30-12:00"),
        ("1-5 08:30-12:00\n5-1 08:30-12:00", "hours: line 2: days or times out of order"),
        ("1 12:00-08:30", "hours: line 1: days or times out of order"),
        ("\n".join(["1 08:00-09:00"] * 29), "hours: at most 28 lines"),
    ]:
        with pytest.raises(fleet.FleetError) as caught:
            fleet.parse_hours(text)
        assert str(caught.value) == message
    assert fleet.parse_texts("welcome=欢迎\nthanks = 谢谢") == {"welcome": "欢迎", "thanks": "谢谢"}
    with pytest.raises(fleet.FleetError, match="^texts: line 1: must be key=text$"):
        fleet.parse_texts("welcome")


def test_desired_versions_grow_by_one_and_drift_says_since_when(engine):
    world(engine)
    with engine.begin() as conn:
        body = fleet.build_body(conn, window_id="A01", staff_id="1001",
                                hours=[[1, 5, "08:30", "12:00"]])  # fmt: skip
        assert body == {"window_id": "A01", "org_id": "hall-ws", "staff_id": "1001",
                        "staff_name": "张敏", "staff_no": "1001",
                        "hours": [[1, 5, "08:30", "12:00"]]}  # fmt: skip
        assert fleet.set_config(conn, "kp-01", body, "admin") == 1
        assert fleet.set_config(conn, "kp-01", body, "admin") == 1  # the same: no new version
        assert fleet.set_config(conn, "kp-01", {**body, "texts": {"welcome": "您好"}}, "admin") == 2
        row = fleet.desired(conn, "kp-01")
        assert row["version"] == 2 and row["body"]["texts"] == {"welcome": "您好"}
        # a config message of the contract, signed by the agent when it goes out
        msg = fleet.config_message(row)
        assert messages.decode(messages.encode(msg), messages.CONFIG)["version"] == 2
        assert fleet.drift(row, None) == {
            "desired": 2, "applied": None, "drift": True, "since": row["updated_at"]
        }  # fmt: skip
        fleet.observe_status(conn, "kp-01", {"online": True, "config_version": 2}, live=True)
        row = fleet.desired(conn, "kp-01")
        assert fleet.drift(row, None)["drift"] is False and row["applied_version"] == 2
        # the device drops back (a factory reset erased its copy): drift from then
        fleet.observe_status(conn, "kp-01", {"online": True}, live=True)
        row = fleet.desired(conn, "kp-01")
        assert fleet.drift(row, None) == {
            "desired": 2, "applied": None, "drift": True, "since": row["applied_since"]
        }  # fmt: skip
        for kwargs, message in [
            ({"window_id": "Z9"}, "window_id: no window 'Z9'"),
            ({"staff_id": "9999"}, "staff_id: no staff member '9999'"),
            ({"tag_version": "nope"}, "tag_version: no tag set 'nope'"),
            ({"texts": {"Bad Key": "x"}}, "config.texts: key 'Bad Key' is not a-z 0-9 _"),
        ]:
            with pytest.raises(fleet.FleetError) as caught:
                fleet.build_body(conn, **kwargs)
            assert str(caught.value) == message


def test_a_window_in_a_unit_gives_the_keypad_the_units_roster(engine):
    world(engine)
    with engine.begin() as conn:
        org.add(conn, "staff", "2001", "李强", "hall-ws")
        org.add(conn, "staff", "2002", "王芳", "hall-ws")
        org.add(conn, "units", "hall-x", "别处", "370305002", kind="hall")
        org.add(conn, "staff", "3001", "赵六", "hall-x")  # another unit: not on the roster
        body = fleet.build_body(conn, window_id="A01", hours=[[1, 5, "08:30", "12:00"]])
        assert body["roster"] == [["2001", "李强"], ["2002", "王芳"]]
        # the config as it goes out carries it; the keypad checks sign-ins against it
        fleet.set_config(conn, "kp-01", body, "admin")
        msg = fleet.config_message(fleet.desired(conn, "kp-01"))
        assert messages.decode(messages.encode(msg), messages.CONFIG)["roster"] == body["roster"]
        for n in range(fleet.MAX_ROSTER - 1):
            org.add(conn, "staff", f"9{n:03d}", "员工", "hall-ws")
        with pytest.raises(fleet.FleetError) as caught:
            fleet.build_body(conn, window_id="A01")
        assert str(caught.value) == (
            "roster: unit 'hall-ws' has 65 staff members; a keypad holds at most 64"
        )


def test_a_config_too_large_for_a_keypad_is_refused_with_its_size(engine):
    world(engine)
    texts = {f"t{n}": "长" * 200 for n in range(fleet.MAX_TEXTS)}
    with engine.begin() as conn:
        with pytest.raises(fleet.FleetError) as caught:
            fleet.build_body(conn, window_id="A01", texts=texts)
    size = len(messages.encode(messages.config(2**31 - 1, window_id="A01", org_id="hall-ws",
                                               texts=texts)))  # fmt: skip
    assert size > fleet.MAX_CONFIG_BYTES
    assert str(caught.value) == (
        f"config: {size} bytes; a keypad takes at most 3800 "
        "(fewer tags, texts or staff in the window's unit)"
    )


def test_a_command_waits_is_sent_answered_and_expires(engine):
    world(engine)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        ident = fleet.queue_command(conn, "kp-01", "identify", {"seconds": 5}, 3600, "admin")
        boot = fleet.queue_command(conn, "kp-01", "reboot", {}, 3600, "admin")
        short = fleet.queue_command(conn, "kp-01", "sync_now", {}, 60, "admin")
        reset = fleet.queue_command(conn, "kp-01", "factory_reset", {}, 3600, "admin")
        due = fleet.due_commands(conn, "kp-01", now)
        assert [c["id"] for c in due] == [ident, boot, short, reset]
        assert due[3]["args"] == {"device_id": "kp-01"}  # the device's own confirmation
        for c in due:
            fleet.mark_sent(conn, c["id"])
        # sent and unanswered: not again until RESEND_AFTER_S has passed
        assert fleet.due_commands(conn, "kp-01", now) == []
        later = now + dt.timedelta(seconds=fleet.RESEND_AFTER_S + 1)
        assert [c["id"] for c in fleet.due_commands(conn, "kp-01", later)] == [ident, boot, reset]
        status = {"online": True, "boot_id": "b1"}
        assert fleet.record_result(conn, "kp-01", {"id": ident, "ok": True, "result": {"seconds": 5}},
                                   status) == "done"  # fmt: skip
        assert fleet.record_result(conn, "kp-01", {"id": boot, "ok": True, "result": {}},
                                   status) == "accepted"  # fmt: skip
        reason = "3 ratings not yet acknowledged by the collector: not erased"
        assert fleet.record_result(conn, "kp-01", {"id": reset, "ok": False, "result": reason},
                                   status) == "failed"  # fmt: skip
        # an answer again, or one for another device's command, changes nothing
        assert fleet.record_result(conn, "kp-01", {"id": ident, "ok": False}, status) is None
        assert fleet.record_result(conn, "kp-02", {"id": short, "ok": True}, status) is None
        # the same boot reporting again does not complete the reboot; a new boot does
        assert fleet.observe_status(conn, "kp-01", status, live=True) == []
        assert fleet.observe_status(conn, "kp-01", {"online": True, "boot_id": "b2"},
                                    live=True) == [boot]  # fmt: skip
        assert fleet.expire(conn, now + dt.timedelta(seconds=61)) == 1
        states = {
            c["id"]: (c["state"], c["result"], c["sends"]) for c in fleet.commands_of(conn, "kp-01")
        }
    assert states == {
        ident: ("done", {"seconds": 5}, 1),
        boot: ("done", {}, 1),
        short: ("expired", None, 1),
        reset: ("failed", reason, 1),
    }


@pytest.mark.parametrize(
    ("cmd", "args", "ttl", "message"),
    [
        ("status", {}, 3600, "cmd: not a command for the fleet: 'status'"),
        ("launch", {}, 3600, "cmd: not a command for the fleet: 'launch'"),
        ("reboot", {}, 10, "expires: must be 60..2592000 seconds"),
        ("reboot", {}, 10**8, "expires: must be 60..2592000 seconds"),
    ],
)
def test_a_bad_command_is_refused_naming_the_field(engine, cmd, args, ttl, message):
    world(engine)
    with engine.begin() as conn, pytest.raises(fleet.FleetError) as caught:
        fleet.queue_command(conn, "kp-01", cmd, args, ttl, "admin")
    assert str(caught.value) == message


def test_removal_cancels_open_commands_and_keeps_the_ratings(engine):
    from tests.harness.records import add_evaluation

    world(engine)
    add_evaluation(engine, "kp-01:1", 5)
    with engine.begin() as conn:
        cid = fleet.queue_command(conn, "kp-01", "reboot", {}, 3600, "admin")
        fleet.set_config(conn, "kp-01", {"window_id": "A01"}, "admin")
        assert fleet.remove_device(conn, "kp-01")["device_id"] == "kp-01"
        assert fleet.remove_device(conn, "kp-01") is None
        row = conn.execute(select(fleet_commands).where(fleet_commands.c.id == cid)).one()
        assert (row.state, json.loads(row.result)) == ("cancelled", "device removed")
        assert conn.execute(select(fleet_configs)).all() == []
        assert conn.execute(select(db.evaluations.c.id)).scalars().all() == ["kp-01:1"]


# --- end to end ------------------------------------------------------------------------


def keypad(fb, device_id="kp-01", **settings):
    return SimKeypad(device_id, fb.keys[device_id], fb.broker.host, fb.broker.port,
                     str(fb.tmp / device_id), status_every_ms=500, **settings)  # fmt: skip


def command_state(engine, command_id):
    with engine.connect() as conn:
        row = conn.execute(select(fleet_commands).where(fleet_commands.c.id == command_id)).one()
    return row.state, json.loads(row.result) if row.result else None


def test_a_config_is_pushed_applied_and_the_drift_clears(fleet_broker):
    fb = fleet_broker
    org.seed(fb.engine)
    with fb.engine.begin() as conn:
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        conn.execute(db.staff.insert().values(id="1001", name="张敏", created_at=db.utc_now()))
        body = fleet.build_body(conn, window_id="A01", staff_id="1001")
        assert fleet.set_config(conn, "kp-01", body, "admin") == 1
    kp = keypad(fb).start()
    try:
        assert wait_for(lambda: kp.call(lambda d: d.config_version) == 1, 15)
        assert kp.call(lambda d: d.app.assignment["staff_name"]) == "张敏"

        def overview():
            with fb.engine.connect() as conn:
                return {i["device_id"]: i for i in fleet.overview(conn)}["kp-01"]

        assert wait_for(lambda: overview()["applied"] == 1, 10)
        assert overview()["drift"] is False and overview()["online"] is True
        # a change: version 2 goes out, the running keypad takes it
        with fb.engine.begin() as conn:
            assert fleet.set_config(conn, "kp-01", {**body, "staff_name": "李华"}, "admin") == 2
        assert wait_for(lambda: overview()["applied"] == 2, 15)
        assert kp.call(lambda d: d.app.assignment["staff_name"]) == "李华"
        assert kp.call(lambda d: d.sync.bad_messages) == 0  # every config verified
        # a factory reset erases the keypad's copy; its persistent session does
        # not bring the retained config back: the agent sends it again
        fb.agent.republish_s = 0.5
        with fb.engine.begin() as conn:
            reset = fleet.queue_command(conn, "kp-01", "factory_reset", {}, 3600, "admin")
        assert wait_for(lambda: command_state(fb.engine, reset)[0] == "done", 20)
        assert kp.boots == 2
        assert wait_for(lambda: overview()["applied"] == 2 and not overview()["drift"], 20)
        assert kp.call(lambda d: d.app.assignment["staff_name"]) == "李华"
    finally:
        kp.stop()


def test_commands_wait_for_the_keypad_and_results_are_kept(fleet_broker):
    fb = fleet_broker
    with fb.engine.begin() as conn:
        ident = fleet.queue_command(conn, "kp-01", "identify", {"seconds": 3}, 3600, "admin")
        boot = fleet.queue_command(conn, "kp-01", "reboot", {}, 3600, "admin")
        reset = fleet.queue_command(conn, "kp-01", "factory_reset", {}, 3600, "admin")
        stale = fleet.queue_command(conn, "kp-01", "sync_now", {}, 60, "admin")
        conn.execute(  # this one ran out while the keypad was away
            fleet_commands.update()
            .where(fleet_commands.c.id == stale)
            .values(expires_at="2000-01-01T00:00:00.000000Z")
        )
    time.sleep(1.5)  # the agent's passes find the keypad offline: nothing is sent
    assert command_state(fb.engine, ident) == ("pending", None)
    assert command_state(fb.engine, stale) == ("expired", None)
    kp = keypad(fb).start()
    try:
        assert wait_for(lambda: command_state(fb.engine, ident)[0] == "done", 15)
        assert command_state(fb.engine, ident) == ("done", {"seconds": 3})
        assert wait_for(lambda: command_state(fb.engine, boot)[0] == "done", 20), command_state(
            fb.engine, boot
        )
        assert kp.machine.resets == 1 and kp.boots == 2
        assert command_state(fb.engine, reset) == ("done", {"erased": ["journal", "desired.json",
                                                   "crashes.json"], "reboot_in_ms": 1000})  # fmt: skip
        assert command_state(fb.engine, stale) == ("expired", None)
    finally:
        kp.stop()


def test_the_fleet_pages_show_drift_and_queue_commands(engine_app):
    from tests.harness.collector import AuthActions

    engine = engine_app.extensions["hcp_engine"]
    world(engine)
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    page = client.get("/fleet/kp-01").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    saved = client.post("/fleet/kp-01/config", data={"csrf_token": token, "window_id": "A01",
                        "staff_id": "1001", "hours": "1-5 08:30-12:00", "texts": ""})  # fmt: skip
    assert saved.status_code == 302
    bad = client.post("/fleet/kp-01/config", data={"csrf_token": token, "hours": "always"})
    assert bad.status_code == 400
    assert "hours: line 1: must look like 1-5 08:30-12:00" in bad.get_data(as_text=True)
    sent = client.post("/fleet/kp-01/command", data={"csrf_token": token, "cmd": "reboot",
                                                     "expires_h": "2"})  # fmt: skip
    assert sent.status_code == 302
    refused = client.post("/fleet/kp-01/command", data={"csrf_token": token, "cmd": "update"})
    assert refused.status_code == 400
    assert "cmd: must be one of reboot, identify, sync_now, factory_reset" in refused.get_data(
        as_text=True
    )
    listing = client.get("/fleet").get_data(as_text=True)
    assert "偏差始于" in listing  # desired 1, nothing applied yet
    detail = client.get("/fleet/kp-01").get_data(as_text=True)
    assert "等待设备上线" in detail and "重启" in detail
    with engine.connect() as conn:
        actions = conn.execute(select(db.audit_log.c.action).order_by(db.audit_log.c.id)).all()
    assert [a for (a,) in actions][-2:] == ["fleet.config", "fleet.command"]


def test_the_agent_signs_what_it_sends_with_the_devices_key(fleet_broker):
    """A keypad with another key ignores (counts) what the agent sends kp-01."""
    fb = fleet_broker
    wrong = dict(fb.keys)
    fb.keys = {**fb.keys, "kp-01": secrets.token_hex(32)}
    # the broker still lets kp-01 in with its real password; the firmware holds another key
    kp = keypad(fb, broker_user="kp-01", broker_password=_password(wrong["kp-01"]))
    with fb.engine.begin() as conn:
        fleet.set_config(conn, "kp-01", {"window_id": "A01"}, "admin")
    kp.start()
    try:
        assert wait_for(lambda: kp.call(lambda d: d.sync.bad_messages) >= 1, 15)
        assert kp.call(lambda d: d.config_version) is None
    finally:
        kp.stop()


def _password(key_hex):
    from protocols import sign

    return sign.mqtt_password(bytes.fromhex(key_hex))


def test_the_agent_survives_bad_messages(fleet_broker):
    fb = fleet_broker
    agent: FleetAgent = fb.agent
    agent.on_status("kp-01", b"{not json", live=True)
    agent.on_status("kp-01", b"", live=True)
    agent.on_result("kp-01", b'{"v":1,"t":"cmdres","id":"c-nope","ok":true}')
    agent.on_status("kp-99", b'{"v":1,"t":"status","online":true}', live=True)
    assert agent.results == 0 and agent.connected.is_set()


def test_an_oversized_answer_is_cut_and_still_readable(engine):
    world(engine)
    with engine.begin() as conn:
        cid = fleet.queue_command(conn, "kp-01", "identify", {}, 3600, "admin")
        huge = {"junk": "x" * 100_000}
        assert fleet.record_result(conn, "kp-01", {"id": cid, "ok": True, "result": huge},
                                   None) == "done"  # fmt: skip
        (item,) = fleet.commands_of(conn, "kp-01")
    assert isinstance(item["result"], str) and len(item["result"]) < fleet.MAX_RESULT
    assert item["result"].endswith("… (100012 characters)")


def test_the_device_page_says_why_a_keypad_runs_older_firmware(engine_app):
    """A keypad back on 0.1.0 after a failed update notes why in its status
    (device/startup.py banner); the device's fleet page shows it."""
    from tests.harness.collector import AuthActions
    from tests.harness.records import set_status

    engine = engine_app.extensions["hcp_engine"]
    world(engine)
    client = engine_app.test_client()
    AuthActions(client).login("admin")
    assert 'id="last-error"' not in client.get("/fleet/kp-01").get_data(as_text=True)
    reason = "update: 0.2.0 rolled back: did not come up in 3 boots"
    set_status(engine, "kp-01", messages.status(True, fw="0.1.0", crashes=1, last_error=reason))
    page = client.get("/fleet/kp-01").get_data(as_text=True)
    assert f"设备上最近的错误： <code>{reason}</code> (部署以来出错 1 次)" in page
