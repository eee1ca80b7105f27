"""The kiosk end to end: real pygame events on the dummy display, the kiosk's
SQLite store, the keypad's own Sync and MQTT client in the kiosk's sync
worker, a real broker (harness) and the collector's IngestService on SQLite.
Nothing in between is mocked.

On Mosquitto the broker runs with access control on (broker_auth's files):
the kiosk logs in as its device id with its derived password, the collector
with its own login, and what the fleet agent does here (a config, a command,
reading the command's result) is done with the fleet agent's login. amqtt
runs open (docs/architecture.md, "Testing")."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy import select

from hcp.broker import free_port
from kiosk.service import SyncWorker, serve_http
from protocols import messages, topics
from sync_server import db
from tests.harness.broker import assert_access_control, connect
from tests.harness.collector import provision, running_ingest
from tests.test_kiosk_flow import DEVICE, KEY, KEY_HEX, Kiosk, demo_config


def wait_for(predicate, kiosk=None, timeout=20, what="condition"):
    """Poll, stepping the kiosk's screen meanwhile (it answers the sync
    worker's and the local API's requests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kiosk is not None:
            kiosk.step(20)
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
    with running_ingest(broker, tmp_path, "collector-kiosk-test") as service:
        provision(broker, service.ingestor.engine, DEVICE, KEY_HEX, kind="kiosk")
        yield service


@pytest.fixture
def online_kiosk(broker, collector, tmp_path):
    k = Kiosk(
        tmp_path / "kiosk",
        demo_config(),
        broker_host=broker.host,
        broker_port=broker.port,
        data_dir=str(tmp_path / "kiosk"),
        ack_timeout_ms=2000,
    )
    worker = SyncWorker(k.settings, k.app).start()
    yield k
    worker.stop()
    k.close()


def evaluations(collector):
    ev = db.evaluations.c
    with collector.ingestor.engine.connect() as conn:
        return conn.execute(
            select(
                ev.id, ev.stars, ev.channel, ev.tags, ev.comment, ev.content_version, ev.window_id
            ).order_by(ev.seq)  # fmt: skip
        ).all()


def contacts(collector):
    """(record id, number) of the contacts kept, unsealed (the column holds none)."""
    from sync_server import contacts as kept
    from sync_server import phones

    engine = collector.ingestor.engine
    with engine.connect() as conn:
        rows = conn.execute(select(db.contacts.c.record_id, db.contacts.c.contact)).all()
    assert all(kept.is_sealed(value) for _id, value in rows), rows
    return [(rid, phones.unseal(kept.key_for(engine), value)) for rid, value in rows]


def publish(broker, topic, payload, retain=False):
    """Publish as the fleet agent does (its login: it writes configs and commands)."""
    client = connect(broker, broker.fleet_login(), "kiosk-test-publisher")
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_the_broker_lets_in_only_the_provisioned_kiosk_to_its_own_topics(broker, collector):
    assert_access_control(broker, (DEVICE, KEY_HEX))


def test_a_walk_up_rating_reaches_the_collector_with_its_contact(online_kiosk, collector):
    k = online_kiosk
    k.rate(2, tags=["等候时间长"], comment=["等候时间太长"], phone="13800000000")
    assert k.scene == "thanks"
    wait_for(lambda: evaluations(collector), k, what="the rating at the collector")
    assert evaluations(collector) == [
        ("ks-01:1", 2, "kiosk", '["D201"]', "等候时间太长", "demo-1", "A01")
    ]
    assert contacts(collector) == [("ks-01:1", "13800000000")]
    wait_for(lambda: len(k.store) == 0, k, what="the ack")  # acked: gone from the kiosk
    assert k.store.last_ack_at is not None
    k.tap("首页")
    wait_for(lambda: k.app.link.get("connected"), k, what="the technician's broker state")


def test_the_config_comes_from_the_collector_and_the_evaluate_command_opens_a_case(
    online_kiosk, collector, broker
):
    k = online_kiosk
    new = messages.config(7, content_version="2026-2", tags=[[5, "X5", "窗口整洁"]],
                          units=[["u1", "临淄区政务服务中心"]])  # fmt: skip
    publish(broker, topics.topic(DEVICE, topics.DOWN_CONFIG),
            messages.encode_signed(new, KEY), retain=True)  # fmt: skip
    wait_for(lambda: k.app.content.version == 7, k, what="the new config")
    assert k.store.get_setting("config")["content_version"] == "2026-2"

    results = []
    # the fleet agent's one login both sends the command and reads its result
    # (a second client on that login would take the first one's session)
    listener = connect(broker, broker.fleet_login(), "kiosk-test-cmdres",
                       on_message=lambda _c, _u, m: results.append(json.loads(m.payload)))  # fmt: skip
    listener.subscribe(topics.topic(DEVICE, topics.UP_CMDRES), 1)
    try:
        time.sleep(0.3)
        command = messages.command("c-1", "evaluate", {"case_no": "QZ77", "item_code": "D-9"})
        listener.publish(topics.topic(DEVICE, topics.DOWN_CMD),
                         messages.encode_signed(command, KEY), qos=1).wait_for_publish(5)  # fmt: skip
        wait_for(lambda: results, k, what="the command's result")
    finally:
        listener.disconnect()
        listener.loop_stop()
    assert results[0]["id"] == "c-1" and results[0]["ok"] is True
    assert results[0]["result"] == {"opened": "QZ77"}
    assert k.scene == "level"
    k.tap("非常满意")
    assert "窗口整洁" in [b.label for b in k.app.scene.buttons]
    k.tap("窗口整洁")
    k.tap("下一步")
    k.tap("跳过")
    k.tap("跳过")

    def stored():
        ev = db.evaluations.c
        with collector.ingestor.engine.connect() as conn:
            return conn.execute(select(ev.case_no, ev.item_code, ev.content_version, ev.tags)).all()

    wait_for(stored, k, what="the case's rating")
    assert stored() == [("QZ77", "D-9", "2026-2", '["X5"]')]


def post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def in_thread(fn, *args):
    box = []
    thread = threading.Thread(target=lambda: box.append(fn(*args)), daemon=True)
    thread.start()
    return thread, box


def test_the_local_api_hands_a_finished_case_over(online_kiosk, collector):
    k = online_kiosk
    port = free_port()
    server = serve_http(k.app, port)
    base = f"http://127.0.0.1:{port}"
    try:
        thread, box = in_thread(post, base + "/evaluate", {"case_no": "QZ9", "attempt": 3})
        wait_for(lambda: box, k, what="the answer")
        assert box[0] == (400, {"error": "evaluate.attempt: must be an integer 1..2"})
        thread, box = in_thread(post, base + "/evaluate", {"service_no": "1"})
        wait_for(lambda: box, k, what="the answer")
        assert box[0] == (400, {"error": "evaluate.case_no: is required"})

        thread, box = in_thread(post, base + "/evaluate", {"case_no": "QZ9", "staff_id": "1001"})
        wait_for(lambda: box, k, what="the answer")
        assert box[0] == (200, {"opened": "QZ9"})
        assert k.scene == "level"
        thread, box = in_thread(post, base + "/evaluate", {"case_no": "QZ10"})
        wait_for(lambda: box, k, what="the answer")
        assert box[0] == (409, {"error": "busy: a rating is in progress"})

        k.tap("基本满意")
        k.tap("下一步")
        k.tap("跳过")
        k.tap("跳过")
        thread, box = in_thread(get, base + "/cases/QZ9")
        wait_for(lambda: box, k, what="the answer")
        assert box[0] == (200, {"result": "rated", "record_id": "ks-01:1"})
        thread, box = in_thread(get, base + "/status")
        wait_for(lambda: box, k, what="the answer")
        assert box[0][0] == 200 and box[0][1]["device_id"] == DEVICE
    finally:
        server.shutdown()
        server.server_close()

    def case_staff():
        ev = db.evaluations.c
        with collector.ingestor.engine.connect() as conn:
            return conn.execute(select(ev.case_no, ev.case_staff_id)).all()

    wait_for(case_staff, k, what="the rating")
    assert case_staff() == [("QZ9", "1001")]
