"""The production broker: per-device passwords, ACLs and client ids, on a real Mosquitto.

Each keypad logs in as its device id with a password derived from its key;
it may publish only under its own up/ topics and read only its own down/
topics; only the collector reads up/ and writes down/. Mosquitto replaces
every client id with the user name (`use_username_as_clientid`), so no device
can take over the collector's session, or another device's.

The broker here is started from exactly the files `hcp collector broker-auth`
writes (MosquittoBroker loads the folder with `include_dir`, listener
included)."""

import base64
import inspect
import secrets
import subprocess
import threading
import time
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select

from hcp.broker import MosquittoBroker, free_port
from protocols import sign, topics
from simulators.keypad import SimKeypad
from sync_server import broker_auth, db
from sync_server.ingest import IngestService
from tests.harness.broker import require_kind
from tests.harness.records import batch, signed

COLLECTOR_PASSWORD = "collector-secret-1"
KP_02_OWN_PASSWORD = object()  # stands for kp-02's real password in parameters
NOT_AUTHORIZED = 135  # paho's reason code for CONNACK 5 (MQTT 3.1.1 "not authorised")


def test_the_password_hash_is_mosquittos_own(tmp_path):
    """The same salt gives what mosquitto_passwd writes (where it is installed)."""
    hashed = broker_auth.password_hash("secret123", salt=b"\x01" * 12)
    assert hashed.startswith("$7$101$AQEBAQEBAQEBAQEB$")
    tool = subprocess.run(["which", "mosquitto_passwd"], capture_output=True, text=True)
    if tool.returncode != 0:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "p"), "u", "secret123"],
                   check=True)  # fmt: skip
    line = (tmp_path / "p").read_text().strip()
    salt_b64 = line.split("$")[3]
    assert line == "u:" + broker_auth.password_hash("secret123", base64.b64decode(salt_b64))


def test_the_collector_connects_with_its_user_name_as_client_id():
    # With use_username_as_clientid the broker keys the collector's persistent
    # session by its user name; the collector's own client id is the same, so
    # switching the option on does not leave its session behind.
    default = inspect.signature(IngestService).parameters["client_id"].default
    assert default == broker_auth.COLLECTOR_USER


class Watched:
    """A paho client that records its CONNACK reason code and every disconnect."""

    def __init__(self, broker, username, password, client_id, clean_session=True):
        self.rc = None
        self.disconnects = []
        self.messages = []
        self._connack = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, m: self.messages.append(m.topic)
        self.client.reconnect_delay_set(30, 30)  # no quiet reconnect during a test
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._connack.wait(5), "no CONNACK"

    def _on_connect(self, _c, _u, _f, reason_code, _p):
        self.rc = reason_code
        self._connack.set()

    def _on_disconnect(self, _c, _u, _f, reason_code, _p):
        self.disconnects.append(reason_code)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def refused_with(broker, username, password, client_id="t-refused"):
    """Connect and return the CONNACK's reason code value (the client is closed again)."""
    attempt = Watched(broker, username, password, client_id)
    attempt.close()
    return attempt.rc.value


def device_password(key_hex):
    return sign.mqtt_password(bytes.fromhex(key_hex))


def locked_down_broker(tmp_path, fleet=False):
    """Mosquitto on broker_auth's files for kp-01 and kp-02 (new keys, stored
    in a fresh SQLite collector database); the fleet agent's login too with
    `fleet`. Returns a namespace the fixtures extend."""
    require_kind("mosquitto")
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.make_engine(db_url)
    db.init(engine)
    keys = {name: secrets.token_hex(32) for name in ("kp-01", "kp-02")}
    for name, key_hex in keys.items():
        db.add_device(engine, name, key_hex)
    auth_dir = tmp_path / "auth"
    port = free_port()
    broker_auth.write_files(auth_dir, db.device_keys(engine), COLLECTOR_PASSWORD, port=port,
                            bind_address="127.0.0.1", fleet=fleet)  # fmt: skip
    broker = MosquittoBroker(workdir=tmp_path / "broker", auth_dir=auth_dir).start()
    return SimpleNamespace(engine=engine, db_url=db_url, broker=broker, keys=keys, tmp=tmp_path,
                           auth_dir=auth_dir, port=port)  # fmt: skip


@pytest.fixture
def secured(tmp_path):
    world = locked_down_broker(tmp_path)
    engine, broker = world.engine, world.broker
    collector = IngestService(engine, broker.host, broker.port,
                              client_id=broker_auth.COLLECTOR_USER,
                              username=broker_auth.COLLECTOR_USER,
                              password=COLLECTOR_PASSWORD)  # fmt: skip
    collector_disconnects = []
    on_disconnect = collector.client.on_disconnect

    def record_disconnect(client, userdata, flags, reason_code, props):
        collector_disconnects.append(reason_code)
        on_disconnect(client, userdata, flags, reason_code, props)

    collector.client.on_disconnect = record_disconnect
    collector.start()
    world.collector, world.collector_disconnects = collector, collector_disconnects
    yield world
    collector.stop()
    broker.stop()
    engine.dispose()


def stored_ids(engine):
    with engine.connect() as conn:
        return sorted(conn.execute(select(db.evaluations.c.id)).scalars())


def wait_stored(engine, expected, timeout=20):
    deadline = time.monotonic() + timeout
    while stored_ids(engine) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return stored_ids(engine)


def signed_batch(device_id, key_hex, seq):
    rec = signed(seq, 1, device_id=device_id, key=bytes.fromhex(key_hex))
    return batch([rec], seq, device_id)


def test_the_broker_runs_on_the_files_broker_auth_wrote(secured):
    config = secured.broker.config_path.read_text()
    assert f"include_dir {secured.auth_dir.resolve()}" in config
    assert "listener" not in config and "allow_anonymous" not in config
    listener = (secured.auth_dir / broker_auth.CONF_NAME).read_text().splitlines()
    assert f"listener {secured.port} 127.0.0.1" in listener
    assert "use_username_as_clientid true" in listener
    assert secured.broker.port == secured.port


def test_a_keypad_logs_in_with_its_derived_password_and_delivers(secured):
    keypad = SimKeypad("kp-01", secured.keys["kp-01"], secured.broker.host, secured.broker.port,
                       str(secured.tmp / "kp-01"))  # fmt: skip
    keypad.start()
    try:
        keypad.rate(5)
        assert wait_stored(secured.engine, ["kp-01:1"]) == ["kp-01:1"]
        assert keypad.wait_drained(10), "the signed ack reached the keypad through the ACL"
    finally:
        keypad.stop()


@pytest.mark.parametrize(
    ("username", "password", "client_id"),
    [
        (None, None, "t-anon"),
        (None, None, broker_auth.COLLECTOR_USER),
        ("kp-01", "wrong", "kp-01"),
        ("kp-01", KP_02_OWN_PASSWORD, "kp-01"),
        ("kp-99", "anything", "kp-99"),
        (broker_auth.COLLECTOR_USER, KP_02_OWN_PASSWORD, broker_auth.COLLECTOR_USER),
    ],
    ids=[
        "anonymous",
        "anonymous-as-collector-id",
        "wrong-password",
        "kp-02-as-kp-01-with-own-password",
        "unknown-device",
        "kp-02-as-collector-with-own-password",
    ],  # fmt: skip
)
def test_others_are_refused_and_the_collector_is_untouched(secured, username, password, client_id):
    if password is KP_02_OWN_PASSWORD:  # kp-02's valid password, on another user name
        password = device_password(secured.keys["kp-02"])
    assert refused_with(secured.broker, username, password, client_id) == NOT_AUTHORIZED
    time.sleep(0.3)
    assert secured.collector.connected.is_set() and secured.collector_disconnects == []


def test_a_device_cannot_take_over_the_collectors_session(secured):
    """kp-02, with its own valid login, connects as client id `hcp-collector`.

    Without use_username_as_clientid Mosquitto would close the collector's
    connection (and, with clean_session, throw its session away); the
    collector's reconnect would in turn kick the attacker, over and over."""
    attacker = Watched(secured.broker, "kp-02", device_password(secured.keys["kp-02"]),
                       broker_auth.COLLECTOR_USER, clean_session=True)  # fmt: skip
    try:
        assert not attacker.rc.is_failure, "the device is let in, as itself"
        attacker.client.subscribe(topics.subscription(topics.UP_EV), 1)
        time.sleep(1.0)
        assert secured.collector_disconnects == [], "the collector was never disconnected"
        assert secured.collector.connected.is_set()
        # the collector still ingests: a rating sent after the attack is stored and acked
        owner = Watched(secured.broker, "kp-01", device_password(secured.keys["kp-01"]), "kp-01")
        owner.client.subscribe(topics.topic("kp-01", topics.DOWN_ACK), 1)
        time.sleep(0.3)
        payload = signed_batch("kp-01", secured.keys["kp-01"], 1)
        owner.client.publish(topics.topic("kp-01", topics.UP_EV), payload, qos=1)
        assert wait_stored(secured.engine, ["kp-01:1"]) == ["kp-01:1"]
        deadline = time.monotonic() + 5
        while not owner.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert owner.messages == [topics.topic("kp-01", topics.DOWN_ACK)]
        assert attacker.messages == [], "the attacker reads nobody's up/ topics"
        assert attacker.disconnects == []
        assert secured.collector_disconnects == []
        owner.close()
    finally:
        attacker.close()


def test_a_device_cannot_kick_another_device(secured):
    victim = Watched(secured.broker, "kp-01", device_password(secured.keys["kp-01"]), "kp-01",
                     clean_session=False)  # fmt: skip
    attacker = Watched(secured.broker, "kp-02", device_password(secured.keys["kp-02"]), "kp-01",
                       clean_session=True)  # fmt: skip
    try:
        assert not victim.rc.is_failure and not attacker.rc.is_failure
        time.sleep(1.0)
        assert victim.disconnects == [] and victim.client.is_connected()
        # and the victim still delivers
        payload = signed_batch("kp-01", secured.keys["kp-01"], 1)
        victim.client.publish(topics.topic("kp-01", topics.UP_EV), payload, qos=1)
        assert wait_stored(secured.engine, ["kp-01:1"]) == ["kp-01:1"]
    finally:
        attacker.close()
        victim.close()


def test_a_device_can_neither_pose_as_another_nor_read_its_acks(secured):
    engine, broker, keys = secured.engine, secured.broker, secured.keys
    intruder = Watched(broker, "kp-02", device_password(keys["kp-02"]), "kp-02")
    assert not intruder.rc.is_failure
    intruder.client.subscribe(topics.topic("kp-01", topics.DOWN_ACK), 1)
    payload = signed_batch("kp-01", keys["kp-01"], 1)  # even a correctly signed record
    intruder.client.publish(topics.topic("kp-01", topics.UP_EV), payload, qos=1).wait_for_publish(5)
    time.sleep(1)
    assert stored_ids(engine) == [], "the broker dropped kp-02's publish on kp-01's topic"
    # the same record from the rightful owner arrives, and its ack is not seen by the intruder
    owner = Watched(broker, "kp-01", device_password(keys["kp-01"]), "kp-01")
    assert not owner.rc.is_failure
    owner.client.publish(topics.topic("kp-01", topics.UP_EV), payload, qos=1).wait_for_publish(5)
    assert wait_stored(engine, ["kp-01:1"], timeout=10) == ["kp-01:1"]
    time.sleep(0.5)  # time for the ack to reach any subscriber
    assert intruder.messages == [], "kp-02 may not read kp-01's acks"
    for client in (intruder, owner):
        client.close()


def run_broker_auth(db_url, out, *extra, password=COLLECTOR_PASSWORD):
    return subprocess.run(
        [".venv/bin/hcp", "collector", "broker-auth", "--db", db_url, "--out", str(out),
         "--collector-password", password, *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_removed_device_is_refused_after_a_reload_without_a_restart(secured):
    """Revocation: remove the device, run broker-auth again, SIGHUP Mosquitto.

    Measured on Mosquitto 2.0.11: the reload also closes the connection of the
    removed device if it is connected at that moment; everyone else stays."""
    revoked = Watched(secured.broker, "kp-01", device_password(secured.keys["kp-01"]), "kp-01",
                      clean_session=False)  # fmt: skip
    other = Watched(secured.broker, "kp-02", device_password(secured.keys["kp-02"]), "kp-02",
                    clean_session=False)  # fmt: skip
    try:
        assert not revoked.rc.is_failure and not other.rc.is_failure
        with secured.engine.begin() as conn:
            conn.execute(db.devices.delete().where(db.devices.c.device_id == "kp-01"))
        result = run_broker_auth(secured.db_url, secured.auth_dir,
                                 "--port", str(secured.port), "--bind-address", "127.0.0.1")  # fmt: skip
        assert result.returncode == 0, result.stderr
        secured.broker.reload()
        deadline = time.monotonic() + 5
        while not revoked.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(revoked.disconnects) == 1, "the connected, removed device was cut off"
        assert refused_with(secured.broker, "kp-01", device_password(secured.keys["kp-01"]),
                            "kp-01") == NOT_AUTHORIZED  # fmt: skip
        # no restart: the collector and the other device never lost their connections
        assert secured.broker.running
        assert secured.collector_disconnects == [] and secured.collector.connected.is_set()
        assert other.disconnects == [] and other.client.is_connected()
        payload = signed_batch("kp-02", secured.keys["kp-02"], 1)
        other.client.publish(topics.topic("kp-02", topics.UP_EV), payload, qos=1)
        assert wait_stored(secured.engine, ["kp-02:1"]) == ["kp-02:1"]
    finally:
        revoked.client.loop_stop()
        other.close()


def test_the_command_writes_the_files(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.make_engine(db_url)
    db.init(engine)
    db.add_device(engine, "kp-01", "ab" * 32)
    engine.dispose()
    result = run_broker_auth(db_url, tmp_path / "auth")
    assert result.returncode == 0, result.stderr
    auth = (tmp_path / "auth").resolve()
    users = [line.split(":")[0] for line in (auth / "passwd").read_text().split()]
    assert users == ["hcp-collector", "kp-01"]
    assert "pattern write hcp/v1/dev/%u/up/#" in (auth / "acl").read_text()
    conf = [line for line in (auth / "hcp.conf").read_text().splitlines() if line[:1] != "#"]
    assert conf == [
        "listener 1883",
        "use_username_as_clientid true",
        "allow_anonymous false",
        "max_packet_size 1048576",
        "max_inflight_messages 1000",
        "set_tcp_nodelay true",
        f"password_file {auth / 'passwd'}",
        f"acl_file {auth / 'acl'}",
    ]
    assert f"include_dir {auth}" in result.stdout
    bound = run_broker_auth(db_url, tmp_path / "a3", "--port", "8883", "--bind-address", "10.0.0.5")
    assert bound.returncode == 0, bound.stderr
    assert "listener 8883 10.0.0.5" in (tmp_path / "a3" / "hcp.conf").read_text().splitlines()
    for args, message in [
        (("--port", "0"), "error: --port: must be 1..65535"),
        (("--bind-address", "a b"), "error: --bind-address: must be one address or host name"),
        ((), "error: --collector-password: must be at least 12 characters"),
    ]:
        password = "short" if not args else COLLECTOR_PASSWORD
        bad = run_broker_auth(db_url, tmp_path / "a2", *args, password=password)
        assert bad.returncode == 1
        assert bad.stderr.strip() == message
    assert not (tmp_path / "a2").exists()


def test_an_oversized_message_is_refused_by_the_broker_and_ingest_goes_on(secured):
    """A device may send any size; the broker drops a packet over max_packet_size
    and the device's connection with it, before the collector sees a byte."""
    attacker = Watched(secured.broker, "kp-02", device_password(secured.keys["kp-02"]), "kp-02")
    try:
        huge = b"[" + b"1," * (broker_auth.MAX_PACKET // 2) + b"1]"
        attacker.client.publish(topics.topic("kp-02", topics.UP_EV), huge, qos=1)
        deadline = time.monotonic() + 5
        while not attacker.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert attacker.disconnects, "the broker closed the sender's connection"
        payload = signed_batch("kp-01", secured.keys["kp-01"], 1)
        owner = Watched(secured.broker, "kp-01", device_password(secured.keys["kp-01"]), "kp-01")
        owner.client.publish(topics.topic("kp-01", topics.UP_EV), payload, qos=1)
        assert wait_stored(secured.engine, ["kp-01:1"]) == ["kp-01:1"]
        owner.close()
        with secured.engine.connect() as conn:
            assert conn.execute(select(db.quarantine.c.qid)).all() == []
        assert secured.collector_disconnects == []
    finally:
        attacker.close()
