"""MQTT ingest: verify, store, then acknowledge (DESIGN §4).

`Ingestor.process()` is the whole decision for one incoming message and is
independent of MQTT; `IngestService` wires it to a broker with paho-mqtt,
sending the MQTT PUBACK only after the batch is committed and the ack
published, so a collector that dies mid-batch gets the message again.
"""

from __future__ import annotations

import binascii
import json
import logging
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from protocols import messages, record, sign, topics
from protocols.canonical import dumps
from sync_server import clock, db

log = logging.getLogger(__name__)

COLLECTOR_FIELDS = ("received_at", "excluded", "effective_at", "time_source")
EV_FIELDS = [c.name for c in db.evaluations.columns if c.name not in COLLECTOR_FIELDS]


@dataclass
class Outcome:
    """What one message did: the ack to publish (if any) and the counts."""

    ack_topic: str | None = None
    ack_payload: bytes | None = None
    stored: list[int] = field(default_factory=list)  # seqs new in the store
    duplicates: list[int] = field(default_factory=list)  # seqs that were there already
    quarantined: list[str] = field(default_factory=list)  # reasons
    quarantine_rows_added: int = 0  # repeats of a record already kept aside add none


def _row(conn, rec: dict, received_at: str) -> dict:
    row = {name: rec.get(name) for name in EV_FIELDS}
    row["tags"] = json.dumps(rec["tags"], ensure_ascii=False) if rec.get("tags") else None
    row["received_at"] = received_at
    row["excluded"] = False
    row["effective_at"], row["time_source"] = clock.effective_time(conn, rec, received_at)
    return row


class Ingestor:
    def __init__(self, engine):
        self.engine = engine
        self._keys: dict[str, bytes] = {}

    def device_key(self, conn, device_id: str) -> bytes | None:
        key = self._keys.get(device_id)
        if key is None:
            hexkey = conn.execute(
                select(db.devices.c.key_hex).where(db.devices.c.device_id == device_id)
            ).scalar()
            if hexkey is None:
                return None
            key = self._keys[device_id] = binascii.unhexlify(hexkey)
        return key

    def process(self, topic: str, payload: bytes, retained: bool = False) -> Outcome:
        """Decide about one message; `retained` is MQTT's flag (an old status
        replayed by the broker says nothing about the device's clock now)."""
        received_at = db.utc_now()
        try:
            device_id, kind = topics.parse(topic)
        except topics.TopicError as exc:
            return self.quarantine_message(topic, None, str(exc), payload, received_at)
        if kind == topics.UP_EV:
            return self._batch(topic, device_id, payload, received_at)
        if kind == topics.UP_STATUS:
            return self._status(topic, device_id, payload, received_at, retained)
        reason = "topic: the collector does not take " + kind + " messages"
        return self.quarantine_message(topic, device_id, reason, payload, received_at)

    def quarantine_message(self, topic, device_id, reason, payload, received_at=None) -> Outcome:
        """Keep a whole message aside with the reason it was not taken."""
        received_at = received_at or db.utc_now()
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        with self.engine.begin() as conn:
            conn.execute(
                db.quarantine.insert().values(
                    received_at=received_at,
                    topic=topic,
                    device_id=device_id,
                    record_id=None,
                    reason=reason,
                    payload=text,
                )
            )
        log.warning("quarantined a message on %s: %s", topic, reason)
        return Outcome(quarantined=[reason])

    def _status(self, topic, device_id, payload, received_at, retained) -> Outcome:
        try:
            msg = messages.decode(payload, messages.STATUS)
        except messages.MessageError as exc:
            return self.quarantine_message(topic, device_id, str(exc), payload, received_at)
        with self.engine.begin() as conn:
            conn.execute(
                db.devices.update()
                .where(db.devices.c.device_id == device_id)
                .values(last_seen=received_at, status=json.dumps(msg, ensure_ascii=False))
            )
            if not retained:
                clock.record_boot_clock(conn, device_id, msg, received_at)
        return Outcome()

    def _batch(self, topic, device_id, payload, received_at) -> Outcome:
        try:
            msg = messages.decode(payload, messages.EV)
        except messages.MessageError as exc:
            return self.quarantine_message(topic, device_id, str(exc), payload, received_at)

        outcome = Outcome()
        held = []  # quarantine rows
        ack_quarantined = []
        candidates: dict[str, dict] = {}
        with self.engine.begin() as conn:
            key = self.device_key(conn, device_id)
            for rec in msg["records"]:
                reason = self._check(rec, device_id, key)
                own = isinstance(rec, dict) and rec.get("device_id") == device_id
                seq = rec.get("seq") if isinstance(rec, dict) else None
                if reason is None and rec["id"] in candidates:
                    if candidates[rec["id"]]["sig"] == rec["sig"]:
                        outcome.duplicates.append(seq)
                        continue
                    reason = "id: sent twice in one batch with different content"
                if reason is not None:
                    held.append((rec, reason))
                    # Only the device's own seqs may be acked: a seq named on this
                    # device's ack topic makes this device forget its own record.
                    if own and isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
                        ack_quarantined.append(seq)
                    continue
                candidates[rec["id"]] = rec

            if candidates:
                existing = dict(
                    conn.execute(
                        select(db.evaluations.c.id, db.evaluations.c.sig).where(
                            db.evaluations.c.id.in_(list(candidates))
                        )
                    ).all()
                )
                for rec_id, sig in existing.items():
                    rec = candidates.pop(rec_id)
                    if sig == rec["sig"]:
                        outcome.duplicates.append(rec["seq"])
                    else:
                        held.append((rec, "id: already stored with different content"))
                        ack_quarantined.append(rec["seq"])
            if candidates:
                rows = [_row(conn, rec, received_at) for rec in candidates.values()]
                conn.execute(db.insert_ignoring_duplicates(self.engine, db.evaluations, "id"), rows)
                outcome.stored = [rec["seq"] for rec in candidates.values()]
            new_rows = self._new_quarantine_rows(conn, topic, device_id, held, received_at)
            if new_rows:
                conn.execute(db.quarantine.insert(), new_rows)
                outcome.quarantine_rows_added = len(new_rows)
            conn.execute(
                db.devices.update()
                .where(db.devices.c.device_id == device_id)
                .values(last_seen=received_at)
            )
        # committed: now the ack may name these seqs
        outcome.quarantined = [reason for _rec, reason in held]
        for _rec, reason in held:
            log.warning("quarantined a record from %s: %s", device_id, reason)
        if key is None:
            # Nothing to sign an ack with: the device keeps its records and sends
            # them again, and they are stored once it has been provisioned.
            return outcome
        ack = messages.ack(
            msg["batch"], outcome.stored + outcome.duplicates, sorted(set(ack_quarantined))
        )
        outcome.ack_topic = topics.topic(device_id, topics.DOWN_ACK)
        outcome.ack_payload = messages.encode_signed(ack, key)
        return outcome

    @staticmethod
    def _new_quarantine_rows(conn, topic, device_id, held, received_at) -> list[dict]:
        """Quarantine rows for `held`, leaving out a record already kept aside
        for the same reason (a device sending it again before it is acked)."""
        held = [(rec, _record_id(rec), reason) for rec, reason in held]
        ids = [rec_id for _rec, rec_id, _reason in held if rec_id is not None]
        known = set()
        if ids:
            known = set(
                conn.execute(
                    select(db.quarantine.c.record_id, db.quarantine.c.reason).where(
                        db.quarantine.c.device_id == device_id,
                        db.quarantine.c.record_id.in_(ids),
                    )
                ).all()
            )
        rows = []
        for rec, rec_id, reason in held:
            if rec_id is not None and (rec_id, reason) in known:
                continue
            known.add((rec_id, reason))
            rows.append(
                {
                    "received_at": received_at,
                    "topic": topic,
                    "device_id": device_id,
                    "record_id": rec_id,
                    "reason": reason,
                    "payload": _text(rec),
                }
            )
        return rows

    @staticmethod
    def _check(rec, device_id: str, key: bytes | None) -> str | None:
        """The reason a record may not be counted, or None."""
        try:
            record.validate(rec)
        except record.RecordError as exc:
            return str(exc)
        if rec.get("device_id") != device_id:
            return (
                "device_id: record of "
                + repr(rec.get("device_id"))
                + " arrived on the topic of "
                + repr(device_id)
            )
        if key is None:
            return "device_id: unknown device " + repr(device_id) + " (not provisioned)"
        if rec.get("sig") is None:
            return "sig: is required"
        if not sign.verify(rec, key):
            return "sig: does not verify with the key of device " + repr(device_id)
        return None


def _record_id(rec) -> str | None:
    """The record's id for the quarantine list, if it has a usable one."""
    rec_id = rec.get("id") if isinstance(rec, dict) else None
    return rec_id if isinstance(rec_id, str) and len(rec_id) <= 100 else None


def _text(rec) -> str:
    try:
        return dumps(rec).decode("utf-8")
    except ValueError:
        return repr(rec)


class IngestService:
    """Subscribes to every device's up/ev and up/status and feeds the Ingestor."""

    def __init__(
        self,
        engine,
        host: str,
        port: int,
        client_id: str = "hcp-collector",
        username: str | None = None,
        password: str | None = None,
    ):
        self.ingestor = Ingestor(engine)
        self.host, self.port = host, port
        self.records_stored = 0
        self.messages_seen = 0
        self.failures = 0
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._failed = threading.Event()  # set from a failure until the reconnect
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 10)

    def _on_connect(self, client, _userdata, _flags, reason_code, _props):
        if reason_code.is_failure:
            log.error("broker refused the collector: %s", reason_code)
            return
        client.subscribe(
            [(topics.subscription(topics.UP_EV), 1), (topics.subscription(topics.UP_STATUS), 1)]
        )
        self.connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props):
        self.connected.clear()
        log.info("collector disconnected from the broker: %s", reason_code)

    def _on_message(self, client, _userdata, message):
        if self._failed.is_set():
            return  # no PUBACK: it comes again after the reconnect
        try:
            outcome = self.ingestor.process(message.topic, message.payload, bool(message.retain))
        except DBAPIError:
            # The database is unreachable, locked or broken. Without a PUBACK the
            # broker keeps the message in our persistent session; reconnecting
            # makes it deliver it (and everything after it) again.
            log.exception("ingest failed for a message on %s; reconnecting", message.topic)
            with self._lock:
                self.failures += 1
            self._failed.set()
            threading.Thread(target=self._recover, name="ingest-recover", daemon=True).start()
            return
        except Exception as exc:
            # A bug met an input nobody foresaw. Retrying would block every later
            # message behind this one, so it is kept aside with the error instead.
            log.exception("ingest error for a message on %s; quarantined", message.topic)
            with self._lock:
                self.failures += 1
            outcome = self.ingestor.quarantine_message(
                message.topic, None, f"ingest error: {exc!r}", message.payload
            )
        if outcome.ack_topic:
            client.publish(outcome.ack_topic, outcome.ack_payload, qos=1)
        client.ack(message.mid, message.qos)
        with self._lock:
            self.messages_seen += 1
            self.records_stored += len(outcome.stored)

    def _recover(self, pause: float = 1.0) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        time.sleep(pause)
        self._failed.clear()
        while True:
            try:
                self.client.reconnect()
                break
            except OSError as exc:
                log.warning("collector reconnect failed: %s", exc)
                time.sleep(pause)
        self.client.loop_start()

    def start(self, timeout: float = 10) -> None:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise RuntimeError(
                f"the collector could not subscribe at mqtt://{self.host}:{self.port}"
            )

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
