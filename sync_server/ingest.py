"""MQTT ingest: verify, store, then acknowledge (docs/protocol.md §3.2).

`Ingestor.process()` is the whole decision for one incoming message and is
independent of MQTT; `IngestService` wires it to a broker with paho-mqtt,
sending the MQTT PUBACK only after the batch is committed and the ack
published, so a collector that dies mid-batch gets the message again.

A batch goes through three steps:

- classify: each record checked against the contract and the sending device
  (its topic, its kind, its key), with no database work;
- store: the accepted records inserted in bulk in one transaction, together
  with what is kept aside and the contacts; a record the database refuses
  (an integrity or data error) is found by storing the batch record by
  record, and kept aside alone: one bad record never blocks the others, and
  only a lost database connection is an outage;
- ack: signed with the device's key, naming the seqs stored or kept aside.
"""

from __future__ import annotations

import binascii
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from sqlalchemy import func, select, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from protocols import messages, record, topics
from protocols.levels import is_bad
from sync_server import clock, db, features, pg_array, quarantine, record_fast
from sync_server import contacts as sealed_contacts
from sync_server.schema_fleet import fleet_seq_gaps

log = logging.getLogger(__name__)

COLLECTOR_FIELDS = (
    "received_at",
    "excluded",
    "effective_at",
    "time_source",
    "reason_owed",
    "repeat_of",
)
EV_FIELDS = [c.name for c in db.evaluations.columns if c.name not in COLLECTOR_FIELDS]

# Errors that belong to one record or message, not to the database as a whole:
# the record is kept aside and ingest goes on. Every other database error
# (a lost connection, a locked or broken database) is an outage: no PUBACK,
# reconnect, and the broker delivers the message again.
MAX_GROUP = 256  # messages decided and committed in one transaction at most

READY_GROUPS = 2  # groups prepared ahead of the worker at most

POISON = (IntegrityError, DataError, ValueError, TypeError, OverflowError, UnicodeError)


@dataclass
class Outcome:
    """What one message did: the reply to publish (an ack, or a seq answer
    to a status) if any, and the counts."""

    ack_topic: str | None = None
    ack_payload: bytes | None = None
    stored: list[int] = field(default_factory=list)  # seqs new in the store
    duplicates: list[int] = field(default_factory=list)  # seqs that were there already
    quarantined: list[str] = field(default_factory=list)  # reasons
    quarantine_rows_added: int = 0  # repeats of a record already kept aside add none
    quarantine_turned_away: int = 0  # rows the quarantine's bounds did not keep
    ack_quarantined: list[int] = field(default_factory=list)  # own seqs kept aside
    error: bool = False  # an unforeseen error set the message aside (after_error)


@dataclass
class Device:
    device_id: str
    key: bytes
    kind: str


@dataclass
class Held:
    """A record (or contact) kept aside: why, and the seq the ack may name."""

    rec: object
    reason: str
    ack_seq: int | None  # only the sending device's own seqs are ever acked
    record_id: str | None = None


@dataclass
class Plan:
    """classify()'s decision for one batch."""

    accepted: dict[str, dict] = field(default_factory=dict)  # id -> record
    repeated: list[int] = field(default_factory=list)  # same record twice in the batch
    held: list[Held] = field(default_factory=list)
    contacts: dict[str, str] = field(default_factory=dict)  # record id -> phone


@dataclass
class Prepared:
    """A batch decoded and classified ahead of its transaction (on another
    thread, while the previous group commits), with the device as cached then."""

    device_id: str
    msg: dict
    device: Device
    plan: Plan


def _own_seq(rec, device_id: str) -> int | None:
    """The seq an ack may name for `rec`: only a record that is the device's own."""
    if not isinstance(rec, dict) or rec.get("device_id") != device_id:
        return None
    seq = rec.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= record.MAX_SEQ:
        if rec.get("id") == record.device_record_id(device_id, seq):
            return seq
    return None


def _record_id(rec) -> str | None:
    rec_id = rec.get("id") if isinstance(rec, dict) else None
    return rec_id if isinstance(rec_id, str) and len(rec_id) <= record.MAX_ID else None


def check_record(rec, device_id: str, device: Device | None) -> str | None:
    """The reason a record from `device_id`'s topic may not be counted, or None."""
    try:
        plain = record_fast.check(rec)  # record.validate, skipped for a plainly valid record
    except record.RecordError as exc:
        return str(exc)
    if rec.get("device_id") != device_id:
        return (
            "device_id: record of "
            + repr(rec.get("device_id"))
            + " arrived on the topic of "
            + repr(device_id)
        )
    if device is None:
        return "device_id: unknown device " + repr(device_id) + " (not provisioned)"
    if rec["channel"] != device.kind:
        return "channel: device " + repr(device_id) + " is a " + device.kind
    if rec.get("sig") is None:
        return "sig: is required"
    if not record_fast.verify(rec, device.key, plain):
        return "sig: does not verify with the key of device " + repr(device_id)
    return None


def classify(msg: dict, device_id: str, device: Device | None) -> Plan:
    """Decide about every record and contact of a decoded batch; no database work."""
    plan = Plan()
    for rec in msg["records"]:
        reason = check_record(rec, device_id, device)
        if reason is None and rec["id"] in plan.accepted:
            if plan.accepted[rec["id"]]["sig"] == rec["sig"]:
                plan.repeated.append(rec["seq"])
                continue
            reason = "id: sent twice in one batch with different content"
        if reason is not None:
            plan.held.append(Held(rec, reason, _own_seq(rec, device_id), _record_id(rec)))
            continue
        plan.accepted[rec["id"]] = rec
    for entry in msg.get("contacts") or ():
        reason = messages.contact_problem(entry)
        if reason is None and entry["id"] not in plan.accepted:
            reason = "contact.id: no record " + entry["id"] + " of this device in the batch"
        if reason is None and entry["id"] in plan.contacts:
            reason = "contact.id: two contacts for " + entry["id"]
        if reason is None and (device is None or not record_fast.verify(entry, device.key)):
            reason = "contact.sig: does not verify with the key of device " + repr(device_id)
        if reason is not None:
            rec_id = entry.get("id") if isinstance(entry, dict) else None
            plan.held.append(
                Held(entry, reason, None, rec_id if record.valid_record_id(rec_id) else None)
            )
            continue
        plan.contacts[entry["id"]] = entry["contact"]
    return plan


def evaluation_row(rec: dict, received_at: str, refs: dict) -> dict:
    row = {name: rec.get(name) for name in EV_FIELDS}
    row["tags"] = json.dumps(rec["tags"], ensure_ascii=False) if rec.get("tags") else None
    row["received_at"] = received_at
    row["excluded"] = False
    row["reason_owed"] = is_bad(rec["stars"]) and not rec.get("tags") and not rec.get("comment")
    row["effective_at"], row["time_source"] = clock.effective_time(rec, received_at, refs)
    return row


class Ingestor:
    def __init__(self, engine, bounds: quarantine.Bounds | None = None):
        self.engine = engine
        self.bounds = bounds or quarantine.Bounds()
        self._devices: dict[str, Device] = {}
        # device -> (boot_id, last_seq) of its last status found level with the
        # seqs held: a later status of that boot reporting no fewer is not asked
        # about again (seqs_held reads every rating of the device)
        self._level: dict[str, tuple[str, int]] = {}

    def device(self, conn, device_id: str) -> Device | None:
        """The provisioned device (its key and kind), or None; cached once known.
        `conn` None: a connection is opened only when the cache does not know it."""
        known = self._devices.get(device_id)
        if known is None and conn is None:
            with self.engine.connect() as own:
                return self.device(own, device_id)
        if known is None:
            d = db.devices.c
            row = conn.execute(select(d.key_hex, d.kind).where(d.device_id == device_id)).first()
            if row is None:
                return None
            known = Device(device_id, binascii.unhexlify(row.key_hex), row.kind)
            self._devices[device_id] = known
        return known

    def forget(self, device_id: str) -> None:
        """Drop a cached device (after its key or kind changed)."""
        self._devices.pop(device_id, None)
        self._level.pop(device_id, None)

    def _classify(self, conn, msg: dict, device_id: str) -> tuple[Device | None, Plan]:
        """classify() with the cached device; if a signature fails with the
        cached key, the device is read again (re-provisioning gives it a new
        key while the collector runs) and the batch decided with what it holds."""
        device = self.device(conn, device_id)
        plan = classify(msg, device_id, device)
        if device is not None and any(h.reason.startswith("sig: ") for h in plan.held):
            self.forget(device_id)
            fresh = self.device(conn, device_id)
            if fresh is None or fresh.key != device.key or fresh.kind != device.kind:
                device = fresh
                plan = classify(msg, device_id, device)
        return device, plan

    def process(self, topic: str, payload: bytes, retained: bool = False) -> Outcome:
        """Decide about one message; `retained` is MQTT's flag (an old status
        replayed by the broker says nothing about the device's clock now)."""
        received_at = db.utc_now()
        kind = _kind(topic)
        if kind == topics.UP_EV:
            return self._batch(topic, topics.parse(topic)[0], payload, received_at)
        with self.engine.begin() as conn:
            return self._decide(conn, topic, payload, retained, received_at)

    def prepare(self, topic: str, payload: bytes) -> Prepared | None:
        """The CPU part of deciding an up/ev batch (decode, check, verify),
        with no database work, for process_many() to use; None where nothing
        may be decided early (not a batch that decodes, a device not cached,
        a signature that fails): the transaction decides those as always."""
        decoded = self._decoded_batch(topic, payload)
        if decoded is None:
            return None
        device_id, msg = decoded
        device = self._devices.get(device_id)
        if device is None:
            return None
        plan = classify(msg, device_id, device)
        if any(h.reason.startswith("sig: ") for h in plan.held):
            return None
        return Prepared(device_id, msg, device, plan)

    def process_many(
        self, items: list[tuple[str, bytes, bool]], prepared: list[Prepared | None] | None = None
    ) -> list[Outcome]:
        """Decide about several messages, (topic, payload, retained) each, and
        store them all in one transaction: one commit (one fsync) for the
        group. The outcomes are exactly those process() would give one by
        one; when the database refuses something in the group, or deciding a
        message fails, the group is rolled back and each message goes through
        process() alone, which keeps aside only what is refused. A lost
        database is an outage, as for process(). `prepared`, from prepare()
        for each item, saves deciding again what was decided already; a
        batch prepared with a device the cache no longer holds (a status
        re-read it) is decided again."""
        if len(items) == 1:
            return [self.process_safely(*items[0])]
        received_at = db.utc_now()
        try:
            with self.engine.begin() as conn:
                touched: set[str] = set()
                stored_rows: list[dict] = []
                outcomes = self._decide_group(
                    conn, items, received_at, touched, stored_rows, prepared
                )
                _touch(conn, sorted(touched), received_at)  # one statement for the group
                # figures, cases and the outbox once for the group, not per message
                features.after_store(conn, stored_rows)
                return outcomes
        except DBAPIError as exc:
            if not _poison(exc):
                raise
            log.warning("the database refused part of a group of %d messages: %r", len(items), exc)
        except Exception as exc:  # noqa: BLE001 - each message is decided alone below
            log.warning("deciding a group of %d messages failed: %r", len(items), exc)
        return [self.process_safely(topic, payload, retained) for topic, payload, retained in items]

    def _decide_group(
        self, conn, items, received_at, touched, stored_rows, prepared=None
    ) -> list[Outcome]:
        """Every message of a group decided in `conn`'s transaction. Consecutive
        batches that decode are stored together as a run (one look-up of stored
        ids, one insert). A device's status (a keypad sends one after each ack)
        waits for the end of the run, unless a later batch of the same device
        comes first: it concerns only its own device, whose earlier batches it
        then sees stored and whose later ones see what it did, exactly as one
        message at a time. Anything else (a message kept aside whole) is
        decided alone at its place."""
        outcomes: list[Outcome | None] = [None] * len(items)
        run: list[tuple[int, str, str, dict, Prepared | None]] = []
        statuses: list[tuple[int, str, bytes, bool]] = []  # waiting for the run's end
        waiting: set[str] = set()  # the devices of those statuses

        def flush():
            if run:
                self._store_run(conn, run, received_at, outcomes, touched, stored_rows)
                run.clear()
            for index, topic, payload, retained in statuses:
                outcomes[index] = self._decide(
                    conn, topic, payload, retained, received_at, touched, stored_rows
                )
            statuses.clear()
            waiting.clear()

        for index, (topic, payload, retained) in enumerate(items):
            early = prepared[index] if prepared is not None else None
            batch = (early.device_id, early.msg) if early is not None else None
            if batch is None:
                batch = self._decoded_batch(topic, payload)
            if batch is not None:
                if batch[0] in waiting:
                    flush()
                run.append((index, topic, *batch, early))
                continue
            status_of = _status_device(topic)
            if run and status_of is not None:
                statuses.append((index, topic, payload, retained))
                waiting.add(status_of)
                continue
            flush()
            outcomes[index] = self._decide(
                conn, topic, payload, retained, received_at, touched, stored_rows
            )
        flush()
        return outcomes

    def _decoded_batch(self, topic: str, payload: bytes) -> tuple[str, dict] | None:
        """(device_id, batch) for an up/ev message that decodes and names its
        topic's device; None for anything _decide() must look at alone."""
        try:
            device_id, kind = topics.parse(topic)
        except topics.TopicError:
            return None
        if kind != topics.UP_EV:
            return None
        msg, _reason = self._decode_batch(device_id, payload)
        return None if msg is None else (device_id, msg)

    def _store_run(self, conn, run, received_at, outcomes, touched, stored_rows) -> None:
        """Batches decided as _store_in() would one after another, with one
        query for the ids stored already and one insert for the whole run: a
        record stored by an earlier batch of the run counts as stored for a
        later one (a duplicate, or kept aside when its content differs)."""
        decided = []
        for index, topic, device_id, msg, early in run:
            if early is not None and self._devices.get(device_id) is early.device:
                device, plan = early.device, early.plan
            else:
                device, plan = self._classify(conn, msg, device_id)
            touched.add(device_id)
            decided.append((index, topic, device_id, msg, device, plan))
        _lock_devices(conn, {d for _, _, d, _, _, plan in decided if plan.accepted})
        known = _stored_sigs(conn, [i for *_, plan in decided for i in plan.accepted])
        parts, fresh_by_device = [], {}
        for index, topic, device_id, msg, device, plan in decided:
            outcome = Outcome(duplicates=list(plan.repeated))
            held = list(plan.held)
            fresh = []
            for rec_id, rec in plan.accepted.items():
                if rec_id not in known:
                    known[rec_id] = rec["sig"]
                    fresh.append(rec)
                elif known[rec_id] == rec["sig"]:
                    outcome.duplicates.append(rec["seq"])
                else:
                    reason = "id: already stored with different content"
                    held.append(Held(rec, reason, rec["seq"], rec_id))
            fresh_by_device.setdefault(device_id, []).extend(fresh)
            outcome.stored = [rec["seq"] for rec in fresh]
            parts.append((index, topic, device_id, msg, device, plan, held, fresh, outcome))
        refs = {
            device_id: clock.boot_refs(conn, device_id, recs)
            for device_id, recs in fresh_by_device.items()
            if recs
        }
        rows = [
            evaluation_row(rec, received_at, refs[device_id])
            for _, _, device_id, _, _, _, _, fresh, _ in parts
            for rec in fresh
        ]
        # the ids were found absent under _lock_devices (PostgreSQL) or the
        # single writer (SQLite): a conflict would be a bug, raised
        features.store_evaluations(conn, self.engine, rows, after=False, ids_locked=True)
        stored_rows.extend(rows)
        for index, topic, device_id, msg, device, plan, held, _, outcome in parts:
            if held or plan.contacts:  # the rare case: _store_in keeps them as it always does
                rest = Plan(held=held, contacts=plan.contacts)
                _merge(outcome, self._store_in(conn, topic, device_id, rest, received_at, False))
            outcomes[index] = self._ack(msg, device, outcome)

    def process_safely(self, topic: str, payload: bytes, retained: bool = False) -> Outcome:
        """process(), where an unforeseen error (a bug meeting an input nobody
        foresaw) sets the message aside through after_error() instead of
        stopping the ingest; a lost database still raises."""
        try:
            return self.process(topic, payload, retained)
        except DBAPIError:
            raise
        except Exception as exc:  # noqa: BLE001 - see after_error
            log.exception("ingest error for a message on %s; kept aside", topic)
            outcome = self.after_error(topic, payload, exc)
            outcome.error = True
            return outcome

    def _decide(
        self, conn, topic, payload, retained, received_at, touched=None, stored_rows=None
    ) -> Outcome:
        """One message decided and stored inside `conn`'s transaction. With
        `touched`, the device's last_seen is left to the caller (its id added);
        with `stored_rows`, so are the features' after steps (the new rows added)."""
        try:
            device_id, kind = topics.parse(topic)
        except topics.TopicError as exc:
            return self._quarantine_in(conn, topic, None, str(exc), payload, received_at)
        if kind == topics.UP_STATUS:
            return self._status_in(conn, topic, device_id, payload, received_at, retained)
        if kind != topics.UP_EV:
            reason = "topic: the collector does not take " + kind + " messages"
            return self._quarantine_in(conn, topic, device_id, reason, payload, received_at)
        msg, reason = self._decode_batch(device_id, payload)
        if msg is None:
            return self._quarantine_in(conn, topic, device_id, reason, payload, received_at)
        device, plan = self._classify(conn, msg, device_id)
        if touched is not None:
            touched.add(device_id)
        stored = self._store_in(
            conn, topic, device_id, plan, received_at, touched is None, stored_rows
        )
        return self._ack(msg, device, stored)

    def quarantine_message(self, topic, device_id, reason, payload, received_at=None) -> Outcome:
        """Keep a whole message aside with the reason it was not taken (once)."""
        with self.engine.begin() as conn:
            return self._quarantine_in(conn, topic, device_id, reason, payload, received_at)

    def _quarantine_in(self, conn, topic, device_id, reason, payload, received_at=None):
        received_at = received_at or db.utc_now()
        row = quarantine.entry(topic, device_id, None, reason, payload, received_at)
        (state,) = quarantine.keep(conn, [row], self.bounds)
        log.warning("quarantined a message on %s: %s", row["topic"], row["reason"])
        return Outcome(
            quarantined=[reason],
            quarantine_rows_added=int(state == quarantine.NEW),
            quarantine_turned_away=int(state == quarantine.DROPPED),
        )

    def after_error(self, topic: str, payload: bytes, exc: BaseException) -> Outcome:
        """A bug met an input nobody foresaw. Retrying would block every later
        message behind this one, so the message's records are kept aside with
        the error and acknowledged as quarantined (their device may forget
        them), or, when it cannot be read as a batch, the message is kept whole."""
        reason = "ingest error: " + type(exc).__name__
        received_at = db.utc_now()
        try:
            device_id, kind = topics.parse(topic)
            msg = messages.decode(payload, messages.EV) if kind == topics.UP_EV else None
        except (topics.TopicError, messages.MessageError):
            msg = None
        if msg is None or msg["device_id"] != device_id:
            return self.quarantine_message(topic, None, reason, payload, received_at)
        device = self.device(None, device_id)
        plan = Plan()
        for rec in msg["records"]:
            plan.held.append(Held(rec, reason, _own_seq(rec, device_id), _record_id(rec)))
        with self.engine.begin() as conn:
            outcome = self._store_in(conn, topic, device_id, plan, received_at)
        return self._ack(msg, device, outcome)

    def _status_in(self, conn, topic, device_id, payload, received_at, retained) -> Outcome:
        try:
            msg = messages.decode(payload, messages.STATUS)
        except messages.MessageError as exc:
            return self._quarantine_in(conn, topic, device_id, str(exc), payload, received_at)
        outcome = Outcome()
        conn.execute(
            db.devices.update()
            .where(db.devices.c.device_id == device_id)
            .values(last_seen=received_at, status=json.dumps(msg, ensure_ascii=False))
        )
        if not retained:
            clock.record_boot_clock(conn, device_id, msg, received_at)
        if msg["online"] and msg.get("boot_id"):
            device = self._read_again(conn, device_id)  # its key now signs the answer
            if device is not None and not self._still_level(device_id, msg):
                self._answer_seq(conn, device, msg, outcome)
                if outcome.ack_topic is None and msg.get("last_seq") is not None:
                    self._level[device_id] = (msg["boot_id"], msg["last_seq"])
        return outcome

    def _read_again(self, conn, device_id: str) -> Device | None:
        """The device as stored now. The cached copy stays when its key and
        kind are the same, so a batch verified with it before this status (by
        prepare) is not verified again."""
        cached = self._devices.pop(device_id, None)
        fresh = self.device(conn, device_id)
        if fresh is None or cached is None or (cached.key, cached.kind) != (fresh.key, fresh.kind):
            self._level.pop(device_id, None)  # another key: another board, perhaps
            return fresh
        self._devices[device_id] = cached
        return cached

    def _still_level(self, device_id: str, msg: dict) -> bool:
        """True when this boot already reported seqs level with those held and
        reports no fewer now: within one boot a device's seqs only grow, and
        what the collector holds for it came from it. A new boot (an old flash
        image put back, a lost store), a missing or smaller `last_seq`, or a
        collector started since, asks again (docs/protocol.md §3.6)."""
        last = msg.get("last_seq")
        level = self._level.get(device_id)
        return (
            last is not None
            and level is not None
            and level[0] == msg["boot_id"]
            and (last >= level[1])
        )

    @staticmethod
    def _answer_seq(conn, device: Device, msg: dict, outcome: Outcome) -> None:
        """A device that does not know its seqs (no `last_seq`: its store lost
        its state) or reports fewer than the collector holds (an old flash
        image) is told the highest seq held for it, stored or kept aside, with
        the per-level counts of what is stored, signed and bound to the boot
        that asked (docs/protocol.md §3.6)."""
        highest, counts = seqs_held(conn, device.device_id)
        # seqs noted lost with a wiped board (re-provisioning) are never used again,
        # even by a board that loses its store once more before storing anything
        g = fleet_seq_gaps.c
        lost = conn.execute(
            select(func.max(g.last_seq)).where(g.device_id == device.device_id)
        ).scalar()
        highest = max(highest, lost or 0)
        last = msg.get("last_seq")
        if last is not None and last >= highest:
            return
        if last is not None:
            log.warning(
                "%s reports last_seq %d below the %d the collector holds; told it",
                device.device_id,
                last,
                highest,
            )
        answer = messages.seq(msg["boot_id"], highest, counts)
        outcome.ack_topic = topics.topic(device.device_id, topics.DOWN_SEQ)
        outcome.ack_payload = messages.encode_signed(answer, device.key)

    @staticmethod
    def _decode_batch(device_id, payload):
        """(the decoded batch, None), or (None, why it is kept aside whole)."""
        try:
            msg = messages.decode(payload, messages.EV)
        except messages.MessageError as exc:
            return None, str(exc)
        if msg["device_id"] != device_id:
            reason = (
                "ev.device_id: " + repr(msg["device_id"]) + " on the topic of " + repr(device_id)
            )
            return None, reason
        return msg, None

    def _batch(self, topic, device_id, payload, received_at) -> Outcome:
        msg, reason = self._decode_batch(device_id, payload)
        if msg is None:
            return self.quarantine_message(topic, device_id, reason, payload, received_at)
        with self.engine.connect() as conn:
            device, plan = self._classify(conn, msg, device_id)
        outcome = self._store(topic, device_id, plan, received_at)
        return self._ack(msg, device, outcome)

    def _store(self, topic, device_id, plan: Plan, received_at) -> Outcome:
        """The plan stored in one transaction; if the database refuses part of
        it, record by record, so only the records it refuses are kept aside."""
        try:
            with self.engine.begin() as conn:
                return self._store_in(conn, topic, device_id, plan, received_at)
        except Exception as exc:  # noqa: BLE001 - sorted into poison and outage below
            if not _poison(exc):
                raise
            log.warning("the database refused part of a batch from %s: %r", device_id, exc)
        outcome = Outcome(duplicates=list(plan.repeated))
        for rec_id, rec in plan.accepted.items():
            single = Plan(accepted={rec_id: rec})
            if rec_id in plan.contacts:
                single.contacts[rec_id] = plan.contacts[rec_id]
            try:
                with self.engine.begin() as conn:
                    part = self._store_in(conn, topic, device_id, single, received_at)
            except Exception as exc:  # noqa: BLE001
                if not _poison(exc):
                    raise
                reason = "database: refused the record (" + type(exc).__name__ + ")"
                refused = Plan(held=[Held(rec, reason, rec["seq"], rec_id)])
                with self.engine.begin() as conn:
                    part = self._store_in(conn, topic, device_id, refused, received_at)
            _merge(outcome, part)
        if plan.held:
            with self.engine.begin() as conn:
                _merge(
                    outcome,
                    self._store_in(conn, topic, device_id, Plan(held=plan.held), received_at),
                )
        return outcome

    def _store_in(
        self, conn, topic, device_id, plan: Plan, received_at, touch=True, stored_rows=None
    ) -> Outcome:
        outcome = Outcome(duplicates=list(plan.repeated))
        accepted = dict(plan.accepted)
        held = list(plan.held)
        if accepted:
            _lock_device(conn, device_id)
            ev = db.evaluations.c
            existing = conn.execute(select(ev.id, ev.sig).where(ev.id.in_(list(accepted)))).all()
            for rec_id, sig in existing:
                rec = accepted.pop(rec_id)
                if sig == rec["sig"]:
                    outcome.duplicates.append(rec["seq"])
                else:
                    reason = "id: already stored with different content"
                    held.append(Held(rec, reason, rec["seq"], rec_id))
        if accepted:
            refs = clock.boot_refs(conn, device_id, accepted.values())
            rows = [evaluation_row(rec, received_at, refs) for rec in accepted.values()]
            features.store_evaluations(
                conn, self.engine, rows, after=stored_rows is None, ids_locked=True
            )
            if stored_rows is not None:
                stored_rows.extend(rows)
            outcome.stored = [rec["seq"] for rec in accepted.values()]
        refused = {h.record_id for h in held if h.ack_seq is not None}
        contacts = [  # sealed: the number is never in the database in clear
            sealed_contacts.sealed_row(self.engine, rec_id, phone, received_at)
            for rec_id, phone in plan.contacts.items()
            if rec_id not in refused
        ]
        if contacts:  # the first contact given is kept; a repeat changes nothing
            conn.execute(
                db.insert_ignoring_duplicates(self.engine, db.contacts, "record_id"), contacts
            )
        if held:
            rows = [
                quarantine.entry(topic, device_id, h.record_id, h.reason, h.rec, received_at)
                for h in held
            ]
            states = quarantine.keep(conn, rows, self.bounds)
            for h, state in zip(held, states, strict=True):
                outcome.quarantined.append(h.reason)
                if state == quarantine.DROPPED:
                    # not kept aside, so not acked: the device keeps it and sends it again
                    outcome.quarantine_turned_away += 1
                    continue
                outcome.quarantine_rows_added += int(state == quarantine.NEW)
                if h.ack_seq is not None:
                    outcome.ack_quarantined.append(h.ack_seq)
        if touch:
            _touch(conn, [device_id], received_at)
        for reason in outcome.quarantined:
            log.warning("quarantined a record from %s: %s", device_id, reason)
        return outcome

    @staticmethod
    def _ack(msg: dict, device: Device | None, outcome: Outcome) -> Outcome:
        """Committed: now the ack may name the seqs. A device the collector does
        not know gets none (there is no key to sign it with): it keeps its
        records and sends them again, and they are stored once it is provisioned."""
        if device is None:
            return outcome
        ack = messages.ack(
            msg["batch"],
            sorted(set(outcome.stored + outcome.duplicates)),
            sorted(set(outcome.ack_quarantined)),
        )
        outcome.ack_topic = topics.topic(device.device_id, topics.DOWN_ACK)
        outcome.ack_payload = messages.encode_signed(ack, device.key)
        return outcome


def seqs_held(conn, device_id: str) -> tuple[int, dict[str, int]]:
    """The highest seq of `device_id` the collector holds (stored, or kept
    aside under the device's own id) and the stored records per level."""
    e = db.evaluations.c
    rows = conn.execute(
        select(e.stars, func.count(), func.max(e.seq))
        .where(e.device_id == device_id)
        .group_by(e.stars)
    ).all()
    counts = {str(stars): 0 for stars in range(1, 6)}
    highest = 0
    for stars, count, top in rows:
        if str(stars) in counts:
            counts[str(stars)] = int(count)
        highest = max(highest, int(top or 0))
    q = db.quarantine.c
    prefix = device_id + ":"
    kept = conn.execute(
        select(q.record_id).where(q.device_id == device_id, q.record_id.like(prefix + "%"))
    ).scalars()
    for record_id in kept:
        tail = record_id[len(prefix) :]  # LIKE's _ matches any character: check again
        if record_id.startswith(prefix) and record.digits(tail) and len(tail) <= 10:
            highest = max(highest, min(int(tail), record.MAX_SEQ))
    return highest, counts


def _lock_device(conn, device_id: str) -> None:
    """Collectors in a shared subscription may get two copies of one batch at
    once (a resend while the first is committing). On PostgreSQL a lock per
    device, held to the end of the transaction, makes the check for stored
    ids and the insert one step, so every feature's after_store sees each
    rating exactly once. (An executemany with ON CONFLICT DO NOTHING alone
    would skip the row but not the figures and cases built from it; a
    multi-row INSERT … RETURNING was measured slower: 647 against 1,186
    records/s.) SQLite has a single writer already."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:device))"), {"device": device_id})


def _lock_devices(conn, device_ids) -> None:
    """_lock_device() for several devices in one statement, in the order of
    their lock keys, so two collectors locking overlapping sets never wait
    on each other in a circle."""
    if conn.dialect.name == "postgresql" and device_ids:
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtext(d) AS k "
                "FROM unnest(CAST(:devices AS text[])) AS d ORDER BY k) AS keys"
            ),
            {"devices": sorted(device_ids)},
        )


LOOKUP_CHUNK = 2000  # ids per query for the stored ones (SQLite allows 32,766 variables)


_STORED_POSTGRESQL = "SELECT id, sig FROM evaluations WHERE id = ANY(%s::text[])"


def _stored_sigs(conn, ids: list[str]) -> dict[str, str | None]:
    """id -> sig of those of `ids` stored already."""
    ev = db.evaluations.c
    found: dict[str, str | None] = {}
    if not ids:
        return found
    if conn.dialect.name == "postgresql":
        # one array parameter: about 4x faster than IN with a parameter per id
        # (2,000 ids: 12 against 46 ms on this machine), written as text by
        # pg_array (psycopg writes a list value by value in Python)
        found.update(
            conn.exec_driver_sql(_STORED_POSTGRESQL, (pg_array.param(list(ids), "text"),)).all()
        )
        return found
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start : start + LOOKUP_CHUNK]
        found.update(conn.execute(select(ev.id, ev.sig).where(ev.id.in_(chunk))).all())
    return found


_TOUCH_POSTGRESQL = (
    "UPDATE devices SET last_seen = %s WHERE device_id IN (SELECT device_id FROM devices "
    "WHERE device_id = ANY(%s) ORDER BY device_id FOR UPDATE)"
)


def _touch(conn, device_ids: list[str], received_at: str) -> None:
    """The devices' last_seen, in one statement for a group. On PostgreSQL
    the rows are locked in the order of their ids first, as the one update
    per device in sorted order did: two collectors touching overlapping
    devices never wait on each other in a circle."""
    if not device_ids:
        return
    d = db.devices.c
    if len(device_ids) == 1:
        conn.execute(
            db.devices.update().where(d.device_id == device_ids[0]).values(last_seen=received_at)
        )
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_TOUCH_POSTGRESQL, (received_at, list(device_ids)))
    else:
        conn.execute(
            db.devices.update().where(d.device_id.in_(device_ids)).values(last_seen=received_at)
        )


def _status_device(topic: str) -> str | None:
    """The device id of a status topic; None for any other topic."""
    try:
        device_id, kind = topics.parse(topic)
    except topics.TopicError:
        return None
    return device_id if kind == topics.UP_STATUS else None


def _kind(topic: str) -> str | None:
    try:
        return topics.parse(topic)[1]
    except topics.TopicError:
        return None


def _poison(exc: BaseException) -> bool:
    """Whether a failed store is the data's fault (keep it aside) rather than
    the database's (an outage)."""
    if isinstance(exc, DBAPIError):
        return isinstance(exc, (IntegrityError, DataError))
    if isinstance(exc, StatementError):
        return isinstance(exc.orig, POISON)
    return isinstance(exc, POISON)


def _merge(total: Outcome, part: Outcome) -> None:
    total.stored += part.stored
    total.duplicates += part.duplicates
    total.quarantined += part.quarantined
    total.ack_quarantined += part.ack_quarantined
    total.quarantine_rows_added += part.quarantine_rows_added
    total.quarantine_turned_away += part.quarantine_turned_away


class IngestService:
    """Subscribes to every device's up/ev and up/status and feeds the Ingestor.

    Group commit: paho's network thread only queues what arrives. One worker
    thread takes every message that is waiting (at most `max_group`), decides
    them all and commits them in one transaction (Ingestor.process_many),
    then publishes the acks and only then sends the MQTT PUBACKs, in the
    order the messages came. A message is never PUBACKed before it is
    committed: if the database is lost, nothing of the group is PUBACKed, the
    service reconnects, and the broker delivers it all again. How many
    messages the broker lets wait unacknowledged for one client bounds the
    group (Mosquitto: `max_inflight_messages`, default 20; hcp's broker
    configs raise it).

    Scale-out: collectors started with the same `share_group` subscribe with
    MQTT shared subscriptions (`$share/<group>/hcp/v1/dev/+/up/ev`, Mosquitto
    and EMQX), so the broker hands each message to one of them; they write to
    one database (PostgreSQL). A collector that dies leaves its un-PUBACKed
    messages in its own session, and their devices, which got no ack, send
    them again after their ack timeout; another collector stores them, once.
    """

    def __init__(
        self,
        engine,
        host: str,
        port: int,
        client_id: str = "hcp-collector",
        username: str | None = None,
        password: str | None = None,
        max_group: int = MAX_GROUP,
        share_group: str | None = None,
    ):
        if share_group is not None and not record.valid_device_id(share_group):
            raise ValueError("share_group: must be 1..32 characters of A-Z a-z 0-9 - _")
        self.share_group = share_group  # several collectors share the work ($share/<group>/…)
        self.ingestor = Ingestor(engine)
        self.host, self.port = host, port
        self.max_group = max(1, max_group)
        self.records_stored = 0
        self.messages_seen = 0
        self.failures = 0
        self.groups = 0  # transactions committed for groups of messages
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._failed = threading.Event()  # set from a failure until the reconnect
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._generation = 0  # bumped at each recovery: older queued messages are dropped
        # prepared groups waiting for the worker: [(generation, message, Prepared | None)]
        self._ready: queue.Queue = queue.Queue(maxsize=READY_GROUPS)
        self._worker: threading.Thread | None = None
        self._preparer: threading.Thread | None = None
        self._running = threading.Event()
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
        self.client.on_subscribe = self._on_subscribe
        self.client.on_socket_open = self._no_delay
        self.client.reconnect_delay_set(1, 10)

    @staticmethod
    def _no_delay(_client, _userdata, sock) -> None:
        """Every connection (reconnects too) sends at once: with Nagle on, an
        ack published right after a PUBACK waited for the broker's delayed TCP
        ack (about 40 ms: `hcp bench --only latency`, ack handed to paho ->
        keypad has it, p99 46 -> 14 ms)."""
        import socket

        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass  # not a TCP socket (a websocket transport): nothing to set

    def _on_connect(self, client, _userdata, _flags, reason_code, _props):
        if reason_code.is_failure:
            log.error("broker refused the collector: %s", reason_code)
            return
        client.subscribe([(self._filter(topics.UP_EV), 1), (self._filter(topics.UP_STATUS), 1)])

    def _filter(self, kind: str) -> str:
        """The subscription for one kind: a shared one when collectors share the
        work, so the broker hands each message to one of them."""
        name = topics.subscription(kind)
        return f"$share/{self.share_group}/{name}" if self.share_group else name

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props):
        # connected once the broker has the subscriptions: from then on nothing
        # published for the collector is missed
        if all(not code.is_failure for code in reason_codes):
            self.connected.set()
        else:
            log.error("broker refused the collector's subscriptions: %s", reason_codes)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props):
        self.connected.clear()
        log.info("collector disconnected from the broker: %s", reason_code)

    def _on_message(self, _client, _userdata, message):
        if self._failed.is_set():
            return  # no PUBACK: it comes again after the reconnect
        self._queue.put((self._generation, message))

    def _prepare(self) -> None:
        """Takes what is waiting (at most max_group messages), decodes and
        verifies its batches (Ingestor.prepare) and hands the group to the
        worker: this CPU work runs while the worker waits on the database."""
        while self._running.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            group = [first]
            while len(group) < self.max_group:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            ready = []
            for generation, message in group:
                try:
                    early = self.ingestor.prepare(message.topic, message.payload)
                except Exception:  # noqa: BLE001 - the transaction decides it again
                    log.exception("ingest: preparing a message on %s failed", message.topic)
                    early = None
                ready.append((generation, message, early))
            while self._running.is_set():
                try:
                    self._ready.put(ready, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def _work(self) -> None:
        carried = None  # a prepared group that did not fit in the last one
        while self._running.is_set():
            if carried is not None:
                group, carried = carried, None
            else:
                try:
                    group = self._ready.get(timeout=0.2)
                except queue.Empty:
                    continue
            while len(group) < self.max_group:  # groups prepared meanwhile join this one
                try:
                    more = self._ready.get_nowait()
                except queue.Empty:
                    break
                if len(group) + len(more) > self.max_group:
                    carried = more
                    break
                group = group + more
            fresh = [(m, early) for generation, m, early in group if generation == self._generation]
            if fresh and not self._failed.is_set() and self._running.is_set():
                try:
                    self._handle([m for m, _ in fresh], [early for _, early in fresh])
                except Exception:  # noqa: BLE001 - the worker must outlive anything
                    # (publishing an ack or a PUBACK on a connection that just
                    # broke): what was not PUBACKed comes again after the reconnect
                    log.exception("ingest worker: a group failed after its commit")
                    with self._lock:
                        self.failures += 1

    def _handle(self, group, prepared=None) -> None:
        items = [(m.topic, m.payload, bool(m.retain)) for m in group]
        try:
            outcomes = self.ingestor.process_many(items, prepared)
        except Exception:  # noqa: BLE001 - nothing may stop the ingest loop
            # The database is unreachable, locked or broken. Without a PUBACK the
            # broker keeps the messages in our persistent session; reconnecting
            # makes it deliver them (and everything after them) again.
            log.exception("ingest failed for %d message(s); reconnecting", len(group))
            with self._lock:
                self.failures += 1
            self._failed.set()
            threading.Thread(target=self._recover, name="ingest-recover", daemon=True).start()
            return
        for outcome in outcomes:
            if outcome.ack_topic:
                self.client.publish(outcome.ack_topic, outcome.ack_payload, qos=1)
        for message in group:
            self.client.ack(message.mid, message.qos)
        with self._lock:
            if len(group) > 1:
                self.groups += 1
            self.messages_seen += len(group)
            self.records_stored += sum(len(o.stored) for o in outcomes)
            self.failures += sum(1 for o in outcomes if o.error)

    def _recover(self, pause: float = 1.0) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._generation += 1  # what is still queued belongs to the old session
        time.sleep(pause)
        self._failed.clear()
        while self._running.is_set():
            try:
                self.client.reconnect()
                break
            except OSError as exc:
                log.warning("collector reconnect failed: %s", exc)
                time.sleep(pause)
        self.client.loop_start()

    def start(self, timeout: float = 10) -> None:
        self._generation += 1
        self._running.set()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()
        self._preparer = threading.Thread(target=self._prepare, name="ingest-prepare", daemon=True)
        self._preparer.start()
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise RuntimeError(
                f"the collector could not subscribe at mqtt://{self.host}:{self.port}"
            )

    def stop(self) -> None:
        """An orderly stop: what was taken from the queue is finished first."""
        self.client.disconnect()
        self.client.loop_stop()
        self._stop_worker()

    def kill(self) -> None:
        """Die as a killed process would: no goodbye, nothing more PUBACKed,
        what is queued is dropped (the broker delivers it again)."""
        self._generation += 1
        self._running.clear()
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
        self._stop_worker()

    def _stop_worker(self) -> None:
        self._running.clear()
        if self._preparer is not None:
            self._preparer.join(10)
            self._preparer = None
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None
