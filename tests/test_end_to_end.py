"""One evaluation end to end, on a real broker, real sockets and real SQLite.

The keypad is the firmware of device/ itself, run by simulators/ with
stand-ins for `machine` and `network` only; the collector is the real ingest
service. Nothing in between is mocked.

On Mosquitto the broker runs with access control on (the files `hcp
collector broker-auth` writes): the collector logs in with its own login,
each keypad with its id and derived password, and a device is let in when
the test provisions it (a reload, no restart). amqtt runs open (see
docs/architecture.md, "Testing").
"""

import datetime as dt
import json
import secrets
import threading
import time

import pytest
from sqlalchemy import select

from protocols import messages, topics
from simulators.keypad import SimKeypad
from sync_server import db
from tests.harness.broker import assert_access_control, connect, device_login
from tests.harness.collector import provision, running_ingest
from tests.harness.records import add_evaluation, batch, signed, stored_times


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def broker(secured_broker):
    """Mosquitto with access control on, then amqtt (open)."""
    return secured_broker


@pytest.fixture
def collector(broker, tmp_path):
    with running_ingest(broker, tmp_path, "collector-test") as service:
        yield service


@pytest.fixture
def keypad_factory(broker, collector, tmp_path):
    made = []

    def make(device_id="kp-01", key_hex=None, register=True, **settings):
        key_hex = key_hex or secrets.token_hex(32)
        if register:
            provision(broker, collector.ingestor.engine, device_id, key_hex)
        keypad = SimKeypad(
            device_id, key_hex, broker.host, broker.port, str(tmp_path / device_id), **settings
        )
        made.append(keypad)
        return keypad.start()

    yield make
    for keypad in made:
        keypad.stop()
        assert keypad.errors == []


def rows(collector):
    with collector.ingestor.engine.connect() as conn:
        return conn.execute(
            select(db.evaluations.c.id, db.evaluations.c.stars).order_by(db.evaluations.c.seq)
        ).all()


def reasons(collector):
    with collector.ingestor.engine.connect() as conn:
        return (
            conn.execute(select(db.quarantine.c.reason).order_by(db.quarantine.c.qid))
            .scalars()
            .all()
        )


class Watcher:
    """A paho client that records what arrives on some topics; with `login`
    (a device's, see device_login) a test speaking for a device without its
    firmware. Without one it connects anonymously (open brokers only)."""

    def __init__(self, broker, *subscriptions, login=(None, None)):
        self.received = []
        self._lock = threading.Lock()
        self.client = connect(broker, login, "watcher", on_message=self._on_message)
        for topic in subscriptions:
            self.client.subscribe(topic, 1)[0]
        time.sleep(0.3)

    def _on_message(self, _client, _userdata, message):
        with self._lock:
            self.received.append((message.topic, message.payload))

    def publish(self, topic, payload):
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_only_provisioned_devices_get_in_and_only_to_their_own_topics(broker, collector):
    key_hex = secrets.token_hex(32)
    provision(broker, collector.ingestor.engine, "kp-05", key_hex)
    assert_access_control(broker, ("kp-05", key_hex))


def test_a_key_press_reaches_the_collector_and_leaves_the_device(collector, keypad_factory):
    keypad = keypad_factory("kp-01")
    keypad.rate(4)
    keypad.rate(1)
    wait_for(lambda: len(rows(collector)) == 2, what="two stored evaluations")
    assert rows(collector) == [("kp-01:1", 4), ("kp-01:2", 1)]
    assert keypad.wait_drained(10), "the ack should empty the device's store"
    with collector.ingestor.engine.connect() as conn:
        stored = conn.execute(select(db.evaluations).where(db.evaluations.c.id == "kp-01:1")).one()
    assert stored.channel == "keypad" and stored.origin == "citizen" and stored.clock == "ntp"
    assert reasons(collector) == []
    # the device's retained status carries its cumulative counts per level
    wait_for(lambda: _status(collector, "kp-01").get("last_seq") == 2, what="status")
    status = _status(collector, "kp-01")
    assert status["counts"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 0}
    assert (status["online"], status["queue"], status["clock"]) == (True, 0, "ntp")
    assert (status["reset_cause"], status["signal"]) == ("power_on", -55)
    assert len(status["boot_id"]) == 8 and status["uptime_ms"] > 0


def _status(collector, device_id):
    with collector.ingestor.engine.connect() as conn:
        raw = conn.execute(
            select(db.devices.c.status).where(db.devices.c.device_id == device_id)
        ).scalar()
    return json.loads(raw) if raw else {}


def test_a_batch_delivered_twice_is_stored_once_and_acked_twice(broker, collector):
    key_hex = secrets.token_hex(32)
    provision(broker, collector.ingestor.engine, "kp-07", key_hex)
    rec = signed(1, 5, device_id="kp-07", key=bytes.fromhex(key_hex))
    payload = batch([rec], 1, "kp-07")
    login = device_login("kp-07", key_hex)
    watcher = Watcher(broker, topics.topic("kp-07", topics.DOWN_ACK), login=login)
    try:
        watcher.publish(topics.topic("kp-07", topics.UP_EV), payload)
        watcher.publish(topics.topic("kp-07", topics.UP_EV), payload)
        wait_for(lambda: len(watcher.received) == 2, what="two acks")
    finally:
        watcher.close()
    assert rows(collector) == [("kp-07:1", 5)]
    for _topic, ack in watcher.received:
        assert messages.decode(ack, messages.ACK)["stored"] == [1]


def test_bad_input_is_quarantined_and_ingest_keeps_running(broker, collector, keypad_factory):
    key_hex = secrets.token_hex(32)
    provision(broker, collector.ingestor.engine, "kp-01", key_hex)
    watcher = Watcher(broker, login=device_login("kp-01", key_hex))  # a device sending rubbish
    try:
        watcher.publish(topics.topic("kp-01", topics.UP_EV), b"\x00garbage")
        watcher.publish(topics.topic("kp-01", topics.UP_EV), b'{"t":"ev","v":1}')
    finally:
        watcher.close()
    keypad = keypad_factory("kp-01", key_hex, register=False)
    forged = keypad_factory("kp-02", register=False, ack_timeout_ms=2000)  # not provisioned
    keypad.rate(5)
    forged.rate(3)
    wait_for(lambda: len(rows(collector)) == 1, what="the good record")
    expected = ["payload: not JSON", "ev.device_id: must be 1..32 characters of A-Z a-z 0-9 - _"]
    if broker.access_control:
        # the broker does not let an unprovisioned keypad in at all
        wait_for(lambda: forged.call(lambda d: d.client.last_error), what="kp-02 refused")
        assert forged.call(lambda d: d.client.last_error) == (
            "MQTTError: CONNACK refused: code 5 (not authorised)"
        )
    else:  # an open broker passes it on; the collector keeps it aside
        expected.append("device_id: unknown device 'kp-02' (not provisioned)")
    wait_for(lambda: len(reasons(collector)) == len(expected), what="the quarantined items")
    assert reasons(collector) == expected
    # an unprovisioned keypad gets no (unsigned) ack: it keeps its record ...
    time.sleep(1)
    assert forged.pending() == 1
    # ... and delivers it once the technician has provisioned it (on Mosquitto:
    # let in by a reload of the broker's password file, at the keypad's next try)
    provision(broker, collector.ingestor.engine, "kp-02", forged.settings["key"])
    wait_for(lambda: len(rows(collector)) == 2, what="the provisioned keypad's record")
    assert forged.wait_drained(10)
    assert reasons(collector) == expected, "the repeats added no quarantine rows"


def test_ratings_made_offline_are_kept_and_sent_when_the_link_returns(collector, keypad_factory):
    keypad = keypad_factory("kp-01")
    keypad.rate(5)
    wait_for(lambda: len(rows(collector)) == 1, what="first record")
    assert keypad.wait_drained(10), "its ack comes just after the commit"
    keypad.network.link_up = False
    for stars in (2, 3, 4):
        keypad.rate(stars)
    time.sleep(0.5)
    assert keypad.pending() == 3 and len(rows(collector)) == 1
    keypad.network.link_up = True
    wait_for(lambda: len(rows(collector)) == 4, what="the offline ratings")
    assert [r.id for r in rows(collector)] == ["kp-01:1", "kp-01:2", "kp-01:3", "kp-01:4"]
    assert keypad.wait_drained(10)


def test_a_power_cut_loses_nothing_and_reuses_no_seq(broker, collector, keypad_factory, tmp_path):
    key_hex = secrets.token_hex(32)
    first = keypad_factory("kp-03", key_hex=key_hex)
    first.network.link_up = False
    first.rate(5)
    first.rate(1)
    first.stop(power_cut=True)
    second = keypad_factory("kp-03", key_hex=key_hex, register=False)  # same data folder
    second.rate(3)
    wait_for(lambda: len(rows(collector)) == 3, what="all three ratings")
    assert rows(collector) == [("kp-03:1", 5), ("kp-03:2", 1), ("kp-03:3", 3)]
    assert second.wait_drained(10)


def test_a_failed_commit_is_not_acked_and_arrives_after_recovery(broker, collector, keypad_factory):
    # Mosquitto redelivers the un-PUBACKed message when the collector reconnects,
    # so the device must not resend (60 s). amqtt 0.12.1 did not redeliver it in
    # our runs; there the device's own resend after its ack timeout is the path.
    resend_ms = 60000 if broker.kind == "mosquitto" else 3000
    keypad = keypad_factory("kp-01", ack_timeout_ms=resend_ms)
    keypad.rate(5)
    wait_for(lambda: len(rows(collector)) == 1, what="first record")
    engine = collector.ingestor.engine
    db.evaluations.drop(engine)  # every commit fails from now on
    keypad.rate(2)
    wait_for(lambda: collector.failures >= 1, what="a failed commit")
    assert keypad.pending() == 1, "no ack may be sent for a batch that was not committed"
    db.evaluations.create(engine)
    wait_for(lambda: len(rows(collector)) == 1 and keypad.pending() == 0, what="redelivery")
    assert rows(collector) == [("kp-01:2", 2)]


def test_records_sent_while_the_collector_is_down_arrive_after_it_returns(
    collector, keypad_factory
):
    keypad = keypad_factory("kp-01", ack_timeout_ms=2000)
    collector.stop()
    keypad.rate(4)
    keypad.rate(3)
    time.sleep(0.5)
    assert keypad.pending() == 2
    collector.start()
    wait_for(lambda: len(rows(collector)) == 2, what="both records")
    assert keypad.wait_drained(10)


def test_a_broker_restart_loses_nothing(broker, collector, keypad_factory):
    # Sessions do not survive this restart (no persistence): the device and the
    # collector both reconnect and subscribe again; what was in flight is sent
    # again by the device after its ack timeout.
    keypad = keypad_factory("kp-01", ack_timeout_ms=2000)
    keypad.rate(5)
    wait_for(lambda: len(rows(collector)) == 1, what="first record")
    broker.stop()
    keypad.rate(1)
    keypad.rate(4)
    broker.start()
    keypad.rate(3)
    wait_for(lambda: len(rows(collector)) == 4, timeout=40, what="all four records")
    assert rows(collector) == [("kp-01:1", 5), ("kp-01:2", 1), ("kp-01:3", 4), ("kp-01:4", 3)]
    assert keypad.wait_drained(10)


def test_an_unforeseen_error_quarantines_that_message_and_ingest_goes_on(
    broker, collector, keypad_factory
):
    # Fault injection: the ingest code fails on one message as a bug would.
    process = collector.ingestor.process

    def failing_on_boom(topic, payload, retained=False):
        if payload == b"boom":
            raise RuntimeError("boom")
        return process(topic, payload, retained)

    collector.ingestor.process = failing_on_boom
    key_hex = secrets.token_hex(32)
    provision(broker, collector.ingestor.engine, "kp-01", key_hex)
    watcher = Watcher(broker, login=device_login("kp-01", key_hex))
    try:
        watcher.publish(topics.topic("kp-01", topics.UP_EV), b"boom")
    finally:
        watcher.close()
    keypad = keypad_factory("kp-01", key_hex, register=False)
    keypad.rate(5)
    wait_for(lambda: len(rows(collector)) == 1, what="the record after the failure")
    assert reasons(collector) == ["ingest error: RuntimeError"]
    assert collector.failures == 1


def test_a_long_backlog_drains_in_batches_bad_reviews_first(collector, keypad_factory):
    keypad = keypad_factory("kp-01", batch_size=50)
    keypad.network.link_up = False

    def backlog(device):  # 300 ratings made while offline, 1 in 10 a 差评
        now = 10**9
        for n in range(300):
            now += 5000
            device.app.press(4 if n % 10 == 0 else 0, now)  # key 4 = 非常不满意
            device.app.tick(now + 1000)
        return len(device.store)

    assert keypad.call(backlog) == 300
    keypad.network.link_up = True
    wait_for(lambda: len(rows(collector)) == 300, timeout=60, what="the whole backlog")
    assert keypad.wait_drained(10)
    with collector.ingestor.engine.connect() as conn:
        arrival = conn.execute(
            select(db.evaluations.c.stars, db.evaluations.c.received_at).order_by(
                db.evaluations.c.received_at, db.evaluations.c.seq
            )
        ).all()
    batches = {}
    for stars, received_at in arrival:
        batches.setdefault(received_at, []).append(stars)
    assert len(batches) == 6 and all(len(b) == 50 for b in batches.values())
    first = list(batches.values())[0]
    assert sorted(first) == [1] * 30 + [5] * 20  # all 30 差评 travel in the first batch


def test_a_keypad_without_a_set_clock_gets_estimated_times(collector, keypad_factory):
    keypad = keypad_factory("kp-01", clock_set=False)
    keypad.rate(4)
    keypad.rate(2)
    wait_for(lambda: len(rows(collector)) == 2, what="both records")

    def times():
        return [stored_times(collector.ingestor.engine, seq) for seq in (1, 2)]

    wait_for(lambda: all(t.time_source == "estimated" for t in times()), what="estimates")
    for rated_at, effective_at, _source, received_at in times():
        assert rated_at.startswith("2000-01-01T")  # the device's own (unset) clock, kept
        made = dt.datetime.fromisoformat(effective_at.replace("Z", "+00:00"))
        arrived = dt.datetime.fromisoformat(received_at.replace("Z", "+00:00"))
        assert dt.timedelta(0) <= arrived - made < dt.timedelta(seconds=5)


def test_a_record_the_database_refuses_does_not_stall_ingest_for_anyone(
    broker, collector, keypad_factory
):
    # Before, such a record made the ingest reconnect, and the broker handed the
    # same message first again, forever. Now it is kept aside and acked, and
    # the next device's rating is stored.
    engine = collector.ingestor.engine
    key_hex = secrets.token_hex(32)
    provision(broker, engine, "kp-09", key_hex)
    # an imported row already holds (kp-09, 1)
    add_evaluation(engine, "web/import-1", 4, device_id="kp-09", seq=1, channel="web")
    rec = signed(1, 1, device_id="kp-09", key=bytes.fromhex(key_hex))
    login = device_login("kp-09", key_hex)
    watcher = Watcher(broker, topics.topic("kp-09", topics.DOWN_ACK), login=login)
    try:
        watcher.publish(topics.topic("kp-09", topics.UP_EV), batch([rec], 5, "kp-09"))
        wait_for(lambda: watcher.received, what="the ack for the refused record")
        ack = messages.decode(watcher.received[0][1], messages.ACK)
        assert (ack["stored"], ack["quarantined"]) == ([], [1])
    finally:
        watcher.close()
    keypad = keypad_factory("kp-01")
    keypad.rate(5)
    wait_for(lambda: ("kp-01:1", 5) in rows(collector), what="the next device's rating")
    assert reasons(collector) == ["database: refused the record (IntegrityError)"]
    assert collector.failures == 0


def test_a_wiped_board_rejoins_without_reusing_a_seq(collector, keypad_factory, tmp_path):
    """A board rated, was wiped (its data folder lost) and comes back with the
    same identity: it refuses to rate until the collector has told it the
    highest seq it holds, then goes on after it (docs/protocol.md §3.6)."""
    key_hex = secrets.token_hex(32)
    first = keypad_factory("kp-07", key_hex)
    for stars in (5, 1, 4):
        first.rate(stars)
    wait_for(lambda: len(rows(collector)) == 3, what="three stored evaluations")
    assert first.wait_drained(10)
    first.stop()
    wiped = SimKeypad(
        "kp-07",
        key_hex,
        collector.host,
        collector.port,
        str(tmp_path / "kp-07-new-board"),
        provisioned=False,
    )
    wiped.start()
    try:
        wait_for(lambda: wiped.call(lambda d: d.store.known), what="the collector's seq answer")
        assert wiped.call(lambda d: (d.store.next_seq, d.store.counts)) == (
            4,
            {"1": 1, "2": 0, "3": 0, "4": 1, "5": 1},
        )
        wiped.rate(3)
        wait_for(lambda: len(rows(collector)) == 4, what="the new board's rating")
        assert rows(collector)[-1] == ("kp-07:4", 3)
        wait_for(lambda: _status(collector, "kp-07").get("last_seq") == 4, what="status")
    finally:
        wiped.stop()
    assert wiped.errors == []
