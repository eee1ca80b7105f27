"""Revocation on a running Mosquitto, without a restart (issue 11).

`hcp collector remove-device` (hcp/fleet.py) and the admins' page action
delete the device's key, write the broker's password file anew from what the
database holds (the collectors' and the fleet agent's lines kept as they
were) and send Mosquitto SIGHUP. Measured here on Mosquitto 2.0.11: the
reload refuses the removed login from then on AND closes its open
connection; a re-keyed device's old password is refused and its open
connection closed too; nobody else is disconnected. All with access control
on: the files are the ones broker_auth writes.
"""

import json
import secrets
import time

import pytest
from sqlalchemy import select

from hcp import fleet as fleet_cli
from hcp.broker import MosquittoBroker, free_port
from protocols import topics
from sync_server import broker_auth, db
from sync_server.fleet_agent import FleetAgent
from sync_server.ingest import IngestService
from tests.harness.broker import require_kind
from tests.harness.collector import AuthActions, app_with_users
from tests.test_broker_auth import (
    COLLECTOR_PASSWORD,
    NOT_AUTHORIZED,
    Watched,
    device_password,
    locked_down_broker,
    refused_with,
    signed_batch,
    wait_stored,
)


@pytest.fixture
def fleet_broker(tmp_path):
    """Mosquitto locked down by broker_auth's files (fleet login included), a
    collector and the fleet agent logged in, kp-01 and kp-02 provisioned."""
    world = locked_down_broker(tmp_path, fleet=True)
    engine, broker = world.engine, world.broker
    collector = IngestService(engine, broker.host, broker.port, client_id=broker_auth.COLLECTOR_USER,
                              username=broker_auth.COLLECTOR_USER, password=COLLECTOR_PASSWORD)  # fmt: skip
    collector_drops = []
    collector.client.on_disconnect = lambda *a: collector_drops.append(a[3])
    collector.start()
    agent = FleetAgent(engine, broker.host, broker.port, password=COLLECTOR_PASSWORD).start()
    agent_drops = []
    agent.client.on_disconnect = lambda *a: agent_drops.append(a[3])
    world.collector, world.agent = collector, agent
    world.collector_drops, world.agent_drops = collector_drops, agent_drops
    yield world
    agent.stop()
    collector.stop()
    broker.stop()
    engine.dispose()


def broker_pid(broker):
    return broker._proc.pid


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def users_in(auth_dir):
    return [line.split(":")[0] for line in (auth_dir / "passwd").read_text().split()]


def test_remove_device_cuts_the_connection_and_refuses_the_login(fleet_broker, capsys):
    fb = fleet_broker
    revoked = Watched(fb.broker, "kp-01", device_password(fb.keys["kp-01"]), "kp-01",
                      clean_session=False)  # fmt: skip
    other = Watched(fb.broker, "kp-02", device_password(fb.keys["kp-02"]), "kp-02",
                    clean_session=False)  # fmt: skip
    try:
        # kp-01 rated before it was removed: its rating stays
        revoked.client.publish(topics.topic("kp-01", topics.UP_EV),
                               signed_batch("kp-01", fb.keys["kp-01"], 1), qos=1)  # fmt: skip
        assert wait_stored(fb.engine, ["kp-01:1"]) == ["kp-01:1"]
        code = fleet_cli.main(["fleet", "remove-device", "kp-01", "--db", fb.db_url,
                               "--broker-auth-dir", str(fb.auth_dir),
                               "--broker-pid", str(broker_pid(fb.broker))])  # fmt: skip
        out = capsys.readouterr().out
        assert code == 0
        assert out.splitlines() == [
            "removed kp-01: its key is gone, its ratings stay",
            f"{fb.auth_dir}/passwd rewritten (1 devices); Mosquitto {broker_pid(fb.broker)} "
            "reloaded",
        ]
        assert users_in(fb.auth_dir) == ["hcp-collector", "hcp-fleet", "kp-02"]
        assert wait_for(lambda: revoked.disconnects), "the open connection was closed"
        assert len(revoked.disconnects) == 1
        assert refused_with(fb.broker, "kp-01", device_password(fb.keys["kp-01"]), "kp-01") == (
            NOT_AUTHORIZED
        )
        # nobody else lost a connection; the other device still delivers
        assert fb.collector_drops == [] and fb.agent_drops == [] and other.disconnects == []
        other.client.publish(topics.topic("kp-02", topics.UP_EV),
                             signed_batch("kp-02", fb.keys["kp-02"], 1), qos=1)  # fmt: skip
        assert wait_stored(fb.engine, ["kp-01:1", "kp-02:1"]) == ["kp-01:1", "kp-02:1"]
        with fb.engine.connect() as conn:
            assert conn.execute(select(db.devices.c.device_id)).scalars().all() == ["kp-02"]
            entry = conn.execute(
                select(db.audit_log).where(db.audit_log.c.action == "fleet.remove")
            ).one()
        assert entry.target == "device:kp-01" and "key_hex" not in entry.before
        assert json.loads(entry.before)["device_id"] == "kp-01"
    finally:
        revoked.client.loop_stop()
        other.close()


def test_a_rekeyed_device_loses_its_old_password_on_reload(fleet_broker):
    """Re-provisioning gives a new key: the old password stops working, and the
    connection made with it is closed by the reload."""
    fb = fleet_broker
    old = Watched(fb.broker, "kp-01", device_password(fb.keys["kp-01"]), "kp-01",
                  clean_session=False)  # fmt: skip
    try:
        new_key = secrets.token_hex(32)
        with fb.engine.begin() as conn:
            conn.execute(
                db.devices.update().where(db.devices.c.device_id == "kp-01").values(key_hex=new_key)
            )
        from sync_server import fleet

        line = fleet.revoke_on_broker(fb.engine, fb.auth_dir, pid=broker_pid(fb.broker))
        assert line.endswith(f"(2 devices); Mosquitto {broker_pid(fb.broker)} reloaded")
        assert wait_for(lambda: old.disconnects), "the connection with the old key was closed"
        assert refused_with(fb.broker, "kp-01", device_password(fb.keys["kp-01"]), "kp-01") == (
            NOT_AUTHORIZED
        )
        fresh = Watched(fb.broker, "kp-01", device_password(new_key), "kp-01")
        assert not fresh.rc.is_failure
        fresh.close()
        assert fb.collector_drops == [] and fb.agent_drops == []
    finally:
        old.client.loop_stop()


def test_a_removed_device_cannot_publish_even_on_a_live_connection(fleet_broker):
    """Between removal and reload nothing is promised; after the reload the
    device has no connection left to publish on, and cannot get one."""
    fb = fleet_broker
    revoked = Watched(fb.broker, "kp-01", device_password(fb.keys["kp-01"]), "kp-01")
    try:
        with fb.engine.begin() as conn:
            from sync_server import fleet

            assert fleet.remove_device(conn, "kp-01")["device_id"] == "kp-01"
        fleet.revoke_on_broker(fb.engine, fb.auth_dir, pid=broker_pid(fb.broker))
        assert wait_for(lambda: revoked.disconnects)
        info = revoked.client.publish(topics.topic("kp-01", topics.UP_EV),
                                      signed_batch("kp-01", fb.keys["kp-01"], 2), qos=1)  # fmt: skip
        assert info.rc != 0 or not revoked.client.is_connected()
        time.sleep(0.5)
        assert wait_stored(fb.engine, [], timeout=0.5) == []
    finally:
        revoked.client.loop_stop()


def test_revocation_returns_once_mosquitto_has_read_the_files_again(fleet_broker):
    """revoke_on_broker (and hcp provision --broker-pid, through the same
    hcp.broker.reload_mosquitto) wakes Mosquitto after the SIGHUP and waits
    for its answer: the reload is done when it returns, not up to a loop
    timeout later."""
    fb = fleet_broker
    reloads = fb.broker.log_path.read_text().count("Reloading config.")
    with fb.engine.begin() as conn:
        from sync_server import fleet

        fleet.remove_device(conn, "kp-02")
    fleet.revoke_on_broker(fb.engine, fb.auth_dir, pid=broker_pid(fb.broker))
    log = fb.broker.log_path.read_text()  # read at once: no waiting here
    assert log.count("Reloading config.") == reloads + 1
    assert fb.collector_drops == [] and fb.agent_drops == []


def test_remove_device_refuses_what_it_cannot_do(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.make_engine(db_url)
    db.init(engine)
    db.add_device(engine, "kp-01", "ab" * 32)
    assert fleet_cli.main(["fleet", "remove-device", "kp-77", "--db", db_url]) == 1
    assert capsys.readouterr().err.strip() == "error: device_id: no device 'kp-77'"
    # no passwd where the folder should be: the device is removed, the broker step says why
    code = fleet_cli.main(["fleet", "remove-device", "kp-01", "--db", db_url,
                           "--broker-auth-dir", str(tmp_path / "nowhere")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == (
        f"error: --broker-auth-dir: {tmp_path / 'nowhere'}/passwd: no password file; "
        "write it first with hcp collector broker-auth --out"
    )
    # a passwd without a collector login is not ours to rewrite
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "passwd").write_text("kp-01:$7$x\n")
    with pytest.raises(ValueError, match="holds no collector login"):
        broker_auth.rewrite_device_logins(tmp_path / "bare", [])
    with pytest.raises(ValueError, match="is a service login's name"):
        broker_auth.rewrite_device_logins(tmp_path / "bare", [("hcp-fleet", "00" * 32)])
    with pytest.raises(ValueError, match="not a broker's process id"):
        broker_auth.reload(1)
    engine.dispose()


def test_the_admin_removes_a_device_from_its_page(fleet_broker, tmp_path):
    fb = fleet_broker
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{broker_pid(fb.broker)}\n")
    revoked = Watched(fb.broker, "kp-01", device_password(fb.keys["kp-01"]), "kp-01")
    try:
        with app_with_users(tmp_path / "web", fb.db_url, HCP_BROKER_AUTH_DIR=str(fb.auth_dir),
                            HCP_BROKER_PID_FILE=str(pid_file)) as app:  # fmt: skip
            client = app.test_client()
            AuthActions(client).login("admin")
            page = client.get("/fleet/kp-01").get_data(as_text=True)
            assert 'id="remove-form"' in page
            token = page.split('name="csrf_token" value="')[1].split('"')[0]
            wrong = client.post("/fleet/kp-01/remove", data={"csrf_token": token, "confirm": "kp"})
            assert wrong.status_code == 400 and "请输入设备编号以确认。" in wrong.get_data(
                as_text=True
            )
            done = client.post("/fleet/kp-01/remove",
                               data={"csrf_token": token, "confirm": "kp-01"})  # fmt: skip
            assert done.status_code == 302 and done.location.endswith("/fleet?done=revoked")
            assert "已移除；消息服务器自此拒绝该设备。" in client.get(done.location).get_data(
                as_text=True
            )
        assert wait_for(lambda: revoked.disconnects)
        assert refused_with(fb.broker, "kp-01", device_password(fb.keys["kp-01"]), "kp-01") == (
            NOT_AUTHORIZED
        )
        assert users_in(fb.auth_dir) == ["hcp-collector", "hcp-fleet", "kp-02"]
    finally:
        revoked.client.loop_stop()


def test_broker_login_lets_the_fleet_agent_in_without_a_restart(tmp_path, capsys):
    """Files broker-auth wrote without the agent's login: `hcp fleet
    broker-login` adds it (passwd line, acl block) and reloads Mosquitto."""
    require_kind("mosquitto")
    engine = db.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    db.init(engine)
    auth_dir = tmp_path / "auth"
    broker_auth.write_files(auth_dir, [], COLLECTOR_PASSWORD, port=free_port(),
                            bind_address="127.0.0.1")  # fmt: skip
    broker = MosquittoBroker(workdir=tmp_path / "broker", auth_dir=auth_dir).start()
    try:
        assert refused_with(broker, "hcp-fleet", "fleet-secret-12", "hcp-fleet") == NOT_AUTHORIZED
        code = fleet_cli.main(["fleet", "broker-login", "--broker-auth-dir", str(auth_dir),
                               "--password", "fleet-secret-12",
                               "--broker-pid", str(broker_pid(broker))])  # fmt: skip
        assert code == 0
        assert capsys.readouterr().out == (
            f"hcp-fleet may now log in; Mosquitto {broker_pid(broker)} reloaded\n"
        )
        assert users_in(auth_dir) == ["hcp-collector", "hcp-fleet"]
        acl = (auth_dir / "acl").read_text()
        assert acl.index("user hcp-fleet") < acl.index("pattern write")
        # broker-login returned once Mosquitto had read the files: no wait here
        agent = FleetAgent(engine, broker.host, broker.port, password="fleet-secret-12").start()
        agent.stop()
        # again: the line is replaced, not doubled; a short password is refused
        assert fleet_cli.main(["fleet", "broker-login", "--broker-auth-dir", str(auth_dir),
                               "--password", "fleet-secret-34"]) == 0  # fmt: skip
        assert users_in(auth_dir) == ["hcp-collector", "hcp-fleet"]
        assert (auth_dir / "acl").read_text().count("user hcp-fleet") == 1
        capsys.readouterr()
        assert fleet_cli.main(["fleet", "broker-login", "--broker-auth-dir", str(auth_dir),
                               "--password", "short"]) == 1  # fmt: skip
        assert capsys.readouterr().err == (
            "error: --broker-auth-dir: password: must be at least 12 characters\n"
        )
    finally:
        broker.stop()
        engine.dispose()
