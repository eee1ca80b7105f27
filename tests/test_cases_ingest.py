"""A 差评 from a keypad's batch, through a real broker and the running MQTT
ingest, becomes exactly one case, even when the batch comes again; a batch
of good ratings makes none. On SQLite and PostgreSQL, Mosquitto (access
control on: the device and the collector each log in) and amqtt (open)."""

from __future__ import annotations

import secrets
import threading
import time

import paho.mqtt.client as mqtt
from sqlalchemy import select

from protocols import messages, topics
from sync_server import org
from sync_server.schema_cases import case_alerts, case_steps, cases
from tests.harness.broker import assert_access_control, device_login
from tests.harness.collector import provision, running_ingest
from tests.harness.records import batch, signed


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Acks:
    """A paho client that publishes batches and counts the collector's acks."""

    def __init__(self, broker, device_id, key_hex):
        self.received = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"cases-{secrets.token_hex(4)}"
        )
        if broker.access_control:  # speaks for the device: its login
            self.client.username_pw_set(*device_login(device_id, key_hex))
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topics.topic(device_id, topics.DOWN_ACK), 1)
        time.sleep(0.3)
        self.device_id = device_id

    def _on_message(self, _client, _userdata, message):
        with self._lock:
            self.received.append(messages.decode(message.payload, messages.ACK))

    def publish(self, payload):
        topic = topics.topic(self.device_id, topics.UP_EV)
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_a_bad_rating_through_the_ingest_makes_one_case_even_when_resent(
    secured_broker, engine, tmp_path
):
    broker = secured_broker
    url = engine.url.render_as_string(hide_password=False)
    device_id = f"kp-{secrets.token_hex(3)}"
    key = secrets.token_bytes(32)
    with running_ingest(broker, tmp_path, "cases-ingest", database_url=url):
        provision(broker, engine, device_id, key.hex())
        assert_access_control(broker, (device_id, key.hex()))
        org.seed(engine)  # Linzi's streets and towns, as the web app does at start
        with engine.begin() as conn:
            org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
            org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
        records = [
            signed(1, 5, device_id=device_id, key=key, window_id="A01"),
            signed(2, 1, device_id=device_id, key=key, window_id="A01"),  # no reason
            signed(
                3,
                2,
                device_id=device_id,
                key=key,
                window_id="A01",
                tags=["D201"],
                content_version="demo-1",
            ),  # fmt: skip
            signed(4, 4, device_id=device_id, key=key, window_id="A01"),
        ]
        payload = batch(records, 1, device_id)
        acks = Acks(broker, device_id, key.hex())
        try:
            acks.publish(payload)
            acks.publish(payload)  # the device missed the ack and sends the batch again
            wait_for(lambda: len(acks.received) == 2, what="two acks")
            # a batch of good ratings only makes no case
            acks.publish(batch([signed(5, 3, device_id=device_id, key=key)], 2, device_id))
            wait_for(lambda: len(acks.received) == 3, what="the third ack")
        finally:
            acks.close()
    assert [ack["stored"] for ack in acks.received] == [[1, 2, 3, 4], [1, 2, 3, 4], [5]]
    c = cases.c
    with engine.connect() as conn:
        made = conn.execute(
            select(c.id, c.record_id, c.unit_id, c.stars, c.reason_owed, c.state).order_by(c.id)
        ).all()
        opened = conn.execute(select(case_steps.c.case_id, case_steps.c.action)).all()
        alerts = conn.execute(select(case_alerts.c.case_id)).scalars().all()
    assert [tuple(row) for row in made] == [
        (1, f"{device_id}:2", "hall-ws", 1, True, "open"),
        (2, f"{device_id}:3", "hall-ws", 2, False, "open"),
    ]
    assert sorted(tuple(row) for row in opened) == [(1, "open"), (2, "open")]
    assert sorted(alerts) == [1, 2]
