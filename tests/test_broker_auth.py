"""The production broker: per-device passwords and ACLs, on a real Mosquitto.

Each keypad logs in as its device id with a password derived from its key;
it may publish only under its own up/ topics and read only its own down/
topics; only the collector reads up/ and writes down/."""

import secrets
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select

from hcp import mosquitto_auth
from hcp.broker import MosquittoBroker
from protocols import messages, sign, topics
from simulators.keypad import SimKeypad
from sync_server import db
from sync_server.ingest import IngestService
from tests.harness.broker import require_kind

COLLECTOR_PASSWORD = "collector-secret-1"


def test_the_password_hash_is_mosquittos_own(tmp_path):
    """The same salt gives what mosquitto_passwd writes (where it is installed)."""
    hashed = mosquitto_auth.password_hash("secret123", salt=b"\x01" * 12)
    assert hashed.startswith("$7$101$AQEBAQEBAQEBAQEB$")
    tool = subprocess.run(["which", "mosquitto_passwd"], capture_output=True, text=True)
    if tool.returncode != 0:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "p"), "u", "secret123"],
                   check=True)  # fmt: skip
    line = (tmp_path / "p").read_text().strip()
    salt_b64 = line.split("$")[3]
    import base64

    assert line == "u:" + mosquitto_auth.password_hash("secret123", base64.b64decode(salt_b64))


@pytest.fixture
def secured(tmp_path):
    require_kind("mosquitto")
    engine = db.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    db.init(engine)
    keys = {name: secrets.token_hex(32) for name in ("kp-01", "kp-02")}
    for name, key_hex in keys.items():
        db.add_device(engine, name, key_hex)
    mosquitto_auth.write_files(tmp_path / "auth", db.device_keys(engine), COLLECTOR_PASSWORD)
    broker = MosquittoBroker(workdir=tmp_path / "broker", auth_dir=tmp_path / "auth").start()
    collector = IngestService(engine, broker.host, broker.port,
                              username=mosquitto_auth.COLLECTOR_USER,
                              password=COLLECTOR_PASSWORD)  # fmt: skip
    collector.start()
    yield engine, broker, keys, tmp_path
    collector.stop()
    broker.stop()
    engine.dispose()


def connect(broker, username, password):
    """A paho client; returns (client, reason code of the CONNACK)."""
    result = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{secrets.token_hex(3)}")
    if username:
        client.username_pw_set(username, password)

    def on_connect(_c, _u, _f, reason_code, _p):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port)
    client.loop_start()
    done.wait(5)
    return client, result.get("rc")


def stored_ids(engine):
    with engine.connect() as conn:
        return sorted(conn.execute(select(db.evaluations.c.id)).scalars())


def test_a_keypad_logs_in_with_its_derived_password_and_delivers(secured):
    engine, broker, keys, tmp_path = secured
    keypad = SimKeypad("kp-01", keys["kp-01"], broker.host, broker.port, str(tmp_path / "kp-01"))
    keypad.start()
    try:
        keypad.rate(5)
        deadline = time.monotonic() + 20
        while stored_ids(engine) != ["kp-01:1"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_ids(engine) == ["kp-01:1"]
        assert keypad.wait_drained(10), "the signed ack reached the keypad through the ACL"
    finally:
        keypad.stop()


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), ("kp-01", "wrong"), ("kp-99", "anything")],
    ids=["anonymous", "wrong-password", "unknown-device"],
)
def test_others_are_refused(secured, username, password):
    _engine, broker, _keys, _ = secured
    client, rc = connect(broker, username, password)
    client.loop_stop()
    assert rc is not None and rc.is_failure and rc.value in (4, 5, 134, 135)


def test_a_device_can_neither_pose_as_another_nor_read_its_acks(secured):
    engine, broker, keys, _ = secured
    key_01 = bytes.fromhex(keys["kp-01"])
    intruder, rc = connect(broker, "kp-02", sign.mqtt_password(bytes.fromhex(keys["kp-02"])))
    assert not rc.is_failure
    seen = []
    intruder.on_message = lambda _c, _u, m: seen.append(m.topic)
    intruder.subscribe(topics.topic("kp-01", topics.DOWN_ACK), 1)
    rec = {"id": "kp-01:1", "device_id": "kp-01", "seq": 1, "stars": 1, "channel": "keypad",
           "rated_at": "2026-11-26T08:30:00Z", "clock": "ntp", "origin": "citizen", "attempt": 1}  # fmt: skip
    rec["sig"] = sign.sign(rec, key_01)  # even a correctly signed record (a replay, say)
    payload = messages.encode(messages.batch("kp-01", 1, [rec]))
    intruder.publish(topics.topic("kp-01", topics.UP_EV), payload, qos=1).wait_for_publish(5)
    time.sleep(1)
    assert stored_ids(engine) == [], "the broker dropped kp-02's publish on kp-01's topic"
    # the same record from the rightful owner arrives, and its ack is not seen by the intruder
    owner, rc = connect(broker, "kp-01", sign.mqtt_password(key_01))
    assert not rc.is_failure
    owner.publish(topics.topic("kp-01", topics.UP_EV), payload, qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 10
    while stored_ids(engine) != ["kp-01:1"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # time for the ack to reach any subscriber
    assert stored_ids(engine) == ["kp-01:1"]
    assert seen == [], "kp-02 may not read kp-01's acks"
    for client in (intruder, owner):
        client.disconnect()
        client.loop_stop()


def test_the_command_writes_the_files(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.make_engine(db_url)
    db.init(engine)
    db.add_device(engine, "kp-01", "ab" * 32)
    engine.dispose()
    result = subprocess.run(
        [".venv/bin/hcp", "collector", "broker-auth", "--db", db_url, "--out",
         str(tmp_path / "auth"), "--collector-password", COLLECTOR_PASSWORD],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    users = [line.split(":")[0] for line in (tmp_path / "auth" / "passwd").read_text().split()]
    assert users == ["hcp-collector", "kp-01"]
    assert "pattern write hcp/v1/dev/%u/up/#" in (tmp_path / "auth" / "acl").read_text()
    short = subprocess.run(
        [".venv/bin/hcp", "collector", "broker-auth", "--db", db_url, "--out",
         str(tmp_path / "a2"), "--collector-password", "short"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert short.returncode == 1
    assert short.stderr.strip() == "error: --collector-password: must be at least 12 characters"
