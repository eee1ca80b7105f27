"""Pytest fixtures that start real MQTT brokers (hcp.broker) on free ports.

* `broker` -- module-scoped, parametrized over the broker kinds: every test
  that uses it runs once on Mosquitto (ids "mosquitto") and once on amqtt
  ("amqtt").
* `mosquitto_broker`, `amqtt_broker` -- module-scoped, one kind each.
* `secured_broker` -- like `broker`, but its Mosquitto runs with access
  control on (hcp.broker.SecuredMosquitto: broker_auth's own password file,
  ACL and listener; nothing anonymous). amqtt stays open: see
  docs/architecture.md, "Testing". `secured_mosquitto` -- Mosquitto only.
  Clients log in with `broker.collector_login()`, `broker.fleet_login()` or
  `device_login(device_id, key_hex)`; a device registered during a test is
  let in with `broker.allow(...)` (a reload, as revocation does) --
  tests/harness/collector.py's `provision` does both.

amqtt is a Python dependency and always available. Mosquitto is used where its
binary is installed; elsewhere its tests are skipped, unless the environment
sets HCP_REQUIRE_MOSQUITTO=1 (CI does), in which case they fail.

Each broker gets its own temporary work directory (config, log, persistence
file) and a free port; its log tail is part of any start-up error.
"""

import os
import re
import threading

import paho.mqtt.client as mqtt
import pytest

from hcp.broker import (
    NOT_AUTHORISED,
    AmqttBroker,
    MosquittoBroker,
    SecuredMosquitto,
    login_answer,
)
from protocols import sign, topics

BROKER_KINDS = ("mosquitto", "amqtt")
MISSING_MOSQUITTO = (
    "Mosquitto is required here (HCP_REQUIRE_MOSQUITTO=1) but the mosquitto binary was not found"
)


def mosquitto_required() -> bool:
    return os.environ.get("HCP_REQUIRE_MOSQUITTO") == "1"


def require_kind(kind):
    """Skip (or, where Mosquitto is required, fail) when `kind` cannot run here."""
    if kind.endswith("mosquitto") and not MosquittoBroker.available():
        if mosquitto_required():
            pytest.fail(MISSING_MOSQUITTO, pytrace=False)
        pytest.skip("the mosquitto binary is not installed")


NOT_AUTHORIZED = NOT_AUTHORISED  # CONNACK 5 of MQTT 3.1.1, as paho numbers it


def _make_broker(kind, tmp_path_factory):
    require_kind(kind)
    if kind == "secured-mosquitto":
        broker = SecuredMosquitto(workdir=tmp_path_factory.mktemp("mosquitto"))
    elif kind == "mosquitto":
        broker = MosquittoBroker(workdir=tmp_path_factory.mktemp("mosquitto"))
    elif kind == "amqtt":
        broker = AmqttBroker(workdir=tmp_path_factory.mktemp("amqtt"))
    else:
        raise ValueError(f"unknown broker kind {kind!r}")
    return broker


def _run(kind, tmp_path_factory):
    broker = _make_broker(kind, tmp_path_factory)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module", params=BROKER_KINDS)
def broker(request, tmp_path_factory):
    """A running broker of each kind in turn (module scope)."""
    yield from _run(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def mosquitto_broker(tmp_path_factory):
    """A running Mosquitto (skipped where not installed, unless required)."""
    yield from _run("mosquitto", tmp_path_factory)


@pytest.fixture(scope="module")
def amqtt_broker(tmp_path_factory):
    """A running amqtt broker."""
    yield from _run("amqtt", tmp_path_factory)


@pytest.fixture(scope="module", params=BROKER_KINDS)
def secured_broker(request, tmp_path_factory):
    """A running broker of each kind in turn: Mosquitto with access control
    on (only the logins broker_auth writes), amqtt open (module scope)."""
    kind = "secured-mosquitto" if request.param == "mosquitto" else request.param
    yield from _run(kind, tmp_path_factory)


@pytest.fixture(scope="module")
def secured_mosquitto(tmp_path_factory):
    """A running Mosquitto with access control on (module scope)."""
    yield from _run("secured-mosquitto", tmp_path_factory)


def device_login(device_id, key_hex):
    """The (user, password) a device logs in with: its id and the password
    derived from its key (protocols.sign.mqtt_password), as the firmware does."""
    return device_id, sign.mqtt_password(bytes.fromhex(key_hex))


def connect(broker, login=(None, None), client_id="hcp-test", on_message=None):
    """A paho client logged in with `login` ((None, None): anonymous), its
    loop running; raises ConnectionRefusedError with the CONNACK's reason
    code when the broker refuses it."""
    connack = threading.Event()
    codes = []

    def on_connect(_client, _userdata, _flags, reason_code, _props):
        codes.append(reason_code)
        connack.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if login[0]:
        client.username_pw_set(*login)
    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    client.reconnect_delay_set(30, 30)  # no quiet reconnect during a test
    client.connect(broker.host, broker.port)
    client.loop_start()
    if not connack.wait(5):
        client.loop_stop()
        raise TimeoutError(f"no CONNACK from {broker.url}")
    if codes[0].is_failure:
        client.disconnect()
        client.loop_stop()
        raise ConnectionRefusedError(codes[0].value, str(codes[0]))
    return client


def refusal(broker, login=(None, None), client_id="hcp-test-refused"):
    """The CONNACK reason code (an int) the broker answers `login` with; 0: let in."""
    return login_answer(broker, login, client_id)


def publish_answer(broker, login, topic, payload=b"{}"):
    """Publish once at QoS 1 over MQTT 5 as `login` and return the PUBACK's
    reason code (an int): Mosquitto answers a publish its ACL denies with 135
    "Not authorized" (MQTT 3.1.1, the devices' version, has no code for it:
    the message is dropped silently)."""
    connack, acked = threading.Event(), threading.Event()
    codes = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=login[0] or "hcp-test",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    if login[0]:
        client.username_pw_set(*login)
    client.on_connect = lambda *_a: connack.set()
    client.on_publish = lambda _c, _u, _mid, reason_code, _p: (
        codes.append(reason_code),
        acked.set(),
    )
    client.reconnect_delay_set(30, 30)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connack.wait(5), f"no CONNACK from {broker.url}"
        client.publish(topic, payload, qos=1)
        assert acked.wait(5), "no PUBACK"
        return codes[0].value
    finally:
        client.disconnect()
        client.loop_stop()


def assert_access_control(broker, device):
    """On a broker with access control on: an anonymous client is refused
    with "not authorised" (CONNACK), and `device` ((device_id, key_hex), one
    the broker lets in) may not publish under another device's topic
    ("Not authorized" PUBACK). On an open broker (amqtt) the anonymous client
    is let in: the check says which kind of broker the test ran on.

    Call it before the device's own client starts: the check logs in as the
    device, and the broker keys sessions by user name."""
    if not broker.access_control:
        assert refusal(broker) == 0
        return
    assert refusal(broker) == NOT_AUTHORIZED
    other = topics.topic("kp-someone-else", topics.UP_EV)
    assert publish_answer(broker, device_login(*device), other) == NOT_AUTHORIZED


# Mosquitto's log (connection_messages true) names each client it lets in and,
# after u'…', the user it logged in as; a refused login check is logged too
_LET_IN = re.compile(r"New client connected from \S+ as \S+ \(([^)]*)\)")
ANONYMOUS_REFUSED = "Client hcp-login-check disconnected, not authorised."


def logins_let_in(log_text):
    """The user of every connection Mosquitto's log shows it let in, in
    order (None for one made without a user name)."""
    users = []
    for match in _LET_IN.finditer(log_text):
        user = re.search(r"u'([^']*)'", match.group(1))
        users.append(user.group(1) if user else None)
    return users
