"""A wiped board never reuses a seq (docs/protocol.md §3.6).

A store that opens without its state does not know which seqs it used: its
status leaves out `last_seq`, it refuses to rate, and the collector answers
on down/seq with the highest seq it holds for the device (stored or kept
aside), signed and bound to the boot that asked. The device moves past it.
"""

import json

import pytest

from device.app import SEQ_TEXT, KeypadApp
from device.store import SeqUnknown, Store, seed
from device.sync import Sync
from protocols import messages, sign, topics
from sync_server import db
from sync_server.ingest import Ingestor, seqs_held
from tests.harness.records import KEY, KEY_HEX, batch, signed

EV = topics.topic("kp-01", topics.UP_EV)
STATUS = topics.topic("kp-01", topics.UP_STATUS)
SEQ = topics.topic("kp-01", topics.DOWN_SEQ)


# --- the store ---------------------------------------------------------------------------------


def test_a_store_without_state_is_unknown_and_refuses_records(tmp_path):
    store = Store(str(tmp_path / "wiped"))
    assert store.known is False
    with pytest.raises(SeqUnknown, match="seq unknown: waiting for the collector"):
        store.add(signed(1))
    assert len(store) == 0 and store.next_seq == 1
    assert Store(str(tmp_path / "wiped")).known is False, "unknown until the collector answers"


def test_learning_moves_past_the_highest_seq_and_takes_the_counts(tmp_path):
    store = Store(str(tmp_path))
    assert store.learn(41, {"1": 3, "5": 30}) is True
    assert store.known and store.next_seq == 42
    assert store.counts == {"1": 3, "2": 0, "3": 0, "4": 0, "5": 30}
    store.add(signed(42, 5))
    again = Store(str(tmp_path))
    assert again.known and again.next_seq == 43 and again.counts["5"] == 31


def test_a_known_store_never_moves_back_nor_takes_counts(tmp_path):
    seed(str(tmp_path), next_seq=10)
    store = Store(str(tmp_path))
    assert store.learn(3, {"5": 99}) is False
    assert store.next_seq == 10 and store.counts["5"] == 0
    assert store.learn(20) is True, "an old flash image: the collector holds more"
    assert store.next_seq == 21


def test_a_state_file_of_older_firmware_counts_as_known(tmp_path):
    (tmp_path / "state").write_text('{"counts": {"5": 2}, "next_seq": 3}')
    store = Store(str(tmp_path))
    assert store.known and store.next_seq == 3


def test_seed_writes_the_first_state_only_once(tmp_path):
    assert seed(str(tmp_path / "d"), next_seq=5) is True
    assert seed(str(tmp_path / "d"), next_seq=1) is False
    assert Store(str(tmp_path / "d")).next_seq == 5


def test_a_wiped_keypad_shows_why_it_refuses_and_makes_no_record(tmp_path):
    app = KeypadApp("kp-01", KEY, Store(str(tmp_path)), lambda: (1764145800, "ntp"), "b00t")
    assert app.screen() == (SEQ_TEXT,)
    for key in range(5):  # the same for every level
        assert app.press(key, 100 + key) is None
        assert app.state == "idle"
    app.store.learn(7)
    record = app.press(1, 1000)
    assert record["id"] == "kp-01:8" and record["seq"] == 8


# --- the device's sync -------------------------------------------------------------------------


class Wire:
    """The MQTT client's surface Sync uses, recording what it publishes."""

    connected = False
    session_present = True

    def __init__(self):
        self.published = []
        self.subscribed = []
        self.callback = None

    def set_callback(self, fn):
        self.callback = fn

    def set_will(self, *args, **kwargs):
        pass

    def subscribe(self, topic, qos):
        self.subscribed.append(topic)

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, json.loads(payload)))

    def ensure_connected(self, now_ms):
        self.connected = True
        return True

    def check_msg(self):
        pass

    def deliver(self, topic, msg):
        self.callback(topic, msg, False)


def wiped_sync(tmp_path):
    wire = Wire()  # the first step() makes a fresh connection
    sync = Sync(wire, Store(str(tmp_path)), "kp-01", KEY, boot_id="b00t", ack_timeout_ms=5000)
    return wire, sync


def test_an_unknown_store_asks_in_its_status_and_learns_from_a_signed_answer(tmp_path):
    wire, sync = wiped_sync(tmp_path)
    sync.step(0)
    assert topics.topic("kp-01", topics.DOWN_SEQ) in wire.subscribed
    (topic, status), *_ = wire.published
    assert topic == STATUS and "last_seq" not in status
    sync.step(4000)
    assert len(wire.published) == 1
    sync.step(5000)
    assert len(wire.published) == 2, "asked again after the ack timeout while unknown"
    answer = messages.encode_signed(messages.seq("b00t", 57, {"2": 1, "5": 50}), KEY)
    wire.deliver(SEQ, answer)
    assert sync.store.known and sync.store.next_seq == 58 and sync.bad_messages == 0
    sync.step(6100)
    assert wire.published[-1][1]["last_seq"] == 57


@pytest.mark.parametrize(
    "answer",
    [
        messages.encode_signed(messages.seq("0ther", 57), KEY),  # another boot's answer
        messages.encode_signed(messages.seq("b00t", 57), b"x" * 32),  # another key
        messages.encode(messages.seq("b00t", 57)),  # unsigned
    ],
)
def test_a_seq_answer_for_another_boot_or_unsigned_is_ignored(tmp_path, answer):
    wire, sync = wiped_sync(tmp_path)
    wire.deliver(SEQ, answer)
    assert sync.bad_messages == 1 and sync.store.known is False


def test_a_seq_answer_on_another_topic_is_ignored(tmp_path):
    wire, sync = wiped_sync(tmp_path)
    wire.deliver(
        topics.topic("kp-01", topics.DOWN_ACK),
        messages.encode_signed(messages.seq("b00t", 57), KEY),
    )
    assert sync.bad_messages == 1 and sync.store.known is False


# --- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        ({"v": 1, "t": "seq", "highest": 3}, "seq.boot_id: must be a string of 1..32"),
        ({"v": 1, "t": "seq", "boot_id": "b", "highest": -1}, "seq.highest: must be an integer"),
        (
            {"v": 1, "t": "seq", "boot_id": "b", "highest": 2**31},
            "seq.highest: must be an integer 0..2147483647",
        ),
        (
            {"v": 1, "t": "seq", "boot_id": "b", "highest": 1, "counts": {"6": 1}},
            "seq.counts: must map stars 1..5 to counts",
        ),
    ],
)
def test_a_malformed_seq_answer_is_refused_with_its_field(msg, error):
    with pytest.raises(messages.MessageError, match=error.replace(".", r"\.")):
        messages.check(msg)


# --- the collector -----------------------------------------------------------------------------


@pytest.fixture
def ingestor(engine):
    db.add_device(engine, "kp-01", KEY_HEX)
    return Ingestor(engine)


def answer_of(outcome):
    assert outcome.ack_topic == SEQ
    answer = messages.decode(outcome.ack_payload, messages.SEQ)
    assert sign.verify(answer, KEY), "the answer is signed with the device's key"
    del answer["sig"]
    return answer


def status(**fields):
    return messages.encode(messages.status(True, boot_id="b00t", **fields))


def test_the_collector_tells_a_wiped_device_the_highest_seq_it_holds(engine, ingestor):
    ingestor.process(EV, batch([signed(1, 5), signed(2, 1), signed(5, 5)]))
    # a record kept aside under the device's own id counts too: its seq was used
    bad = signed(9, 4)
    bad["sig"] = "00" * 32
    ingestor.process(EV, batch([bad], number=2))
    outcome = ingestor.process(STATUS, status(queue=0))
    assert answer_of(outcome) == messages.seq("b00t", 9, {"1": 1, "2": 0, "3": 0, "4": 0, "5": 2})


def test_seqs_noted_lost_with_a_board_are_never_handed_out_again(engine, ingestor):
    from sync_server.schema_fleet import fleet_seq_gaps

    ingestor.process(EV, batch([signed(1, 5), signed(2, 1)]))
    with engine.begin() as conn:  # re-provisioning noted 3..7 lost with the old board
        conn.execute(
            fleet_seq_gaps.insert().values(device_id="kp-01", first_seq=3, last_seq=7,
                                           cause="lost_with_board", noted_at=db.utc_now(),
                                           noted_by="tech")
        )  # fmt: skip
    # the new board lost its store again before storing anything: it starts after the gap
    outcome = ingestor.process(STATUS, status(queue=0))
    assert answer_of(outcome) == messages.seq("b00t", 7, {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1})


def test_a_new_device_is_told_zero(engine, ingestor):
    assert answer_of(ingestor.process(STATUS, status())) == messages.seq(
        "b00t", 0, {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
    )


def test_a_device_that_knows_its_seqs_gets_no_answer_unless_it_is_behind(engine, ingestor):
    ingestor.process(EV, batch([signed(1), signed(2)]))
    assert ingestor.process(STATUS, status(last_seq=2)).ack_topic is None
    assert ingestor.process(STATUS, status(last_seq=5)).ack_topic is None
    behind = ingestor.process(STATUS, status(last_seq=1))  # an old flash image put back
    assert answer_of(behind)["highest"] == 2


def test_no_answer_without_a_boot_id_to_bind_it_to_or_for_the_will(engine, ingestor):
    no_boot = messages.encode(messages.status(True))
    assert ingestor.process(STATUS, no_boot).ack_topic is None
    will = messages.encode(messages.status(False, boot_id="b00t"))
    assert ingestor.process(STATUS, will).ack_topic is None


def test_an_unknown_device_gets_no_answer(engine, ingestor):
    other = topics.topic("kp-99", topics.UP_STATUS)
    assert ingestor.process(other, status()).ack_topic is None


def test_seqs_held_ignores_ids_that_only_look_alike(engine, ingestor):
    db.add_device(engine, "kp_01", KEY_HEX)
    # kp_01's topic carries a record claiming kpX01: kept aside, not kp_01's seq
    claim = signed(70, device_id="kpX01")
    ingestor.process(topics.topic("kp_01", topics.UP_EV), batch([claim], device_id="kp_01"))
    with engine.connect() as conn:
        assert seqs_held(conn, "kp_01")[0] == 0


def test_a_boot_found_level_is_not_asked_again_until_it_reports_fewer(engine, ingestor):
    """seqs_held reads every rating of the device: a status of a boot already
    found level with the seqs held, reporting no fewer, is not asked about
    again (a keypad sends one after each ack). A new boot or fewer seqs is."""
    ingestor.process(EV, batch([signed(1), signed(2)]))
    assert ingestor.process(STATUS, status(last_seq=2)).ack_topic is None
    # seq 9 held without the device having sent it (the rule's limit: what is
    # held for a boot came from it), so the next answers show whether it asked
    ingestor.process(EV, batch([signed(9)], number=2))
    assert ingestor.process(STATUS, status(last_seq=3)).ack_topic is None  # same boot: not asked
    assert ingestor.process(STATUS, status(last_seq=2)).ack_topic is None  # as many as found level
    assert answer_of(ingestor.process(STATUS, status(last_seq=1)))["highest"] == 9  # fewer
    new_boot = messages.encode(messages.status(True, boot_id="b00t-2", last_seq=3))
    answer = messages.decode(ingestor.process(STATUS, new_boot).ack_payload, messages.SEQ)
    assert (answer["boot_id"], answer["highest"]) == ("b00t-2", 9)


def test_a_status_keeps_the_cached_key_unless_it_changed(engine, ingestor):
    ingestor.process(EV, batch([signed(1)]))
    cached = ingestor.device(None, "kp-01")
    ingestor.process(STATUS, status(last_seq=1))
    # the same object: a batch prepare verified with it is not verified again
    assert ingestor.device(None, "kp-01") is cached
    new_key = bytes(range(32))
    db.update_device(engine, "kp-01", key_hex=new_key.hex())  # re-provisioned
    outcome = ingestor.process(STATUS, status())  # the new board does not know its seqs
    assert ingestor.device(None, "kp-01").key == new_key
    answer = messages.decode(outcome.ack_payload, messages.SEQ)
    assert sign.verify(answer, new_key) and not sign.verify(answer, KEY)
