"""End to end through the real parts: a keypad's signed batch over a real
MQTT broker, the collector's ingest storing it, the outbox, the sender and
the simulated province. A batch delivered twice reaches the province once."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest

from protocols import topics
from simulators.province import Province, serve
from sync_server.outbox_sender import Sender
from tests.harness.broker import assert_access_control, device_login
from tests.harness.collector import provision, running_ingest
from tests.harness.records import batch, signed
from tests.test_end_to_end import Watcher, wait_for
from tests.test_province import register_event, world


@pytest.fixture
def province():
    state = Province()
    server, state.url = serve(state)
    yield state
    server.shutdown()
    server.server_close()


def test_a_keypad_rating_reaches_the_province_once(secured_broker, tmp_path, province):
    broker = secured_broker  # Mosquitto with access control on, amqtt open
    with running_ingest(broker, tmp_path, "collector-outbox") as collector:
        engine = collector.ingestor.engine
        world(engine)
        key_hex = secrets.token_hex(32)
        provision(broker, engine, "kp-31", key_hex, window_id="A01")
        assert_access_control(broker, ("kp-31", key_hex))
        now = dt.datetime.now(dt.UTC)
        register_event(engine, "M1", handled_at=(now - dt.timedelta(minutes=2)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"))  # fmt: skip
        rated = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        record = signed(1, 2, device_id="kp-31", key=bytes.fromhex(key_hex), rated_at=rated,
                        case_no="M1", service_no="1", window_id="A01", tags=["H201"],
                        content_version="hcp-demo-1")  # fmt: skip
        payload = batch([record], 1, "kp-31")
        watcher = Watcher(broker, topics.topic("kp-31", topics.DOWN_ACK),
                          login=device_login("kp-31", key_hex))  # fmt: skip
        try:
            watcher.publish(topics.topic("kp-31", topics.UP_EV), payload)
            watcher.publish(topics.topic("kp-31", topics.UP_EV), payload)  # delivered twice
            wait_for(lambda: len(watcher.received) == 2, what="two acks")
        finally:
            watcher.close()
        sender = Sender(
            engine,
            {
                "HCP_PROVINCE_URL": province.url,
                "HCP_PROVINCE_CREDENTIAL": province.issue_credential(),
            },
        )
        assert sender.run_once() == {"sent": 2, "acked": 2, "failed": None}
        assert sender.run_once() == {"sent": 0, "acked": 0, "failed": None}
    assert province.log == [("event", "M1/1"), ("rating", "kp-31:1")]
    [rating] = province.received()["evaluations"]
    assert (rating["payload"]["satisfaction"], rating["payload"]["evalDetail"]) == (2, "H201")
    assert rating["payload"]["pf"] == 4 and rating["flags"] == []
