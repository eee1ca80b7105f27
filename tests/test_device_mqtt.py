"""device/mqtt.py: the keypad's own MQTT 3.1.1 client.

Byte-level tests drive the client through a scripted fake socket and compare
what it sends with packets built by the small encoder below, which is written
from the MQTT 3.1.1 specification independently of device/mqtt.py. The same
scripted session also runs under the real MicroPython interpreter. End-to-end
tests use real brokers (both kinds, from tests/harness/broker.py) and a
paho-mqtt client on the other side.
"""

import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest

import device.mqtt as mqtt
from device.mqtt import MQTTClient, MQTTError
from hcp.broker import AmqttBroker, MosquittoBroker, free_port, start_broker

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# Independent encoder (MQTT 3.1.1 sections 2 and 3)


def varint(n):
    """Remaining length: base-128 digits, least significant first."""
    digits = []
    while True:
        n, digit = divmod(n, 128)
        digits.append(digit)
        if n == 0:
            break
    return bytes([d | 0x80 for d in digits[:-1]] + [digits[-1]])


def utf8(s):
    data = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack(">H", len(data)) + data


def frame(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect_pkt(client_id, keepalive=60, clean=False, will=None, user=None, password=None):
    flags = 0
    payload = utf8(client_id)
    if clean:
        flags |= 1 << 1
    if will is not None:
        topic, message, qos, retain = will
        flags |= 1 << 2
        flags |= qos << 3
        if retain:
            flags |= 1 << 5
        payload += utf8(topic) + utf8(message)
    if user is not None:
        flags |= 1 << 7
        payload += utf8(user)
    if password is not None:
        flags |= 1 << 6
        payload += utf8(password)
    header = utf8("MQTT") + struct.pack(">BBH", 4, flags, keepalive)
    return frame(0x10, header + payload)


def connack(code=0, session_present=False):
    return frame(0x20, bytes([1 if session_present else 0, code]))


def publish_pkt(topic, payload, qos=0, retain=False, pid=None, dup=False):
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = utf8(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return frame(first, body)


def puback(pid):
    return frame(0x40, struct.pack(">H", pid))


def subscribe_pkt(pid, topic, qos):
    return frame(0x82, struct.pack(">H", pid) + utf8(topic) + bytes([qos]))


def suback(pid, code):
    return frame(0x90, struct.pack(">H", pid) + bytes([code]))


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"


# --------------------------------------------------------------------------
# Fake socket


class FakeSocket:
    """Bytes in from a script, bytes out captured.

    `reply` maps each sent chunk to bytes that then become readable (the
    broker's answer); with nothing readable, recv() times out like a real
    socket (or reports "would block" when the timeout is 0). `chunk` limits
    how many bytes one recv() returns, to exercise partial reads.
    """

    def __init__(self, reply=None, chunk=None):
        self.inbox = bytearray()
        self.sent = []
        self.reply = reply
        self.chunk = chunk
        self.timeout = None
        self.closed = False
        self.eof = False

    def feed(self, data):
        self.inbox += data

    @property
    def out(self):
        return b"".join(self.sent)

    def settimeout(self, t):
        self.timeout = t

    def send(self, data):
        assert not self.closed, "send on a closed socket"
        data = bytes(data)
        self.sent.append(data)
        if self.reply is not None:
            answer = self.reply(data)
            if answer:
                self.feed(answer)
        return len(data)

    def recv(self, n):
        assert not self.closed, "recv on a closed socket"
        if not self.inbox:
            if self.eof:
                return b""
            if self.timeout == 0:
                raise BlockingIOError(11, "Resource temporarily unavailable")
            raise TimeoutError("timed out")
        n = min(n, self.chunk or n)
        data = bytes(self.inbox[:n])
        del self.inbox[:n]
        return data

    def close(self):
        self.closed = True


def broker_reply(session_present=False, connack_code=0, suback_code=None, ack_publish=True):
    """A well-behaved broker: CONNACK, PUBACK for QoS 1, SUBACK granting the QoS."""

    def reply(data):
        kind = data[0] & 0xF0
        if kind == 0x10:
            return connack(connack_code, session_present)
        if kind == 0x30 and data[0] & 0x06 and ack_publish:
            topic_len = struct.unpack(">H", data[2:4])[0]  # short packets only
            return puback(struct.unpack(">H", data[4 + topic_len : 6 + topic_len])[0])
        if kind == 0x80:
            pid = struct.unpack(">H", data[2:4])[0]
            return suback(pid, data[-1] if suback_code is None else suback_code)
        if data == PINGREQ:
            return PINGRESP
        return None

    return reply


def connack_only(data):
    """A broker that answers CONNECT and then stays silent."""
    return connack() if data[0] == 0x10 else None


def make_client(sock, **kw):
    client = MQTTClient(kw.pop("client_id", "kp-01"), "broker.invalid", **kw)
    client._open_socket = lambda: sock
    return client


def connected_client(reply=None, **kw):
    sock = FakeSocket(reply or broker_reply())
    client = make_client(sock, **kw)
    client.connect()
    sock.sent.clear()
    return client, sock


class Clock:
    def __init__(self, now=0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(1_000_000)
    monkeypatch.setattr(mqtt, "ticks_ms", fake)
    return fake


# --------------------------------------------------------------------------
# CONNECT / CONNACK


def test_connect_sends_connect_and_reads_connack():
    sock = FakeSocket(broker_reply())
    client = make_client(sock)
    assert client.connect() is False
    assert sock.out == connect_pkt("kp-01", keepalive=60, clean=False)
    assert client.connected and client.session_present is False
    assert sock.timeout == 5.0  # every later socket operation is bounded


def test_connect_reports_session_present():
    client = make_client(FakeSocket(broker_reply(session_present=True)))
    assert client.connect() is True
    assert client.session_present is True


def test_connect_with_will_user_password_and_clean_session():
    sock = FakeSocket(broker_reply())
    client = make_client(sock, user="kp-01", password="s3cret", keepalive=30)
    client.set_will("hcp/v1/dev/kp-01/up/status", b'{"online":false}', qos=1, retain=True)
    client.connect(clean_session=True)
    will = ("hcp/v1/dev/kp-01/up/status", b'{"online":false}', 1, True)
    expected = connect_pkt("kp-01", 30, True, will, "kp-01", "s3cret")
    assert sock.out == expected
    assert expected[9] == 0b11101110  # the connect flags byte, spelled out


def test_connect_with_qos0_will_without_retain():
    sock = FakeSocket(broker_reply())
    client = make_client(sock, keepalive=0)
    client.set_will("w", "gone", qos=0, retain=False)
    client.connect()
    assert sock.out == connect_pkt("kp-01", 0, False, ("w", b"gone", 0, False))


def test_password_needs_a_user():
    with pytest.raises(ValueError):
        MQTTClient("kp-01", "h", password="x")


def test_connack_refusal_has_the_code_and_reason():
    sock = FakeSocket(broker_reply(connack_code=5))
    client = make_client(sock)
    with pytest.raises(MQTTError) as err:
        client.connect()
    assert str(err.value) == "CONNACK refused: code 5 (not authorised)"
    assert not client.connected and sock.closed


def test_unknown_connack_code():
    client = make_client(FakeSocket(broker_reply(connack_code=9)))
    with pytest.raises(MQTTError, match=r"^CONNACK refused: code 9 \(unknown\)$"):
        client.connect()


def test_connack_that_never_comes_times_out():
    sock = FakeSocket()  # never answers
    client = make_client(sock)
    with pytest.raises(MQTTError) as err:
        client.connect()
    assert str(err.value) == "timeout waiting for CONNACK"
    assert not client.connected and sock.closed


def test_partial_reads_are_completed():
    sock = FakeSocket(broker_reply(session_present=True), chunk=1)
    assert make_client(sock).connect() is True


# --------------------------------------------------------------------------
# PUBLISH / PUBACK


def test_publish_qos0_with_retain_sends_and_does_not_wait():
    client, sock = connected_client(connack_only)
    assert client.publish("a/b", b"hi", qos=0, retain=True) is None
    assert sock.out == publish_pkt("a/b", b"hi", qos=0, retain=True)


def test_publish_qos1_waits_for_its_puback():
    client, sock = connected_client()
    assert client.publish("hcp/v1/dev/kp-01/up/ev", b"{}", qos=1) == 1
    assert sock.out == publish_pkt("hcp/v1/dev/kp-01/up/ev", b"{}", qos=1, pid=1)
    sock.sent.clear()
    assert client.publish("s", "状态", 1, True) == 2  # positional, str payload
    assert sock.out == publish_pkt("s", "状态".encode(), qos=1, retain=True, pid=2)
    assert not sock.inbox


def test_publish_qos1_ignores_a_stray_puback():
    client, sock = connected_client(broker_reply(ack_publish=False))
    sock.feed(puback(99) + puback(1))
    client.publish("t", b"x")
    assert client.connected and not sock.inbox


def test_publish_timeout_names_the_packet_id():
    client, sock = connected_client(broker_reply(ack_publish=False))
    client._pid = 6
    with pytest.raises(MQTTError) as err:
        client.publish("t", b"x", qos=1)
    assert str(err.value) == "timeout waiting for PUBACK of packet 7"
    assert not client.connected and sock.closed


def test_publish_needs_a_connection():
    client = make_client(FakeSocket())
    with pytest.raises(MQTTError, match="not connected"):
        client.publish("t", b"x")


def test_qos2_is_refused():
    client, _sock = connected_client()
    with pytest.raises(ValueError):
        client.publish("t", b"x", qos=2)
    with pytest.raises(ValueError):
        client.subscribe("t", qos=2)


def test_packet_ids_wrap_and_skip_zero():
    client, sock = connected_client()
    client._pid = 65534
    assert [client.publish("t", b"") for _ in range(3)] == [65535, 1, 2]
    assert sock.sent[1] == publish_pkt("t", b"", qos=1, pid=1)


def test_message_arriving_while_waiting_for_puback_is_queued_then_delivered_and_acked():
    got = []
    client, sock = connected_client(broker_reply(ack_publish=False))
    client.set_callback(lambda *a: got.append(a))
    sock.feed(publish_pkt("hcp/v1/dev/kp-01/down/ack", b"A", qos=1, pid=300) + puback(1))
    client.publish("up", b"x")
    assert got == [] and len(sock.sent) == 1  # not from inside the wait, not acked yet
    client.check_msg()
    assert got == [("hcp/v1/dev/kp-01/down/ack", b"A", False)]
    assert sock.sent[1:] == [puback(300)]


def test_publish_from_the_callback_of_a_message_that_came_during_a_wait():
    # Sync answers commands by publishing from its callback: the command came
    # while we waited for a PUBACK, so it is handled after that wait is over.
    client, sock = connected_client(broker_reply(ack_publish=False))

    def on_message(topic, payload, retained):
        sock.feed(puback(2))
        client.publish("reply", b"r")

    client.set_callback(on_message)
    sock.feed(publish_pkt("cmd", b"c", qos=1, pid=5) + puback(1))
    assert client.publish("up", b"x") == 1
    client.check_msg()
    assert sock.sent[1:] == [publish_pkt("reply", b"r", qos=1, pid=2), puback(5)]
    assert client.connected


def test_a_full_queue_drops_the_message_unacked_for_the_broker_to_resend():
    got = []
    client, sock = connected_client(broker_reply(ack_publish=False))
    client.set_callback(lambda t, p, r: got.append(p))
    for pid in range(1, 7):
        sock.feed(publish_pkt("cmd", b"%d" % pid, qos=1, pid=pid + 100))
    sock.feed(puback(1))
    client.publish("up", b"x")
    assert client.queue_dropped == 2
    for _ in range(4):
        client.check_msg()
    assert got == [b"1", b"2", b"3", b"4"]
    assert sock.sent[1:] == [puback(101), puback(102), puback(103), puback(104)]


def test_an_oversized_inbound_packet_closes_the_connection_and_is_counted():
    client, sock = connected_client()
    client.set_callback(lambda *a: pytest.fail("no callback for an oversized packet"))
    sock.feed(publish_pkt("hcp/v1/dev/kp-01/down/cmd", b"x" * 4097, qos=1, pid=3))
    with pytest.raises(MQTTError, match="inbound packet of 4126 bytes is over the limit"):
        client.check_msg()
    assert client.oversized == 1 and not client.connected and sock.closed
    client, sock = connected_client()
    got = []
    client.set_callback(lambda t, p, r: got.append(p))
    payload = b"y" * (4096 - 2 - 3 - 2)
    sock.feed(publish_pkt("a/b", payload, qos=1, pid=3))  # exactly 4096: fine
    client.check_msg()
    assert got == [payload] and client.oversized == 0


# --------------------------------------------------------------------------
# SUBSCRIBE / SUBACK


def test_subscribe_sends_subscribe_and_returns_granted_qos():
    client, sock = connected_client()
    assert client.subscribe("hcp/v1/dev/kp-01/down/#", 1) == 1
    assert sock.out == subscribe_pkt(1, "hcp/v1/dev/kp-01/down/#", 1)


def test_subscribe_failure_code_raises_and_keeps_the_connection():
    client, _sock = connected_client(broker_reply(suback_code=0x80))
    with pytest.raises(MQTTError) as err:
        client.subscribe("forbidden/topic")
    assert str(err.value) == "SUBACK refused subscription to forbidden/topic"
    assert client.connected


def test_suback_timeout():
    client, _sock = connected_client(connack_only)
    with pytest.raises(MQTTError) as err:
        client.subscribe("t")
    assert str(err.value) == "timeout waiting for SUBACK of packet 1"


# --------------------------------------------------------------------------
# Incoming messages


def test_check_msg_with_nothing_waiting_returns_at_once():
    client, sock = connected_client()
    assert client.check_msg() is None
    assert sock.out == b"" and sock.timeout == 5.0


def test_incoming_qos1_calls_back_then_acks():
    client, sock = connected_client()
    seen = []

    def on_message(topic, payload, retained):
        seen.append((topic, payload, retained, sock.out))  # nothing sent yet

    client.set_callback(on_message)
    sock.feed(publish_pkt("hcp/v1/dev/kp-01/down/config", b'{"v":3}', 1, True, pid=42))
    client.check_msg()
    assert seen == [("hcp/v1/dev/kp-01/down/config", b'{"v":3}', True, b"")]
    assert sock.out == puback(42)


def test_incoming_qos0_is_not_acked():
    client, sock = connected_client()
    seen = []
    client.set_callback(lambda *a: seen.append(a))
    sock.feed(publish_pkt("t", b"", qos=0))
    client.check_msg()
    assert seen == [("t", b"", False)] and sock.out == b""


def test_a_crashing_callback_leaves_the_message_unacked():
    client, sock = connected_client()

    def on_message(topic, payload, retained):
        raise RuntimeError("power cut")

    client.set_callback(on_message)
    sock.feed(publish_pkt("t", b"x", qos=1, pid=9))
    with pytest.raises(RuntimeError):
        client.check_msg()
    assert puback(9) not in sock.sent


def test_check_msg_handles_one_packet_per_call():
    client, sock = connected_client()
    seen = []
    client.set_callback(lambda t, p, r: seen.append(p))
    sock.feed(publish_pkt("t", b"1") + publish_pkt("t", b"2"))
    client.check_msg()
    assert seen == [b"1"]
    client.check_msg()
    assert seen == [b"1", b"2"]


def test_broker_closing_the_connection_is_detected():
    client, sock = connected_client()
    sock.eof = True
    with pytest.raises(MQTTError, match="connection closed by the broker"):
        client.check_msg()
    assert not client.connected and sock.closed


def test_a_packet_cut_short_times_out():
    client, sock = connected_client()
    sock.feed(publish_pkt("t", b"payload")[:5])
    with pytest.raises(MQTTError, match="timeout reading a packet from the broker"):
        client.check_msg()
    assert not client.connected


def test_disconnect_sends_disconnect_and_close_does_not():
    client, sock = connected_client()
    client.disconnect()
    assert sock.out == DISCONNECT and sock.closed and not client.connected
    client, sock = connected_client()
    client.close()
    assert sock.out == b"" and sock.closed and not client.connected


# --------------------------------------------------------------------------
# Remaining length


BOUNDARIES = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"),
    (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("n", "encoded"), BOUNDARIES, ids=[str(n) for n, _ in BOUNDARIES])
def test_remaining_length_encoding(n, encoded):
    assert varint(n) == encoded  # the test's own encoder agrees with the spec table
    assert mqtt.encode_length(n) == encoded


def test_remaining_length_out_of_range():
    with pytest.raises(ValueError):
        mqtt.encode_length(268435456)
    with pytest.raises(ValueError):
        mqtt.encode_length(-1)


@pytest.mark.parametrize("n", [127, 128, 16383, 16384, 2097151, 2097152])
def test_packets_at_remaining_length_boundaries_round_trip(n):
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    payload = payload[: n - 3]  # a QoS 0 PUBLISH to "t" has 3 bytes before the payload
    client, sock = connected_client(max_packet=mqtt.MAX_REMAINING)
    client.publish("t", payload, qos=0)
    assert sock.out == publish_pkt("t", payload)
    assert sock.out[1 : 1 + len(varint(n))] == varint(n)
    got = []
    client.set_callback(lambda t, p, r: got.append(p))
    sock.chunk = 65536
    sock.feed(sock.out)
    client.check_msg()
    assert got == [payload]


def test_malformed_remaining_length_is_rejected():
    client, sock = connected_client()
    sock.feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(MQTTError, match="malformed remaining length"):
        client.check_msg()
    assert not client.connected


# --------------------------------------------------------------------------
# Keepalive


def test_pingreq_after_half_the_keepalive_and_pingresp_clears_it(clock):
    client, sock = connected_client(connack_only, keepalive=10)
    clock.now += 4999
    client.check_msg()
    assert sock.out == b""
    clock.now += 1
    client.check_msg()
    assert sock.out == PINGREQ
    sock.feed(PINGRESP)
    clock.now += 100
    client.check_msg()  # reads the PINGRESP
    clock.now += 10_000
    client.check_msg()  # the connection is alive: a new ping, no error
    assert sock.sent == [PINGREQ, PINGREQ] and client.connected


def test_traffic_postpones_the_ping(clock):
    client, sock = connected_client(keepalive=10)
    clock.now += 4000
    client.publish("t", b"x", qos=0)
    clock.now += 4000
    client.check_msg()
    assert PINGREQ not in sock.sent
    clock.now += 1000
    client.check_msg()
    assert sock.sent[-1] == PINGREQ


def test_now_ms_argument_drives_the_keepalive(clock):
    client, sock = connected_client(keepalive=2)
    client.check_msg(now_ms=clock.now + 999)
    assert sock.out == b""
    client.check_msg(now_ms=clock.now + 1000)
    assert sock.out == PINGREQ


def test_missing_pingresp_declares_the_connection_dead(clock):
    client, sock = connected_client(connack_only, keepalive=10, timeout_ms=2000)
    clock.now += 5000
    client.check_msg()
    assert sock.out == PINGREQ
    clock.now += 1999
    client.check_msg()
    assert client.connected
    clock.now += 1
    with pytest.raises(MQTTError) as err:
        client.check_msg()
    assert str(err.value) == "keepalive: no PINGRESP within 2000 ms"
    assert not client.connected and sock.closed


def test_keepalive_zero_never_pings(clock):
    client, sock = connected_client(keepalive=0)
    clock.now += 10_000_000
    client.check_msg()
    assert sock.out == b""


# --------------------------------------------------------------------------
# Reconnect backoff


@pytest.fixture
def no_jitter(monkeypatch):
    monkeypatch.setattr(mqtt, "getrandbits", lambda n: 0)


def test_reconnect_backoff_doubles_to_a_cap_and_resets_after_a_stable_link(clock, no_jitter):
    client = MQTTClient("kp-01", "broker.invalid")
    up = {"yes": False}
    attempts = []

    def open_socket():
        attempts.append(clock.now)
        if not up["yes"]:
            raise OSError(111, "Connection refused")
        return FakeSocket(broker_reply())

    client._open_socket = open_socket
    start = clock.now
    while clock.now - start < 300_000:
        assert client.ensure_connected() is False  # monkeypatched ticks_ms
        clock.now += 100
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[:9] == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    assert client.last_error == "ConnectionRefusedError: [Errno 111] Connection refused"

    up["yes"] = True
    while not client.ensure_connected():
        clock.now += 100
    assert client.connected and client.last_error is None
    # A link that drops within STABLE_MS: the backoff goes on where it was.
    clock.now += 59_900
    client.close()
    dropped = clock.now
    del attempts[:]
    while not client.ensure_connected():
        clock.now += 100
    assert [t - dropped for t in attempts] == [60000]
    # A link that stayed up 60 s: one attempt at once, then 1 s, 2 s (reset).
    clock.now += 60_000
    client.close()
    up["yes"] = False
    del attempts[:]
    for _ in range(40):
        client.ensure_connected(clock.now)
        clock.now += 100
    assert [t - attempts[0] for t in attempts] == [0, 1000, 3000]


def test_reconnect_waits_have_random_jitter_of_up_to_a_quarter(clock):
    client = MQTTClient("kp-01", "broker.invalid")
    attempts = []

    def refuse():
        attempts.append(clock.now)
        raise OSError(111, "Connection refused")

    client._open_socket = refuse
    while len(attempts) < 40:
        client.ensure_connected()
        clock.now += 10
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    delays = [1000, 2000, 4000, 8000, 16000, 32000] + [60000] * 33
    assert all(d <= g <= d * 1.25 + 10 for g, d in zip(gaps, delays, strict=True)), gaps
    assert len({g - d for g, d in zip(gaps, delays, strict=True)}) > 5  # not all in step


def test_the_backoff_survives_the_tick_wrap(monkeypatch, no_jitter):
    period = 1 << 30
    clock = Clock(period - 1500)
    monkeypatch.setattr(mqtt, "ticks_ms", clock)
    monkeypatch.setattr(mqtt, "ticks_add", lambda t, d: (t + d) % period)
    monkeypatch.setattr(
        mqtt, "ticks_diff", lambda a, b: ((a - b + period // 2) % period) - period // 2
    )
    client = MQTTClient("kp-01", "broker.invalid")
    attempts = []

    def refuse():
        attempts.append(clock.now)
        raise OSError(111, "Connection refused")

    client._open_socket = refuse
    for _ in range(100):  # 10 s across the wrap
        client.ensure_connected()
        clock.now = (clock.now + 100) % period
    assert [(t - attempts[0]) % period for t in attempts] == [0, 1000, 3000, 7000]


def test_the_broker_name_is_resolved_once_per_working_address(monkeypatch):
    lookups = []

    class FakeSocketModule:
        SOCK_STREAM = 1
        IPPROTO_TCP = 6
        TCP_NODELAY = 1
        refuse = False

        @staticmethod
        def getaddrinfo(host, port, family, kind):
            lookups.append(host)
            return [(2, 1, 6, "", ("192.0.2.7", port))]

        @classmethod
        def socket(cls, *args):
            sock = FakeSocket(broker_reply())
            if cls.refuse:
                sock.connect = lambda addr: (_ for _ in ()).throw(OSError(111, "refused"))
            else:
                sock.connect = lambda addr: None
            sock.setsockopt = lambda *a: None
            return sock

    monkeypatch.setattr(mqtt, "socket", FakeSocketModule)
    client = MQTTClient("kp-01", "broker.example")
    client.connect()
    client.close()
    client.connect()
    assert lookups == ["broker.example"]  # the address was kept
    client.close()
    FakeSocketModule.refuse = True
    with pytest.raises(OSError):
        client.connect()
    FakeSocketModule.refuse = False
    client.connect()
    assert lookups == ["broker.example"] * 2  # looked up again after a failed connect


def test_ensure_connected_catches_mqtt_errors_too(clock, no_jitter):
    client = MQTTClient("kp-01", "broker.invalid")
    sockets = []

    def open_socket():
        sockets.append(FakeSocket(broker_reply(connack_code=4)))
        return sockets[-1]

    client._open_socket = open_socket
    assert client.ensure_connected() is False
    assert client.last_error == "MQTTError: CONNACK refused: code 4 (bad user name or password)"
    assert client.ensure_connected(clock.now + 999) is False
    assert len(sockets) == 1 and sockets[0].closed
    assert client.ensure_connected(clock.now + 1000) is False
    assert len(sockets) == 2


# --------------------------------------------------------------------------
# The same scripted session under CPython and under MicroPython

SESSION = r"""
import binascii
from device import mqtt

class Sock:
    def __init__(self):
        self.inbox = b""
        self.out = []
        self.t = None
        self.quiet = False
    def settimeout(self, t):
        self.t = t
    def send(self, data):
        data = bytes(data)
        self.out.append(data)
        if self.quiet:
            return len(data)
        k = data[0] & 0xF0
        if k == 0x10:
            self.inbox += b"\x20\x02\x01\x00"
        elif k == 0x30 and data[0] & 2:
            n = (data[2] << 8) | data[3]
            self.inbox += b"\x40\x02" + data[4 + n:6 + n]
        elif k == 0x80:
            self.inbox += b"\x90\x03" + data[2:4] + b"\x01"
        return len(data)
    def recv(self, n):
        if not self.inbox:
            raise OSError(11 if self.t == 0 else 110)
        d = self.inbox[:n]
        self.inbox = self.inbox[n:]
        return d
    def close(self):
        pass

sock = Sock()
c = mqtt.MQTTClient("kp-09", "h", user="u", password="p", keepalive=30, timeout_ms=500)
c._open_socket = lambda: sock
c.set_will("hcp/v1/dev/kp-09/up/status", '{"online":false}')
got = []
c.set_callback(lambda t, p, r: got.append((t, p, r)))
print("session", c.connect())
print("granted", c.subscribe("hcp/v1/dev/kp-09/down/#"))
print("pid", c.publish("hcp/v1/dev/kp-09/up/ev", "评价" * 10, 1, True))
sock.inbox += b"\x33\x0e\x00\x05a/b/c\x00\x07hello"
c.check_msg()
print("got", got)
c._pid = 65535
print("pid", c.publish("x", b"", 1))
for n in (127, 128, 16383, 16384, 2097151, 2097152, 268435455):
    print(n, binascii.hexlify(mqtt.encode_length(n)))
sock.inbox += b"\xd0\x00"  # a PINGRESP nobody asked for is harmless
c.check_msg()
print("connected", c.connected)
sock.quiet = True
try:
    c.publish("x", b"", 1)
except mqtt.MQTTError as e:
    print("error", e)
print("connected", c.connected)
for data in sock.out:
    print(binascii.hexlify(data))
"""


@pytest.mark.micropython
def test_same_session_bytes_on_cpython_and_micropython(micropython):
    cpython = subprocess.run(
        [sys.executable, "-c", SESSION], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert cpython.returncode == 0, cpython.stderr
    assert "error timeout waiting for PUBACK of packet 2" in cpython.stdout
    assert "got [('a/b/c', b'hello', True)]" in cpython.stdout
    result = micropython(SESSION).check()
    assert result.stdout == cpython.stdout


# --------------------------------------------------------------------------
# End to end on real brokers


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def device_client(broker, client_id, **kw):
    kw.setdefault("timeout_ms", 3000)
    return MQTTClient(client_id, broker.host, broker.port, **kw)


def pump(client, done, seconds=5.0):
    """Poll the device client until done() or the time is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.check_msg()
        if done():
            return True
        time.sleep(0.01)
    return done()


class Paho:
    """A paho-mqtt 2.x client on the other side (the collector's role)."""

    def __init__(self, broker, *subscriptions):
        self.messages = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=unique("paho"))
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload, m.retain)
        )
        self.subacks = set()
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.add(mid)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        for topic in subscriptions:
            _rc, mid = self.client.subscribe(topic, 1)
            assert self.wait(lambda mid=mid: mid in self.subacks), f"no SUBACK for {topic}"

    def publish(self, topic, payload, retain=False):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def wait(self, predicate, seconds=5.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.broker
def test_device_publishes_qos1_to_itself(broker):
    dev = device_client(broker, unique("kp"))
    got = []
    dev.set_callback(lambda t, p, r: got.append((t, p, r)))
    assert dev.connect(clean_session=True) is False
    topic = unique("hcp/v1/dev/self") + "/down/cmd"
    assert dev.subscribe(topic, 1) == 1
    assert dev.publish(topic, b"ping", qos=1) == 2
    assert pump(dev, lambda: got)
    assert got == [(topic, b"ping", False)]
    dev.disconnect()


@pytest.mark.broker
def test_offline_device_gets_queued_qos1_after_reconnect(broker):
    device_id = unique("kp")
    topic = f"hcp/v1/dev/{device_id}/down/cmd"
    dev = device_client(broker, device_id)
    assert dev.connect(clean_session=False) is False
    dev.subscribe(topic, 1)
    dev.close()  # power cut: no DISCONNECT

    other = Paho(broker)
    try:
        for i in range(3):
            other.publish(topic, f"cmd-{i}".encode())
    finally:
        other.close()

    got = []
    dev.set_callback(lambda t, p, r: got.append(p))
    assert dev.connect() is True
    assert dev.session_present is True  # so the device does not subscribe again
    assert pump(dev, lambda: len(got) >= 3)
    assert got == [b"cmd-0", b"cmd-1", b"cmd-2"]
    dev.disconnect()


@pytest.mark.broker
def test_will_is_published_retained_when_the_socket_just_closes(broker):
    device_id = unique("kp")
    status = f"hcp/v1/dev/{device_id}/up/status"
    watcher = Paho(broker, status)
    dev = device_client(broker, device_id, keepalive=30)
    dev.set_will(status, b'{"online":false}', qos=1, retain=True)
    dev.connect()
    dev.publish(status, b'{"online":true}', qos=1, retain=True)
    dev.close()
    try:
        assert watcher.wait(lambda: len(watcher.messages) >= 2)
        assert watcher.messages == [
            (status, b'{"online":true}', False),
            (status, b'{"online":false}', False),
        ]
    finally:
        watcher.close()
    late = Paho(broker, status)  # a later subscriber sees the retained will
    try:
        assert late.wait(lambda: late.messages)
        assert late.messages == [(status, b'{"online":false}', True)]
    finally:
        late.close()


@pytest.mark.broker
def test_retained_messages_go_only_to_their_subscribers(broker):
    # Regression test for amqtt 0.12.1, which pushed every retained message
    # matching anybody's subscription to each connecting client (hcp.broker
    # runs it with a fix): a keypad must never see another keypad's config.
    config_a = f"hcp/v1/dev/{unique('kp')}/down/config"
    holder = Paho(broker, config_a)
    other = Paho(broker)
    try:
        other.publish(config_a, b'{"version":1}', retain=True)
        assert holder.wait(lambda: holder.messages)
        dev = device_client(broker, unique("kp"))
        got = []
        dev.set_callback(lambda t, p, r: got.append(t))
        dev.connect(clean_session=True)
        own = f"hcp/v1/dev/{dev.client_id}/down/config"
        dev.subscribe(own)
        other.publish(own, b'{"version":2}', retain=True)
        assert pump(dev, lambda: got)
        time.sleep(0.3)
        dev.check_msg()
        assert got == [own]
        dev.disconnect()
    finally:
        holder.close()
        other.close()


@pytest.mark.broker
def test_orderly_disconnect_sends_no_will(broker):
    device_id = unique("kp")
    status = f"hcp/v1/dev/{device_id}/up/status"
    watcher = Paho(broker, status)
    dev = device_client(broker, device_id)
    dev.set_will(status, b"gone", qos=1, retain=False)
    dev.connect(clean_session=True)
    dev.disconnect()
    time.sleep(0.5)
    watcher.close()
    assert watcher.messages == []


@pytest.mark.broker
def test_connect_to_a_closed_port_fails_fast():
    client = MQTTClient("kp-01", "127.0.0.1", free_port(), timeout_ms=1000)
    started = time.monotonic()
    assert client.ensure_connected() is False
    assert time.monotonic() - started < 2
    assert client.last_error.startswith("ConnectionRefusedError")


# --------------------------------------------------------------------------
# hcp.broker itself


@pytest.mark.broker
def test_broker_interface(broker):
    assert broker.kind in ("mosquitto", "amqtt")
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    assert broker.running


@pytest.mark.broker
def test_mosquitto_with_persistence_keeps_sessions_across_restart(tmp_path):
    if not MosquittoBroker.available():
        pytest.skip("the mosquitto binary is not installed")
    with MosquittoBroker(workdir=tmp_path, persistence=True) as broker:
        device_id = unique("kp")
        topic = f"hcp/v1/dev/{device_id}/down/ack"
        dev = device_client(broker, device_id)
        dev.connect()
        dev.subscribe(topic)
        dev.close()
        other = Paho(broker)
        other.publish(topic, b"queued")
        other.close()
        port = broker.port
        broker.restart()
        assert broker.port == port
        got = []
        dev.set_callback(lambda t, p, r: got.append(p))
        assert dev.connect() is True
        assert pump(dev, lambda: got)
        assert got == [b"queued"]
        dev.disconnect()


@pytest.mark.broker
def test_amqtt_restart_keeps_the_port_but_forgets_sessions(tmp_path):
    with AmqttBroker(workdir=tmp_path) as broker:
        device_id = unique("kp")
        dev = device_client(broker, device_id)
        dev.connect()
        dev.disconnect()
        port = broker.port
        broker.restart()
        assert broker.port == port
        assert dev.connect() is False  # the session lived in the old process
        dev.disconnect()


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_start_failure_reports_the_log_tail(kind, tmp_path):
    if kind == "mosquitto" and not MosquittoBroker.available():
        pytest.skip("the mosquitto binary is not installed")
    cls = {"amqtt": AmqttBroker, "mosquitto": MosquittoBroker}[kind]

    class Broken(cls):
        def _config_text(self):
            return "this is : not [ a valid config\n"

    with pytest.raises(RuntimeError) as err:
        Broken(workdir=tmp_path).start()
    assert "exited with code" in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_port_in_use_is_reported(tmp_path):
    with AmqttBroker(workdir=tmp_path / "a") as first:
        with pytest.raises(RuntimeError, match="already in use"):
            AmqttBroker(port=first.port, workdir=tmp_path / "b").start()


def test_start_broker_factory(tmp_path):
    with pytest.raises(ValueError, match="unknown broker kind"):
        start_broker("emqx")
    broker = start_broker("amqtt", workdir=tmp_path)
    try:
        assert broker.kind == "amqtt" and broker.running
    finally:
        broker.stop()
    assert not broker.running


# --------------------------------------------------------------------------
# tests/harness/broker.py availability rule


def test_missing_mosquitto_skips_unless_required(monkeypatch, tmp_path_factory):
    from tests.harness import broker as harness

    monkeypatch.setattr(MosquittoBroker, "available", classmethod(lambda cls: False))
    monkeypatch.delenv("HCP_REQUIRE_MOSQUITTO", raising=False)
    with pytest.raises(pytest.skip.Exception):
        harness._make_broker("mosquitto", tmp_path_factory)
    monkeypatch.setenv("HCP_REQUIRE_MOSQUITTO", "1")
    with pytest.raises(pytest.fail.Exception) as err:
        harness._make_broker("mosquitto", tmp_path_factory)
    assert str(err.value) == (
        "Mosquitto is required here (HCP_REQUIRE_MOSQUITTO=1) "
        "but the mosquitto binary was not found"
    )
    assert harness._make_broker("amqtt", tmp_path_factory).kind == "amqtt"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x40\x01\x00", "malformed PUBACK"),
        (b"\x90\x02\x00\x01", "malformed SUBACK"),
        (b"\x30\x01\x00", "malformed PUBLISH"),
        (b"\x32\x05\x00\x03abc", "malformed PUBLISH"),  # QoS 1 without a packet id
        (b"\x30\x04\x00\x02\xff\xfe", "malformed PUBLISH: topic is not UTF-8"),
    ],
)
def test_malformed_packets_raise_mqtt_errors(data, message):
    client, sock = connected_client()
    client.set_callback(lambda *a: pytest.fail("no callback for a malformed packet"))
    sock.feed(data)
    with pytest.raises(MQTTError) as err:
        client.check_msg()
    assert str(err.value) == message
    assert not client.connected
