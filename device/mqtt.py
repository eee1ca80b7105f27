# A small MQTT 3.1.1 client for the keypad; the same file runs on MicroPython
# and on CPython (the simulators and tests).
#
# Every socket operation is bounded by timeout_ms: the client never blocks
# forever. Any I/O error or timeout closes the connection (connected = False)
# and raises OSError or MQTTError; the caller reconnects with
# ensure_connected(), which backs off exponentially (1 s doubling to 60 s,
# plus up to a quarter more at random, so a hall of keypads does not retry in
# step). The backoff starts again from 1 s only after a connection has stayed
# up for STABLE_MS: a broker that accepts and then drops us at once is not
# hammered. All elapsed time goes through ticks_add/ticks_diff (ticks wrap).
#
# The broker's name is resolved (getaddrinfo, which has no timeout of its
# own) once and the address kept while connecting to it works; it is looked
# up again only after a failed connect. A broker_host given as an IP address
# needs no DNS at all.
#
# Inbound packets are small (acks, configs, commands): one whose remaining
# length is above max_packet (4 KB) closes the connection unread and is
# counted in `oversized`. A message that arrives while we wait for an ack
# (a command between our PUBLISH and its PUBACK) is queued, not handed to
# the callback from inside the wait, and delivered by the next check_msg().
#
# After a reconnect the caller must subscribe again only if session_present
# is False: with a persistent session (clean_session=False, the default) the
# broker keeps the subscriptions and queues QoS 1 messages while we are away.
#
# Incoming QoS 1 messages are acknowledged only after the callback returns, so
# if the callback raises (or the device loses power inside it) the broker
# delivers the message again after the next connect.
from device.compat import ticks_add, ticks_diff, ticks_ms

try:
    from random import getrandbits
except ImportError:  # a port without random: no jitter

    def getrandbits(n):
        return 0


try:
    import socket
except ImportError:  # a MicroPython port without networking (the WebAssembly one)
    socket = None

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)
SUBACK = const(0x90)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)
MAX_REMAINING = const(268435455)
BACKOFF_FIRST_MS = const(1000)
BACKOFF_MAX_MS = const(60000)
_SEND_BUFFER = const(1024)  # publish_stream gathers small chunks into writes of this size
STABLE_MS = const(60000)  # a connection up this long resets the backoff
MAX_PACKET = const(4096)  # inbound remaining length above this closes the connection
MAX_QUEUED = const(4)  # messages held while waiting for an ack

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
PACKET_NAMES = {CONNACK: "CONNACK", PUBACK: "PUBACK", SUBACK: "SUBACK"}
# errno values meaning "no data yet" or "timed out": EAGAIN, ETIMEDOUT (Linux
# and MicroPython), ETIMEDOUT as some lwIP builds number it.
_TIMEOUT_ERRNOS = (11, 110, 116)


class MQTTError(Exception):
    pass


def _is_timeout(exc):
    if exc.args and exc.args[0] in _TIMEOUT_ERRNOS:
        return True
    return "timed out" in str(exc)  # CPython's socket.timeout / TimeoutError


def encode_length(n):
    if n < 0 or n > MAX_REMAINING:
        raise ValueError("remaining length out of range: %d" % n)
    out = bytearray()
    while True:
        digit = n & 0x7F
        n >>= 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def encode_str(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    if len(s) > 65535:
        raise ValueError("string longer than 65535 bytes")
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


def packet(first, body):
    return bytes((first,)) + encode_length(len(body)) + body


class MQTTClient:
    def __init__(
        self,
        client_id,
        server,
        port=1883,
        user=None,
        password=None,
        keepalive=60,
        timeout_ms=5000,
        max_packet=MAX_PACKET,
    ):
        if password is not None and user is None:
            raise ValueError("MQTT 3.1.1 needs a user name to send a password")
        self.client_id = client_id
        self._stream_buf = None  # publish_stream's send buffer, made once
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.timeout_ms = timeout_ms
        self.max_packet = max_packet
        self.oversized = 0  # inbound packets refused for their size
        self.queue_dropped = 0  # messages not queued (queue full): the broker resends them
        self.sock = None
        self.connected = False
        self.session_present = False
        self.last_error = None  # text of the last failed connect, for status
        self._will = None
        self._cb = None
        self._pid = 0
        self._waiting = []  # (packet type, packet id) pairs being waited for
        self._acks = {}  # acks that arrived for a wait further up the stack
        self._last_tx = 0
        self._ping_at = None
        self._next_try = None  # ticks before which no reconnect is tried; None: now
        self._delay = BACKOFF_FIRST_MS
        self._up_since = None  # ticks of the last successful connect
        self._dropped = False  # a connection was lost since the last ensure_connected()
        self._addr = None  # getaddrinfo() entry of the broker that worked last
        self._queue = []  # (first byte, body) of PUBLISHes that came during a wait

    def set_will(self, topic, payload, qos=1, retain=True):
        self._will = (topic, payload, qos, retain)

    def set_callback(self, fn):
        self._cb = fn  # fn(topic_str, payload_bytes, retained_bool)

    # -- connection

    def _open_socket(self):
        # getaddrinfo() has no timeout of its own: resolved once and kept (see
        # the top of the file); an IP address as broker_host avoids DNS.
        info = self._addr
        if info is None:
            info = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0]
        self._addr = info
        sock = socket.socket(info[0], info[1], info[2])
        try:
            sock.settimeout(self.timeout_ms / 1000)
            try:  # a streamed batch is several writes: send each at once
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (AttributeError, OSError):
                pass  # a port without the option
            sock.connect(info[-1])
        except Exception:
            sock.close()
            raise
        return sock

    def connect(self, clean_session=False):
        self.close()
        flags = 0x02 if clean_session else 0
        payload = encode_str(self.client_id)
        if self._will:
            topic, message, qos, retain = self._will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += encode_str(topic) + encode_str(message)
        if self.user is not None:
            flags |= 0x80
            payload += encode_str(self.user)
        if self.password is not None:
            flags |= 0x40
            payload += encode_str(self.password)
        body = encode_str("MQTT") + bytes((4, flags, self.keepalive >> 8, self.keepalive & 0xFF))
        try:
            self.sock = self._open_socket()
            self._send(packet(CONNECT, body + payload))
            ack = self._wait(CONNACK, 0)
            if ack[1] != 0:
                reason = CONNACK_REASONS.get(ack[1], "unknown")
                raise MQTTError("CONNACK refused: code %d (%s)" % (ack[1], reason))
        except Exception:
            self._addr = None  # resolve the name again next time
            self.close()
            raise
        self.session_present = bool(ack[0] & 1)
        self.connected = True
        self._up_since = ticks_ms()
        self._ping_at = None
        return self.session_present

    def disconnect(self):
        if self.sock is not None:
            try:
                self._send(bytes((DISCONNECT, 0)))
            except OSError:
                pass
        self.close()

    def close(self):
        # Drop the connection without a DISCONNECT (the broker sends the will).
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        if self.connected:
            self._dropped = True  # ensure_connected() decides how long to wait
        self.sock = None
        self.connected = False
        self._ping_at = None
        self._acks = {}
        self._queue = []  # not acked: the broker delivers them again

    def _schedule(self, now):
        # the next try after the current delay plus up to a quarter of it at
        # random; then the delay doubles (up to BACKOFF_MAX_MS)
        jitter = getrandbits(16) % (self._delay // 4 + 1)
        self._next_try = ticks_add(now, self._delay + jitter)
        self._delay = min(self._delay * 2, BACKOFF_MAX_MS)

    def ensure_connected(self, now_ms=None, clean_session=False):
        """True when connected; otherwise connect if the backoff allows it."""
        if self.connected:
            return True
        now = ticks_ms() if now_ms is None else now_ms
        if self._dropped:
            # a drop: back off from 1 s again only if the link had been stable
            # (measured up to the first call after the drop: the main loop's pace)
            self._dropped = False
            if ticks_diff(now, self._up_since) >= STABLE_MS:
                self._delay = BACKOFF_FIRST_MS
                self._next_try = None
            else:
                self._schedule(now)
        if self._next_try is not None and ticks_diff(self._next_try, now) > 0:
            return False
        try:
            self.connect(clean_session)
        except (OSError, MQTTError) as exc:
            self._schedule(now)
            self.last_error = "%s: %s" % (type(exc).__name__, exc)
            return False
        self._next_try = None
        self._up_since = now
        self.last_error = None
        return True

    # -- operations

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def _require(self):
        if not self.connected:
            raise MQTTError("not connected")

    def publish(self, topic, payload, qos=1, retain=False):
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are supported")
        self._require()
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        body = encode_str(topic)
        pid = None
        if qos:
            pid = self._next_pid()
            body += bytes((pid >> 8, pid & 0xFF))
        self._guard(self._send, packet(PUBLISH | (qos << 1) | (1 if retain else 0), body + payload))
        if qos:
            self._guard(self._wait, PUBACK, pid)
        return pid

    def publish_stream(self, topic, length, chunks, qos=1, retain=False):
        """Publish a payload of `length` bytes given as an iterable of byte chunks.

        The PUBLISH fixed header needs the remaining length before the body,
        so the caller computes the total first; the chunks are then sent as
        they come (gathered into small writes), never joined in RAM. A source
        that yields more or fewer bytes than announced, or fails, closes the
        connection: the broker never sees a wrong packet as a whole one."""
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are supported")
        self._require()
        head = encode_str(topic)
        pid = None
        if qos:
            pid = self._next_pid()
            head += bytes((pid >> 8, pid & 0xFF))
        first = PUBLISH | (qos << 1) | (1 if retain else 0)
        head = bytes((first,)) + encode_length(len(head) + length) + head
        self._guard(self._send_chunks, head, length, chunks)
        if qos:
            self._guard(self._wait, PUBACK, pid)
        return pid

    def _send_chunks(self, head, length, chunks):
        # one fixed buffer: small chunks (a comma, a short record) are copied
        # into it, so the stream allocates nothing per chunk and never grows it
        # The header goes out in the first write with the payload's start: a
        # write of its own would wait for the broker's delayed TCP ack.
        # kept from the first stream on: a fresh 1 KB block for every batch is
        # what a fragmented heap fails to find after hours of small allocations
        buf = self._stream_buf
        if buf is None or len(buf) < len(head):
            buf = self._stream_buf = bytearray(max(_SEND_BUFFER, len(head)))
        view = memoryview(buf)
        used = len(head)
        view[:used] = head
        sent = 0
        for chunk in chunks:
            n = len(chunk)
            sent += n
            if sent > length:
                break
            if used + n > _SEND_BUFFER and used:
                self._send(view[:used])
                used = 0
            if n >= _SEND_BUFFER:
                self._send(chunk)
            else:
                view[used : used + n] = chunk
                used += n
        if sent != length:
            raise MQTTError("payload source gave %d bytes, not the %d announced" % (sent, length))
        if used:
            self._send(view[:used])

    def subscribe(self, topic, qos=1):
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are supported")
        self._require()
        pid = self._next_pid()
        body = bytes((pid >> 8, pid & 0xFF)) + encode_str(topic) + bytes((qos,))
        self._guard(self._send, packet(SUBSCRIBE, body))
        granted = self._guard(self._wait, SUBACK, pid)[2]
        if granted == 0x80:
            raise MQTTError("SUBACK refused subscription to %s" % topic)
        return granted

    def check_msg(self, now_ms=None):
        """Handle at most one waiting packet without blocking, then keep alive."""
        self._require()
        if self._queue:  # a message that came while we waited for an ack
            first, body = self._queue.pop(0)
            self._guard(self._deliver, first, body)
            self._keepalive(ticks_ms() if now_ms is None else now_ms)
            return
        sock = self.sock
        first = None
        sock.settimeout(0)
        try:
            first = sock.recv(1)
        except OSError as exc:
            if not _is_timeout(exc):
                self.close()
                raise
        finally:
            if self.sock is not None:
                sock.settimeout(self.timeout_ms / 1000)
        if first is not None:
            self._guard(self._read_and_handle, first)
        self._keepalive(ticks_ms() if now_ms is None else now_ms)

    def _keepalive(self, now):
        if self._ping_at is not None:
            if ticks_diff(now, self._ping_at) >= self.timeout_ms:
                self.close()
                raise MQTTError("keepalive: no PINGRESP within %d ms" % self.timeout_ms)
        elif self.keepalive and ticks_diff(now, self._last_tx) >= self.keepalive * 500:
            self._guard(self._send, bytes((PINGREQ, 0)))
            self._ping_at = now

    # -- wire

    def _guard(self, fn, *args):
        # Run an I/O step; on any failure the connection is closed.
        try:
            return fn(*args)
        except Exception:
            self.close()
            raise

    def _send(self, data):
        view = memoryview(data)
        sent = 0
        while sent < len(data):
            n = self.sock.send(view[sent:])
            if not n:
                raise OSError("socket send failed")
            sent += n
        self._last_tx = ticks_ms()

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError as exc:
                if _is_timeout(exc):
                    raise MQTTError("timeout reading a packet from the broker") from None
                raise
            if not chunk:
                raise MQTTError("connection closed by the broker")
            buf += chunk
        return buf

    def _read_and_handle(self, first):
        if not first:
            raise MQTTError("connection closed by the broker")
        length = 0
        for shift in (0, 7, 14, 21):
            digit = self._recv(1)[0]
            length |= (digit & 0x7F) << shift
            if not digit & 0x80:
                break
        else:
            raise MQTTError("malformed remaining length")
        if length > self.max_packet:
            self.oversized += 1
            raise MQTTError("inbound packet of %d bytes is over the limit" % length)
        body = self._recv(length) if length else b""
        kind = first[0] & 0xF0
        if kind == PUBLISH:
            if not self._waiting:
                self._deliver(first[0], body)
            elif len(self._queue) < MAX_QUEUED:
                self._queue.append((first[0], body))
            else:
                self.queue_dropped += 1  # not acked: delivered again after a reconnect
        elif kind == PINGRESP:
            self._ping_at = None
        elif kind in (CONNACK, PUBACK, SUBACK):
            if len(body) < (3 if kind == SUBACK else 2):
                raise MQTTError("malformed %s" % PACKET_NAMES[kind])
            pid = 0 if kind == CONNACK else (body[0] << 8) | body[1]
            if (kind, pid) in self._waiting:
                self._acks[(kind, pid)] = body
        # Anything else (UNSUBACK, a stray ack) is ignored.

    def _wait(self, kind, pid):
        key = (kind, pid)
        self._waiting.append(key)
        start = ticks_ms()
        try:
            while key not in self._acks:
                if self.sock is None:
                    raise MQTTError("connection closed while waiting")
                left = self.timeout_ms - ticks_diff(ticks_ms(), start)
                first = None
                if left > 0:
                    self.sock.settimeout(left / 1000)
                    try:
                        first = self.sock.recv(1)
                    except OSError as exc:
                        if not _is_timeout(exc):
                            raise
                    self.sock.settimeout(self.timeout_ms / 1000)
                if first is None:
                    what = PACKET_NAMES[kind] + (" of packet %d" % pid if pid else "")
                    raise MQTTError("timeout waiting for " + what)
                self._read_and_handle(first)
            return self._acks.pop(key)
        finally:
            self._waiting.remove(key)

    def _deliver(self, first, body):
        qos = (first >> 1) & 3
        if qos > 1:
            raise MQTTError("QoS 2 PUBLISH received; only QoS 0 and 1 are supported")
        pos = 2 + ((body[0] << 8) | body[1]) if len(body) >= 2 else 0
        if pos < 2 or len(body) < pos + 2 * qos:
            raise MQTTError("malformed PUBLISH")
        try:
            topic = body[2:pos].decode("utf-8")
        except UnicodeError:
            raise MQTTError("malformed PUBLISH: topic is not UTF-8") from None
        if qos:
            pid = (body[pos] << 8) | body[pos + 1]
            pos += 2
        if self._cb is not None:
            self._cb(topic, bytes(body[pos:]), bool(first & 1))
        if qos and self.sock is not None:  # the callback may have closed the link
            self._send(bytes((PUBACK, 2, pid >> 8, pid & 0xFF)))
