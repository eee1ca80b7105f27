"""Pytest fixtures that start real MQTT brokers (hcp.broker) on free ports.

* `broker` -- module-scoped, parametrized over the broker kinds: every test
  that uses it runs once on Mosquitto (ids "mosquitto") and once on amqtt
  ("amqtt").
* `mosquitto_broker`, `amqtt_broker` -- module-scoped, one kind each.

amqtt is a Python dependency and always available. Mosquitto is used where its
binary is installed; elsewhere its tests are skipped, unless the environment
sets HCP_REQUIRE_MOSQUITTO=1 (CI does), in which case they fail.

Each broker gets its own temporary work directory (config, log, persistence
file) and a free port; its log tail is part of any start-up error.
"""

import os

import pytest

from hcp.broker import AmqttBroker, MosquittoBroker

BROKER_KINDS = ("mosquitto", "amqtt")
MISSING_MOSQUITTO = (
    "Mosquitto is required here (HCP_REQUIRE_MOSQUITTO=1) but the mosquitto binary was not found"
)


def mosquitto_required() -> bool:
    return os.environ.get("HCP_REQUIRE_MOSQUITTO") == "1"


def require_kind(kind):
    """Skip (or, where Mosquitto is required, fail) when `kind` cannot run here."""
    if kind == "mosquitto" and not MosquittoBroker.available():
        if mosquitto_required():
            pytest.fail(MISSING_MOSQUITTO, pytrace=False)
        pytest.skip("the mosquitto binary is not installed")


def _make_broker(kind, tmp_path_factory):
    require_kind(kind)
    if kind == "mosquitto":
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
