"""A batch streamed from the journal is byte for byte the batch messages.encode builds.

device/sync.py never holds a whole batch in RAM: it sends a fixed prefix, each
record's canonical bytes read from the journal one at a time, the commas and
the suffix, after a PUBLISH header whose remaining length it computed first.
These tests compare those bytes with messages.encode(messages.batch(...)) for
random records, on CPython and under the real MicroPython interpreter, and
the PUBLISH packet with the one publish() builds from the whole payload."""

import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.mqtt import MQTTError
from device.store import Store
from device.sync import batch_stream
from protocols import messages
from tests.harness import records
from tests.harness.records import seeded
from tests.test_device_mqtt import broker_reply, connected_client, puback

TOPIC = "hcp/v1/dev/kp-01/up/ev"

# text with what canonical JSON escapes, Chinese, and characters above the BMP
TEXT = st.text(
    alphabet=st.one_of(st.sampled_from('"\\\x00\x1f\x7f/é好差评😀'), st.characters(codec="utf-8")),
    max_size=12,
)
EXTRA = st.dictionaries(
    st.sampled_from(["comment", "case_no", "staff_id", "tags", "zeta", "A", "ä"]),
    st.one_of(
        TEXT,
        st.integers(-(2**31), 2**31 - 1),
        st.booleans(),
        st.none(),
        st.lists(TEXT, max_size=3),
    ),
    max_size=4,
)


def fill(folder, extras, stars):
    store = Store(seeded(folder))
    for seq, (extra, level) in enumerate(zip(extras, stars, strict=False), start=1):
        store.add(records.signed(seq, level, **extra))
    return store


def streamed(store, number, limit, device_id="kp-01"):
    plan = store.batch_plan(limit)
    length, chunks = batch_stream(store, device_id, number, plan)
    data = b"".join(bytes(c) for c in chunks)
    assert len(data) == length
    return data


@settings(max_examples=150, deadline=None)
@given(
    extras=st.lists(EXTRA, min_size=1, max_size=12),
    stars=st.lists(st.integers(1, 5), min_size=12, max_size=12),
    number=st.integers(0, 2**31 - 1),
    limit=st.integers(1, 15),
    acked=st.sets(st.integers(1, 12), max_size=6),
)
def test_streamed_batch_equals_messages_encode(extras, stars, number, limit, acked):
    with tempfile.TemporaryDirectory() as folder:
        store = fill(folder, extras, stars[: len(extras)])
        store.remove(sorted(acked))
        if not len(store):
            assert store.batch_plan(limit) == []
            return
        expected = messages.encode(messages.batch("kp-01", number, store.pending(limit)))
        assert streamed(store, number, limit) == expected


def test_the_key_order_of_the_batch_object_is_canonical(tmp_path):
    store = fill(str(tmp_path), [{}, {}], [5, 1])
    data = streamed(store, 7, 50, device_id="kp-0_1")
    assert data.startswith(b'{"batch":7,"device_id":"kp-0_1","records":[{')
    assert data.endswith(b'}],"t":"ev","v":1}')
    assert data == messages.encode(messages.batch("kp-0_1", 7, store.pending(50)))


@pytest.mark.parametrize("count", [1, 3, 60])
def test_the_streamed_publish_packet_is_the_whole_one(tmp_path, count):
    store = fill(str(tmp_path), [{"comment": "好" * 40}] * count, [1, 5, 3] * 20)
    client, sock = connected_client(broker_reply(ack_publish=False))
    sock.reply = None  # a long packet goes out in several writes: acks fed below
    sock.feed(puback(1) + puback(1))
    plan = store.batch_plan(50)
    length, chunks = batch_stream(store, "kp-01", 3, plan)
    client.publish_stream(TOPIC, length, chunks, 1)
    streamed_packet = sock.out
    sock.sent.clear()
    payload = messages.encode(messages.batch("kp-01", 3, store.pending(50)))
    client._pid -= 1
    client.publish(TOPIC, payload, 1)
    assert streamed_packet == sock.out
    assert client.connected


@pytest.mark.parametrize("given", [b"x" * 9, b"x" * 11])
def test_a_source_that_breaks_its_length_closes_the_connection(given):
    client, sock = connected_client(broker_reply(ack_publish=False))
    with pytest.raises(MQTTError, match="not the 10 announced"):
        client.publish_stream(TOPIC, 10, [given[:5], given[5:]], 1)
    assert not client.connected and sock.closed


def test_a_record_damaged_on_flash_is_left_out_before_the_length_is_fixed(tmp_path):
    store = fill(str(tmp_path), [{}, {}, {}], [5, 5, 5])
    journal = tmp_path / "journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"stars":5', b'"stars":4')  # bit rot: CRC fails
    journal.write_bytes(b"".join(lines))
    data = streamed(store, 1, 50)
    assert [r["seq"] for r in messages.decode(data)["records"]] == [1, 3]
    assert len(store) == 2


def test_a_record_changed_between_plan_and_send_stops_the_stream(tmp_path):
    store = fill(str(tmp_path), [{}, {}], [5, 5])
    plan = store.batch_plan(50)
    store.remove([2])
    _length, chunks = batch_stream(store, "kp-01", 1, plan)
    client, sock = connected_client(broker_reply(ack_publish=False))
    with pytest.raises(OSError, match="record 2 changed"):
        client.publish_stream(TOPIC, _length, chunks, 1)
    assert not client.connected and sock.closed
    assert len(sock.out) < 2 + 2 + len(TOPIC) + 2 + _length  # the packet was cut short


MICROPYTHON = r"""
import os, random
from device.store import Store, seed
from device.sync import batch_stream
from device import mqtt
from protocols import messages

random.seed(SEED)
PIECES = ['"', '\\', '\x00', '\x1f', '\x7f', 'é', '好', '差评', '😀', 'a', 'Z', ' ', '/']


def text():
    return "".join(PIECES[random.getrandbits(4) % len(PIECES)] for _ in range(random.getrandbits(4)))


folder = "/work/s" + str(SEED)
seed(folder)
store = Store(folder)
for seq in range(1, 41):
    rec = {"id": "kp-01:" + str(seq), "device_id": "kp-01", "seq": seq,
           "stars": 1 + random.getrandbits(3) % 5, "channel": "keypad", "sig": "ab" * 32}
    for key in ("comment", "case_no", "zeta", "A"):
        if random.getrandbits(1):
            rec[key] = text()
    if random.getrandbits(1):
        rec["tags"] = [text(), text()]
    store.add(rec)
store.remove([s for s in range(1, 41) if random.getrandbits(2) == 0])
for limit in (1, 7, 50):
    number = random.getrandbits(30)
    plan = store.batch_plan(limit)
    length, chunks = batch_stream(store, "kp-01", number, plan)
    data = b"".join(bytes(c) for c in chunks)
    expected = messages.encode(messages.batch("kp-01", number, store.pending(limit)))
    print("same", limit, len(data) == length, data == expected)


class Sock:
    def __init__(self):
        self.out = []
        self.inbox = b""
    def settimeout(self, t):
        pass
    def send(self, data):
        self.out.append(bytes(data))
        return len(data)
    def recv(self, n):
        raise OSError(11)
    def close(self):
        pass


sock = Sock()
c = mqtt.MQTTClient("kp-01", "h")
c.sock = sock
c.connected = True
plan = store.batch_plan(50)
length, chunks = batch_stream(store, "kp-01", 9, plan)
c.publish_stream("hcp/v1/dev/kp-01/up/ev", length, chunks, 0)
streamed = b"".join(sock.out)
sock.out = []
c.publish("hcp/v1/dev/kp-01/up/ev", messages.encode(messages.batch("kp-01", 9, store.pending(50))), 0)
print("packet", streamed == b"".join(sock.out), max(len(x) for x in [streamed]) > 512)
"""


@pytest.mark.micropython
def test_streamed_batch_equals_messages_encode_under_micropython(micropython):
    results = micropython.many([f"SEED = {seed}\n" + MICROPYTHON for seed in (1, 2, 3)])
    for result in results:
        result.check()
        lines = result.stdout.splitlines()
        assert lines == [
            "same 1 True True",
            "same 7 True True",
            "same 50 True True",
            "packet True True",
        ], result.stdout
