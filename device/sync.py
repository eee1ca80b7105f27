# Sync of the device store with the collector over MQTT (DESIGN §4).
#
# A record leaves the store only when the collector's ack (down/ack) names
# its seq; MQTT's PUBACK proves nothing about storage. One batch is in flight
# at a time; without an ack within ack_timeout_ms the pending records are
# sent again (the collector stores by id, so a repeat is harmless). Batches
# are rate-limited (min_interval_ms) so a hall of devices coming back after
# an outage does not swamp the collector, and 差评 drain first (Store.pending).
#
# A store that lost its state does not know which seqs it used: its status
# leaves out `last_seq`, and the collector answers on down/seq with the
# highest seq it holds for the device, for this boot only (boot_id), signed;
# the store moves past it and rates again (docs/protocol.md §3.6).
#
# Everything the collector sends down (ack, config, command, seq) is signed with
# this device's key: a forged ack would make the device forget records that
# were never stored, so an unsigned or wrongly signed message is ignored.
from device.compat import ticks_diff
from device.mqtt import MQTTError
from protocols import messages, sign, topics
from protocols.canonical import dumps


def batch_stream(store, device_id, number, plan):
    """(length, chunks) of the batch message for the records of a
    store.batch_plan(): the bytes messages.encode(messages.batch(device_id,
    number, records, contacts)) would give, without ever holding the records
    in RAM. Canonical JSON sorts the keys: batch, contacts, device_id,
    records, t, v. A store with contacts (the kiosk's) offers the signed
    entries of a plan as store.contacts(plan); the keypad's has none."""
    contacts = getattr(store, "contacts", None)
    contacts = contacts(plan) if contacts else None
    head = b'{"batch":' + str(number).encode()
    if contacts:
        head += b',"contacts":' + dumps(contacts)
    head += b',"device_id":' + dumps(device_id)
    head += b',"records":['
    tail = b'],"t":' + dumps(messages.EV) + b',"v":' + str(messages.VERSION).encode() + b"}"
    length = len(head) + len(tail) + len(plan) - 1
    for _seq, size in plan:
        length += size
    return length, _chunks(head, store.record_bytes(plan), tail)


def _chunks(head, records, tail):
    yield head
    first = True
    for record in records:
        if not first:
            yield b","
        first = False
        yield record
    yield tail


class Sync:
    def __init__(
        self,
        client,
        store,
        device_id,
        key,
        firmware="0.1.0",
        batch_size=50,
        ack_timeout_ms=10000,
        min_interval_ms=200,
        status_every_ms=60000,
        boot_id=None,
    ):
        self.client = client
        self.store = store
        self.device_id = device_id
        self.key = key
        self.firmware = firmware
        self.batch_size = batch_size
        self.ack_timeout_ms = ack_timeout_ms
        self.min_interval_ms = min_interval_ms
        self.status_every_ms = status_every_ms
        self.boot_id = boot_id  # a down/seq is taken only for this boot
        self.on_config = None  # fn(config dict)
        self.on_command = None  # fn(command dict) -> (ok, result)
        self.status_extra = None  # fn() -> dict: clock, signal, reset_cause ... (main.py)
        self.batches_sent = 0
        self.acks = 0
        self.bad_messages = 0
        self.bad_status = 0  # statuses whose extra fields broke the contract
        self._batch = 0
        self._in_flight = None  # (batch number, sent at ms)
        self._last_send = None
        self._last_status = None
        self._status_dirty = True
        client.set_callback(self._message)
        client.set_will(
            topics.topic(device_id, topics.UP_STATUS),
            messages.encode(messages.status(False, fw=firmware)),
            qos=1,
            retain=True,
        )

    def _topic(self, kind):
        return topics.topic(self.device_id, kind)

    def _subscribe(self):
        for kind in (topics.DOWN_ACK, topics.DOWN_CONFIG, topics.DOWN_CMD, topics.DOWN_SEQ):
            self.client.subscribe(self._topic(kind), 1)

    def _seq_known(self):
        return getattr(self.store, "known", True)

    def step(self, now_ms):
        """Do one slice of sync work; never blocks longer than the client's timeout."""
        was_connected = self.client.connected
        if not self.client.ensure_connected(now_ms):
            return False
        try:
            if not was_connected:
                self._in_flight = None
                if not self.client.session_present or not self._seq_known():
                    self._subscribe()  # a session from older firmware lacks down/seq
                self._status_dirty = True
            for _ in range(8):
                self.client.check_msg()
            self._maybe_status(now_ms)  # first, so a fresh connection says who it is
            self._maybe_send(now_ms)
        except (OSError, MQTTError):
            self.client.close()
            self._in_flight = None
            return False
        return True

    def send_now(self):
        """Drop the ack wait and the batch interval: what is pending goes out
        on the next step (the sync_now command)."""
        self._in_flight = None
        self._last_send = None

    def _maybe_send(self, now_ms):
        if self._in_flight is not None:
            if ticks_diff(now_ms, self._in_flight[1]) < self.ack_timeout_ms:
                return
            self._in_flight = None  # no ack in time: send what is still pending again
        if (
            self._last_send is not None
            and ticks_diff(now_ms, self._last_send) < self.min_interval_ms
        ):
            return
        plan = self.store.batch_plan(self.batch_size)
        if not plan:
            return
        self._batch += 1
        length, chunks = batch_stream(self.store, self.device_id, self._batch, plan)
        self.client.publish_stream(self._topic(topics.UP_EV), length, chunks, 1)
        self._in_flight = (self._batch, now_ms)
        self._last_send = now_ms
        self.batches_sent += 1

    def status(self, online=True, extras=True):
        fields = {
            "fw": self.firmware,
            "queue": len(self.store),
            "counts": dict(self.store.counts),
            "bad_messages": self.bad_messages,
        }
        if self._seq_known():
            fields["last_seq"] = self.store.last_seq  # absent: ask the collector (down/seq)
        if extras and self.status_extra:
            fields.update(self.status_extra())
        return messages.status(online, **fields)

    def _maybe_status(self, now_ms):
        since = None if self._last_status is None else ticks_diff(now_ms, self._last_status)
        every = self.status_every_ms
        if not self._seq_known():
            every = min(every, self.ack_timeout_ms)  # ask again until the collector answers
        due = since is None or since >= every
        if not (due or (self._status_dirty and since >= 1000)):
            return
        status = self.status()
        try:
            payload = messages.encode(status)
        except messages.MessageError:
            # an extra field the port reported out of range (a strange RSSI, say):
            # the counters still go out, the extras are left off this time
            self.bad_status += 1
            payload = messages.encode(self.status(extras=False))
        self.client.publish(self._topic(topics.UP_STATUS), payload, 1, True)
        self._last_status = now_ms
        self._status_dirty = False

    def _message(self, topic, payload, retained):
        try:
            device, kind = topics.parse(topic)
            if device != self.device_id:
                raise ValueError("message for another device")
            msg = messages.decode(payload)
            if not sign.verify(msg, self.key):
                raise ValueError("not signed with this device's key")
            if kind == topics.DOWN_ACK and msg["t"] == messages.ACK:
                self._ack(msg)
            elif kind == topics.DOWN_CONFIG and msg["t"] == messages.CONFIG:
                if self.on_config:
                    self.on_config(msg)
            elif kind == topics.DOWN_CMD and msg["t"] == messages.CMD:
                self._command(msg)
            elif kind == topics.DOWN_SEQ and msg["t"] == messages.SEQ:
                if msg["boot_id"] != self.boot_id:
                    raise ValueError("a seq answer for another boot")
                if self.store.learn(msg["highest"], msg.get("counts")):
                    self._status_dirty = True
            else:
                raise ValueError("message of the wrong type for its topic")
        except Exception:  # no input may stop the device
            self.bad_messages += 1  # counted and reported in status; never fatal

    def _ack(self, ack):
        self.store.remove(ack["stored"] + ack["quarantined"])
        self.acks += 1
        if self._in_flight is not None and ack["batch"] == self._in_flight[0]:
            self._in_flight = None
            self._status_dirty = True

    def _command(self, cmd):
        ok, result = False, "unsupported"
        if cmd["cmd"] == "status":
            ok, result = True, self.status()
        elif self.on_command:
            ok, result = self.on_command(cmd)
        reply = messages.encode(messages.command_result(cmd["id"], ok, result))
        self.client.publish(self._topic(topics.UP_CMDRES), reply, 1)
