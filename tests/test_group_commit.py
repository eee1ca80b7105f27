"""Group commit: many messages decided and committed in one transaction.

Ingestor.process_many must give, message for message, what process() gives
one at a time (same acks, same quarantine, same seq answers), on SQLite and
PostgreSQL; a record the database refuses in a group still costs only that
record; a lost database is an outage for the whole group. IngestService
takes every message waiting, commits them together, and PUBACKs nothing
before the commit.
"""

import secrets
import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from protocols import messages, topics
from sync_server import contacts, db, features, phones
from sync_server.ingest import Ingestor, IngestService
from tests.harness.records import (
    CONTACT,
    KEY,
    KEY_HEX,
    add_evaluation,
    batch,
    contact_entry,
    signed,
)

EV = topics.topic("kp-01", topics.UP_EV)
STATUS = topics.topic("kp-01", topics.UP_STATUS)
OTHER_KEY = secrets.token_hex(32)


def forged(seq):
    return signed(seq, key=b"not the device key")


def mixed_messages():
    """Every kind of decision, in an order where later messages depend on earlier ones."""
    kp02 = bytes.fromhex(OTHER_KEY)
    return [
        (EV, batch([signed(1, 5), signed(2, 1)], number=1), False),
        (EV, batch([signed(2, 1), signed(3, 4)], number=2), False),  # 2 again: duplicate
        (EV, batch([signed(3, 2)], number=3), False),  # 3 with other content: kept aside
        (EV, batch([forged(4), signed(5, 3)], number=4), False),
        (EV, b"not json", False),
        (STATUS, messages.encode(messages.status(True, boot_id="b00t")), False),
        (topics.topic("kp-01", topics.DOWN_ACK), b"{}", False),
        (
            topics.topic("kp-02", topics.UP_EV),
            batch([signed(1, 2, device_id="kp-02", key=kp02)], device_id="kp-02"),
            False,
        ),
        (EV, batch([signed(1, device_id="kp-02")], number=5), False),  # another device's
        (EV, batch([signed(1, 5), signed(2, 1)], number=6), False),  # a full repeat
    ]


def provision(engine):
    db.add_device(engine, "kp-01", KEY_HEX)
    db.add_device(engine, "kp-02", OTHER_KEY)


def snapshot(engine):
    with engine.connect() as conn:
        ev = db.evaluations.c
        q = db.quarantine.c
        return (
            conn.execute(select(ev.id, ev.stars, ev.reason_owed).order_by(ev.id)).all(),
            conn.execute(select(q.device_id, q.record_id, q.reason).order_by(q.qid)).all(),
        )


def decisions(outcomes):
    return [
        (
            o.ack_topic,
            o.ack_payload,
            sorted(o.stored),
            sorted(o.duplicates),
            o.quarantined,
            o.quarantine_rows_added,
            sorted(o.ack_quarantined),
            o.error,
        )
        for o in outcomes
    ]


def test_a_group_decides_exactly_as_one_message_at_a_time(engine, tmp_path):
    reference = db.make_engine(f"sqlite:///{tmp_path / 'one-by-one.db'}")
    db.init(reference)
    provision(reference)
    provision(engine)
    one_by_one = Ingestor(reference)
    alone = [one_by_one.process(*item) for item in mixed_messages()]
    grouped = Ingestor(engine).process_many(mixed_messages())
    assert decisions(grouped) == decisions(alone)
    assert snapshot(engine) == snapshot(reference)
    assert [o.ack_topic for o in grouped].count(topics.topic("kp-01", topics.DOWN_SEQ)) == 1
    reference.dispose()


def run_of_batches():
    """Batches only (one run, stored together), two devices interleaved, with
    contacts: a repeat, a changed record, a contact given twice and one for a
    record kept aside."""
    kp02 = bytes.fromhex(OTHER_KEY)
    other = "13900000000"
    return [
        (EV, batch([signed(1, 1), signed(2, 5)], contacts=[contact_entry("kp-01:1")]), False),
        (
            topics.topic("kp-02", topics.UP_EV),
            batch([signed(1, 2, device_id="kp-02", key=kp02)], device_id="kp-02"),
            False,
        ),
        # 1 again with another number: the first number given stays
        (
            EV,
            batch([signed(1, 1), signed(3, 4)], 2, contacts=[contact_entry("kp-01:1", other)]),
            False,
        ),
        # 3 with other content, and its contact: kept aside, the contact not kept
        (EV, batch([signed(3, 2), signed(4, 1)], 3, contacts=[contact_entry("kp-01:3")]), False),
        (
            topics.topic("kp-02", topics.UP_EV),
            batch(
                [
                    signed(1, 2, device_id="kp-02", key=kp02),
                    signed(2, 3, device_id="kp-02", key=kp02),
                ],
                2,
                device_id="kp-02",
            ),
            False,
        ),  # fmt: skip
        (EV, batch([signed(4, 1), signed(5, 2)], 4, contacts=[contact_entry("kp-01:5")]), False),
    ]


def kept_contacts(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            select(db.contacts.c.record_id, db.contacts.c.contact).order_by(db.contacts.c.record_id)
        ).all()
    key = contacts.key_for(engine)
    return [(record_id, phones.unseal(key, sealed)) for record_id, sealed in rows]


def test_a_run_of_batches_is_stored_together_as_one_at_a_time(engine, tmp_path):
    reference = db.make_engine(f"sqlite:///{tmp_path / 'one-by-one.db'}")
    db.init(reference)
    provision(reference)
    provision(engine)
    alone = [Ingestor(reference).process(*item) for item in run_of_batches()]
    grouped = Ingestor(engine).process_many(run_of_batches())
    assert decisions(grouped) == decisions(alone)
    assert [sorted(o.stored) for o in grouped] == [[1, 2], [1], [3], [4], [2], [5]]
    assert [sorted(o.duplicates) for o in grouped] == [[], [], [1], [], [1], [4]]
    assert [sorted(o.ack_quarantined) for o in grouped] == [[], [], [], [3], [], []]
    assert snapshot(engine) == snapshot(reference)
    assert kept_contacts(engine) == kept_contacts(reference)
    assert kept_contacts(engine) == [("kp-01:1", CONTACT), ("kp-01:5", CONTACT)]
    reference.dispose()


def test_a_group_touches_every_device_it_heard_in_one_statement(engine):
    from sqlalchemy import event

    provision(engine)
    db.add_device(engine, "kp-03", KEY_HEX)
    updates = []

    def seen(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("UPDATE DEVICES"):
            updates.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        Ingestor(engine).process_many(
            run_of_batches()
            + [
                (
                    topics.topic("kp-03", topics.UP_EV),
                    batch([signed(1, device_id="kp-03")], device_id="kp-03"),
                    False,
                )
            ]
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(updates) == 1
    with engine.connect() as conn:
        d = db.devices.c
        last = dict(conn.execute(select(d.device_id, d.last_seen)).all())
    assert set(last) == {"kp-01", "kp-02", "kp-03"}
    assert last["kp-01"] is not None and len(set(last.values())) == 1


def test_a_stored_id_the_look_up_missed_is_never_counted_twice(engine, monkeypatch):
    """The insert after the look-up under the device lock has no ON CONFLICT:
    were a stored id ever missed, the group is refused and each message
    decided alone (a duplicate), never skipped by the insert while the
    figures, cases and outbox count it again."""
    from sync_server import ingest
    from sync_server.schema_cases import cases
    from sync_server.schema_figures import figures_daily
    from sync_server.schema_outbox import outbox

    provision(engine)
    Ingestor(engine).process(EV, batch([signed(1, 1)], number=1))
    monkeypatch.setattr(ingest, "_stored_sigs", lambda conn, ids: {})  # the bug
    outcomes = Ingestor(engine).process_many(
        [(EV, batch([signed(1, 1), signed(2, 5)], number=2), False),
         (EV, batch([signed(3, 4)], number=3), False)]
    )  # fmt: skip
    assert [(sorted(o.stored), sorted(o.duplicates)) for o in outcomes] == [([2], [1]), ([3], [])]
    with engine.connect() as conn:
        f = figures_daily.c
        counted = conn.execute(
            select(f.n1, f.n4, f.n5).where(f.dim == "unit", f.channel == "keypad")
        ).all()
        assert [tuple(row) for row in counted] == [(1, 1, 1)]
        assert conn.execute(select(cases.c.record_id)).scalars().all() == ["kp-01:1"]
        refs = conn.execute(select(outbox.c.ref).order_by(outbox.c.ref)).scalars().all()
        assert refs == ["kp-01:1", "kp-01:2", "kp-01:3"]


def test_only_a_batch_of_a_cached_device_that_verifies_is_prepared_early(engine):
    provision(engine)
    ingestor = Ingestor(engine)
    good = batch([signed(1), signed(2, 1)])
    assert ingestor.prepare(EV, good) is None, "kp-01 is not cached yet"
    ingestor.device(None, "kp-01")
    early = ingestor.prepare(EV, good)
    assert (early.device_id, sorted(early.plan.accepted)) == ("kp-01", ["kp-01:1", "kp-01:2"])
    assert ingestor.prepare(EV, batch([forged(3)])) is None, "a failing signature waits"
    assert ingestor.prepare(EV, b"not json") is None
    assert ingestor.prepare(STATUS, messages.encode(messages.status(True))) is None
    assert ingestor.prepare("hcp/v1/dev/kp-01", good) is None


def test_a_batch_prepared_with_a_device_read_again_since_is_decided_again(engine):
    provision(engine)
    ingestor = Ingestor(engine)
    ingestor.device(None, "kp-01")
    items = [(EV, batch([signed(1)]), False), (EV, batch([signed(2)], number=2), False)]
    prepared = [ingestor.prepare(topic, payload) for topic, payload, _ in items]
    assert all(p is not None and p.plan.accepted for p in prepared)
    # provisioned again with another key, and a status made the ingest read it again
    with engine.begin() as conn:
        conn.execute(
            db.devices.update().where(db.devices.c.device_id == "kp-01").values(key_hex=OTHER_KEY)
        )
    ingestor.forget("kp-01")
    outcomes = ingestor.process_many(items, prepared)
    assert [o.stored for o in outcomes] == [[], []]
    assert [o.quarantined for o in outcomes] == [
        ["sig: does not verify with the key of device 'kp-01'"]
    ] * 2
    assert snapshot(engine)[0] == []


def test_a_record_the_database_refuses_in_a_group_costs_only_itself(engine):
    provision(engine)
    # an earlier import holds (kp-01, 3) under another id: the database refuses seq 3
    add_evaluation(engine, "web/legacy-3", 4, device_id="kp-01", seq=3, channel="web")
    items = [
        (EV, batch([signed(1), signed(2)], number=1), False),
        (EV, batch([signed(3), signed(4)], number=2), False),
        (EV, batch([signed(5)], number=3), False),
    ]
    outcomes = Ingestor(engine).process_many(items)
    acks = [messages.decode(o.ack_payload, messages.ACK) for o in outcomes]
    assert [(a["stored"], a["quarantined"]) for a in acks] == [
        ([1, 2], []),
        ([4], [3]),
        ([5], []),
    ]
    rows, held = snapshot(engine)
    assert [r.id for r in rows] == ["kp-01:1", "kp-01:2", "kp-01:4", "kp-01:5", "web/legacy-3"]
    assert held == [("kp-01", "kp-01:3", "database: refused the record (IntegrityError)")]


def test_an_unforeseen_error_in_a_group_sets_aside_only_its_message(engine, monkeypatch):
    provision(engine)
    ingestor = Ingestor(engine)
    process = ingestor.process

    def failing_on_boom(topic, payload, retained=False):
        if payload == b"boom":
            raise RuntimeError("boom")
        return process(topic, payload, retained)

    decide = ingestor._decide

    def decide_failing_on_boom(conn, topic, payload, retained, received_at):
        if payload == b"boom":
            raise RuntimeError("boom")
        return decide(conn, topic, payload, retained, received_at)

    monkeypatch.setattr(ingestor, "process", failing_on_boom)
    monkeypatch.setattr(ingestor, "_decide", decide_failing_on_boom)
    outcomes = ingestor.process_many(
        [(EV, batch([signed(1)]), False), (EV, b"boom", False), (EV, batch([signed(2)]), False)]
    )
    assert [o.error for o in outcomes] == [False, True, False]
    assert [o.stored for o in outcomes] == [[1], [], [2]]
    assert snapshot(engine)[1] == [(None, None, "ingest error: RuntimeError")]


def test_a_lost_database_fails_the_whole_group(engine, monkeypatch):
    provision(engine)
    ingestor = Ingestor(engine)
    calls = []

    def lose_the_database(conn, rows):
        # every message of the group is decided and its records inserted by now
        calls.append(sorted(row["id"] for row in rows))
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(features, "after_store", lose_the_database)
    with pytest.raises(OperationalError):
        ingestor.process_many(
            [(EV, batch([signed(1)]), False), (EV, batch([signed(2)], number=2), False)]
        )
    assert calls == [["kp-01:1", "kp-01:2"]]
    assert snapshot(engine) == ([], []), "nothing of the group is committed"


# --- the service --------------------------------------------------------------------------------


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.broker
def test_the_service_commits_what_waits_as_one_group_and_acks_after(secured_broker, tmp_path):
    """On Mosquitto with access control on (amqtt open): the collector and
    the device each log in with their own login."""
    import paho.mqtt.client as mqtt

    from tests.harness.broker import assert_access_control, device_login

    broker = secured_broker
    engine = db.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    db.init(engine)
    provision(engine)
    broker.allow(db.device_keys(engine))  # the devices provisioned are let in (a reload)
    assert_access_control(broker, ("kp-01", KEY_HEX))
    user, password = broker.collector_login()
    service = IngestService(engine, broker.host, broker.port, client_id="collector-group",
                            username=user, password=password)  # fmt: skip
    gate = threading.Event()
    sizes = []
    process_many = service.ingestor.process_many

    taken, early = [], []
    prepare = service.ingestor.prepare

    def counted_prepare(topic, payload):
        taken.append(topic)
        return prepare(topic, payload)

    def held_at_the_gate(items, prepared=None):
        gate.wait(20)  # the first group holds the worker while the others queue up
        sizes.append(len(items))
        early.append(sum(p is not None for p in prepared or ()))
        return process_many(items, prepared)

    assert service.ingestor.device(None, "kp-01") is not None  # cached, as after a first batch
    service.ingestor.prepare = counted_prepare
    service.ingestor.process_many = held_at_the_gate
    acks = []
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kp-01-test")
    if broker.access_control:
        device.username_pw_set(*device_login("kp-01", KEY_HEX))
    device.on_message = lambda _c, _u, m: acks.append(messages.decode(m.payload, messages.ACK))
    device.connect(broker.host, broker.port)
    device.loop_start()
    device.subscribe(topics.topic("kp-01", topics.DOWN_ACK), 1)[0]
    service.start()
    try:
        for n in range(1, 16):
            device.publish(EV, batch([signed(n)], number=n), qos=1).wait_for_publish(5)
        wait_for(
            lambda: len(taken) + service._queue.qsize() == 15,
            what="every message at the collector (verified, or waiting to be)",
        )
        assert acks == [], "nothing is acked before its commit"
        gate.set()
        wait_for(lambda: len(acks) == 15, what="every ack")
        assert sum(sizes) == 15 and max(sizes) > 1 and service.groups >= 1
        # the device was known (cached): every batch was decoded and verified
        # ahead of its transaction
        assert sum(early) == 15 and len(taken) == 15
        assert sorted(a["stored"][0] for a in acks) == list(range(1, 16))
        assert service.records_stored == 15 and service.messages_seen == 15
    finally:
        gate.set()
        service.stop()
        device.disconnect()
        device.loop_stop()
        engine.dispose()
    assert len(snapshot(engine)[0]) == 15
    assert KEY  # the device key signed every record the collector stored


def test_the_service_sends_at_once_without_nagle(secured_broker, tmp_path):
    """An ack published right behind a PUBACK must not wait for the broker's
    delayed TCP ack (about 40 ms on the latency bench): the collector's
    connection has TCP_NODELAY, set on each connection paho opens."""
    import socket

    broker = secured_broker
    engine = db.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    db.init(engine)
    user, password = broker.collector_login()
    service = IngestService(engine, broker.host, broker.port, client_id="collector-nodelay",
                            username=user, password=password)  # fmt: skip
    service.start()
    try:
        sock = service.client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        service.stop()
        engine.dispose()


def keypads_draining():
    """Three keypads draining at once, each sending a status after each ack:
    their batches and statuses interleaved. kp-01's first status does not know
    its seqs (the answer must see its batch stored before it), and a batch of
    kp-01 follows its status (it must see what the status did)."""
    kp02 = bytes.fromhex(OTHER_KEY)
    kp02_topic = topics.topic("kp-02", topics.UP_EV)
    kp02_status = topics.topic("kp-02", topics.UP_STATUS)

    def status(boot, **fields):
        return messages.encode(messages.status(True, boot_id=boot, **fields))

    return [
        (EV, batch([signed(1, 5), signed(2, 1)]), False),
        (STATUS, status("b00t"), False),  # no last_seq: told the highest held, 2
        (kp02_topic, batch([signed(1, 2, device_id="kp-02", key=kp02)], device_id="kp-02"), False),
        (kp02_status, status("b02", last_seq=1), False),
        (EV, batch([signed(3, 4)], number=2), False),  # kp-01 again: its status decided first
        (STATUS, status("b00t", last_seq=3), False),
    ]


def test_statuses_wait_for_the_end_of_a_run_and_decide_as_one_at_a_time(engine, tmp_path):
    reference = db.make_engine(f"sqlite:///{tmp_path / 'one-by-one.db'}")
    db.init(reference)
    provision(reference)
    provision(engine)
    alone = [Ingestor(reference).process(*item) for item in keypads_draining()]
    ingestor = Ingestor(engine)
    runs = []
    store_run = ingestor._store_run

    def counted(conn, run, *args):
        runs.append([index for index, *_ in run])
        return store_run(conn, run, *args)

    ingestor._store_run = counted
    grouped = ingestor.process_many(keypads_draining())
    assert decisions(grouped) == decisions(alone)
    assert snapshot(engine) == snapshot(reference)
    seq_answer = messages.decode(grouped[1].ack_payload, messages.SEQ)
    assert seq_answer["highest"] == 2  # kp-01's first batch was stored before its status
    # the statuses split no run but kp-01's, at its next batch (one at a time
    # at their places, each batch was a run of its own: [[0], [2], [4]])
    assert runs == [[0, 2], [4]]
    reference.dispose()
