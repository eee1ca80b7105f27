"""Device-side sync rules that the end-to-end tests cannot aim at directly."""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.store import Store
from device.sync import Sync
from protocols import canonical, messages, sign, topics
from tests.harness.records import seeded

KEY = b"k" * 32


def signed(msg, key=KEY):
    return messages.encode_signed(msg, key)


class RecordingClient:
    """Only records what Sync asks of an MQTT client; no network."""

    connected = True
    session_present = True

    def __init__(self):
        self.published = []
        self.callback = None

    def set_callback(self, fn):
        self.callback = fn

    def set_will(self, *args, **kwargs):
        self.will = args

    def ensure_connected(self, now_ms):
        return True

    def check_msg(self):
        pass

    def publish(self, topic, payload, qos=1, retain=False):
        self.published.append((topic, messages.decode(payload)))

    def publish_stream(self, topic, length, chunks, qos=1, retain=False):
        payload = b"".join(bytes(c) for c in chunks)
        assert len(payload) == length
        self.publish(topic, payload, qos, retain)

    def subscribe(self, topic, qos=1):
        pass


def make(tmp_path, count=3):
    store = Store(seeded(tmp_path))
    for seq in range(1, count + 1):
        store.add({"id": f"kp-01:{seq}", "device_id": "kp-01", "seq": seq, "stars": 5})
    client = RecordingClient()
    return store, client, Sync(client, store, "kp-01", KEY, batch_size=2, ack_timeout_ms=1000)


def batches(client):
    return [m for t, m in client.published if t.endswith("/up/ev")]


def test_an_ack_for_another_device_is_ignored(tmp_path):
    store, client, sync = make(tmp_path)
    sync.step(0)
    ack = signed(messages.ack(1, [1, 2]))
    client.callback(topics.topic("kp-02", topics.DOWN_ACK), ack, False)
    assert len(store) == 3 and sync.bad_messages == 1
    client.callback(topics.topic("kp-01", topics.DOWN_ACK), ack, False)
    assert len(store) == 1 and sync.bad_messages == 1


@pytest.mark.parametrize(
    "payload",
    [
        messages.encode(messages.ack(1, [1, 2, 3])),  # not signed
        signed(messages.ack(1, [1, 2, 3]), key=b"x" * 32),  # signed with another key
        signed(messages.config(1, window_id="A01")),  # signed, but not an ack
    ],
    ids=["unsigned", "wrong-key", "wrong-type"],
)
def test_a_forged_ack_cannot_make_the_device_forget_records(tmp_path, payload):
    store, client, sync = make(tmp_path)
    client.callback(topics.topic("kp-01", topics.DOWN_ACK), payload, False)
    assert len(store) == 3 and sync.bad_messages == 1


def test_one_batch_in_flight_and_a_resend_after_the_ack_timeout(tmp_path):
    _store, client, sync = make(tmp_path)
    sync.step(0)
    sync.step(500)  # still waiting for the ack
    assert [[r["seq"] for r in b["records"]] for b in batches(client)] == [[1, 2]]
    sync.step(1000)  # no ack within 1 s: the same records again
    assert [[r["seq"] for r in b["records"]] for b in batches(client)] == [[1, 2], [1, 2]]


def test_a_bad_ack_is_counted_not_fatal(tmp_path):
    store, client, sync = make(tmp_path)
    client.callback(topics.topic("kp-01", topics.DOWN_ACK), b"{not json", False)
    assert sync.bad_messages == 1 and len(store) == 3


def test_a_broken_config_is_counted_and_the_last_good_one_kept(tmp_path):
    _store, client, sync = make(tmp_path)
    applied = []
    sync.on_config = applied.append
    topic = topics.topic("kp-01", topics.DOWN_CONFIG)
    good = messages.config(1, window_id="A01")
    client.callback(topic, signed(good), True)
    bad = {"v": 1, "t": "config", "version": 2, "tags": [[9, "x", "y"]]}
    bad["sig"] = sign.sign(bad, KEY)  # signed, but breaks the rules
    client.callback(topic, canonical.dumps(bad), True)
    assert applied == [dict(good, sig=sign.sign(good, KEY))] and sync.bad_messages == 1
    assert sync.status()["bad_messages"] == 1


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([topics.DOWN_ACK, topics.DOWN_CONFIG, topics.DOWN_CMD]),
    payload=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda t, extra: json.dumps({"v": 1, "t": t, **extra}).encode(),
            st.sampled_from(["ack", "config", "cmd"]),
            st.dictionaries(
                st.sampled_from(
                    [
                        "batch",
                        "stored",
                        "quarantined",
                        "version",
                        "tags",
                        "id",
                        "cmd",
                        "args",
                        "window_id",
                        "content_version",
                    ]
                ),
                st.recursive(
                    st.none() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3),
                    max_leaves=6,
                ),
            ),
        ),
    ),
)
def test_no_incoming_message_can_stop_the_device(kind, payload):
    with tempfile.TemporaryDirectory() as folder:
        store, client, sync = make(Path(folder))
        sync.on_config = lambda config: None
        client.callback(topics.topic("kp-01", kind), payload, False)  # must not raise
        assert len(store) <= 3


def test_a_status_extra_out_of_range_leaves_the_extras_off_not_the_status(tmp_path):
    store, client, sync = make(tmp_path)
    sync.status_extra = lambda: {"signal": 12, "boot_id": "b1"}  # a port's odd RSSI
    sync.step(0)
    (status,) = [m for t, m in client.published if t.endswith("/up/status")]
    assert status["last_seq"] == 3 and "signal" not in status and "boot_id" not in status
    assert sync.bad_status == 1


def test_sync_timers_survive_the_tick_wrap(tmp_path, monkeypatch):
    import device.sync as sync_module

    period = 1 << 30  # a board's ticks_ms wraps here (about 12.4 days)
    monkeypatch.setattr(
        sync_module,
        "ticks_diff",
        lambda a, b: ((a - b + period // 2) % period) - period // 2,
    )
    store, client, sync = make(tmp_path)
    sync.step(period - 500)  # a batch goes out just before the wrap
    assert len(batches(client)) == 1
    sync.step(300)  # 800 ms later, after the wrap: the ack is not yet overdue
    assert len(batches(client)) == 1
    sync.step(700)  # 1,200 ms later: overdue, sent again
    assert len(batches(client)) == 2


# --------------------------------------------------------------------------
# A command that arrives between our PUBLISH and its PUBACK (real client)


def _broker(cmd_payload, ack_cmdres=True):
    """A scripted broker: answers the batch with a command first, then its PUBACK."""
    from tests.test_device_mqtt import connack, puback, publish_pkt, suback

    def reply(data):
        kind = data[0] & 0xF0
        if kind == 0x10:
            return connack()
        if kind == 0x80:
            return suback((data[2] << 8) | data[3], 1)
        if kind != 0x30:
            return None
        pos, length, shift = 1, 0, 0
        while True:
            length |= (data[pos] & 0x7F) << shift
            pos += 1
            shift += 7
            if not data[pos - 1] & 0x80:
                break
        size = (data[pos] << 8) | data[pos + 1]
        topic = data[pos + 2 : pos + 2 + size].decode()
        pid = (data[pos + 2 + size] << 8) | data[pos + 3 + size]
        if topic.endswith("/up/ev"):
            cmd = publish_pkt(topics.topic("kp-01", topics.DOWN_CMD), cmd_payload, 1, pid=77)
            return cmd + puback(pid)
        if topic.endswith("/up/cmdres") and not ack_cmdres:
            return None
        return puback(pid)

    return reply


def _real_client(tmp_path, reply):
    from device.mqtt import MQTTClient
    from tests.test_device_mqtt import FakeSocket

    store = Store(seeded(tmp_path))
    for seq in (1, 2, 3):
        store.add({"id": f"kp-01:{seq}", "device_id": "kp-01", "seq": seq, "stars": 5})
    sockets = [FakeSocket(reply)]
    client = MQTTClient("kp-01", "broker.invalid", timeout_ms=200)
    client._open_socket = lambda: (
        sockets[-1] if not sockets[-1].closed else sockets.append(FakeSocket(reply)) or sockets[-1]
    )
    sock = sockets[0]
    sync = Sync(client, store, "kp-01", KEY, status_every_ms=10**9)
    return sync, client, sock


def _sent_topics(sock):
    out = []
    for d in sock.sent:
        if d[0] & 0xF0 != 0x30:
            continue
        pos = 1
        while d[pos] & 0x80:
            pos += 1
        size = (d[pos + 1] << 8) | d[pos + 2]
        out.append(bytes(d[pos + 3 : pos + 3 + size]).decode())
    return out


def test_a_command_between_our_publish_and_its_puback_is_answered_after_it(tmp_path):
    cmd = signed(messages.command("c-1", "status"))
    sync, client, sock = _real_client(tmp_path, _broker(cmd))
    assert sync.step(0) is True  # connects, subscribes, status, the batch (and the command)
    assert sync.batches_sent == 1 and client.connected
    assert sync.step(300) is True  # the queued command is handled now
    assert any(t.endswith("/up/cmdres") for t in _sent_topics(sock))
    assert sync.bad_messages == 0 and client.connected


def test_a_command_whose_answer_gets_no_puback_does_not_stop_the_loop(tmp_path):
    cmd = signed(messages.command("c-1", "status"))
    sync, client, sock = _real_client(tmp_path, _broker(cmd, ack_cmdres=False))
    assert sync.step(0) is True
    sync.step(300)  # the answer's PUBACK never comes: the link closes, no crash
    assert not client.connected
    assert sync.step(1000) is False  # a link that lasted a moment: the backoff waits
    assert sync.step(2300) is True  # and then it comes back
