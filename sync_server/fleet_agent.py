"""The fleet agent: puts desired configs and held commands on the broker and
records what the devices answer (docs/fleet.md).

It logs in as its own MQTT user (broker_auth.FLEET_USER: reads up/status and
up/cmdres, writes down/config and down/cmd), apart from the ingest, so it can
run, stop and restart without touching the ratings path.

- A desired config whose version was not yet published goes, signed with the
  device's key, to the device's retained `down/config` topic. A device that
  says (live status) it applied another version gets it again, at most once
  per REPUBLISH_S (a factory reset erases the device's copy and a persistent
  session does not bring retained messages back).
- A live status with `online: true` is the device connecting (or reporting):
  its due commands (pending, or sent and unanswered) go out, oldest first,
  each signed; QoS 1 into its persistent session.
- `up/cmdres` answers are recorded (sync_server/fleet.py record_result); a
  live status with a new boot after an accepted restart completes it.
- Every POLL_S: expiry, and configs and commands for online devices.

Nothing here changes a rating; a message that does not decode is logged and
dropped (the ingest keeps statuses aside; this agent only reads them).
"""

from __future__ import annotations

import binascii
import logging
import threading
import time

import paho.mqtt.client as mqtt
from sqlalchemy import select

from protocols import messages, topics
from sync_server import broker_auth, db, firmware, fleet
from sync_server.schema_fleet import fleet_configs

log = logging.getLogger(__name__)

POLL_S = 1.0
REPUBLISH_S = 30.0


class FleetAgent:
    def __init__(self, engine, host, port, username=broker_auth.FLEET_USER, password=None,
                 poll_s=POLL_S, resend_after_s=None, republish_s=REPUBLISH_S):  # fmt: skip
        self.engine = engine
        self.host, self.port = host, port
        self.poll_s = poll_s
        self.republish_s = republish_s  # at most one config again per device this often
        self.online: dict[str, dict] = {}  # device id -> its last status
        self._republished: dict[str, float] = {}
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.sent = 0
        self.results = 0
        if resend_after_s is not None:
            fleet.RESEND_AFTER_S = resend_after_s
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=username, clean_session=True
        )
        if password is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.connected.clear()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 10)

    # --- MQTT ---
    def _on_connect(self, client, _u, _f, reason_code, _p):
        if reason_code.is_failure:
            log.error("broker refused the fleet agent: %s", reason_code)
            return
        client.subscribe(
            [(topics.subscription(topics.UP_STATUS), 1), (topics.subscription(topics.UP_CMDRES), 1)]
        )

    def _on_subscribe(self, _c, _u, _mid, reason_codes, _p):
        if all(not code.is_failure for code in reason_codes):
            self.connected.set()
        else:
            log.error("broker refused the fleet agent's subscriptions: %s", reason_codes)

    def _on_message(self, _c, _u, message):
        try:
            device_id, kind = topics.parse(message.topic)
            if kind == topics.UP_STATUS:
                self.on_status(device_id, message.payload, live=not message.retain)
            elif kind == topics.UP_CMDRES:
                self.on_result(device_id, message.payload)
        except Exception:  # noqa: BLE001 - one bad message must not stop the agent
            log.exception("fleet agent: a message on %s was not used", message.topic)

    def start(self, timeout: float = 10) -> FleetAgent:
        self._running.set()
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise ConnectionError(f"fleet agent: no connection to {self.host}:{self.port}")
        self._thread = threading.Thread(target=self._loop, name="fleet-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _loop(self) -> None:
        while self._running.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a lost database: try again next time
                log.exception("fleet agent: a pass failed")
            time.sleep(self.poll_s)

    # --- the work ---
    def _key(self, conn, device_id):
        d = db.devices.c
        row = conn.execute(select(d.key_hex).where(d.device_id == device_id)).first()
        return None if row is None else binascii.unhexlify(row.key_hex)

    def _publish(self, device_id, kind, msg, key, retain=False) -> None:
        payload = messages.encode_signed(msg, key)
        info = self.client.publish(topics.topic(device_id, kind), payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {device_id}: {mqtt.error_string(info.rc)}")

    def tick(self) -> None:
        with self.engine.begin() as conn:
            fleet.expire(conn)
        self.publish_configs()
        with self._lock:
            online = {d for d, s in self.online.items() if s.get("online")}
        c = fleet.fleet_commands.c
        with self.engine.connect() as conn:
            waiting = set(
                conn.execute(
                    select(c.device_id).where(c.state.in_(("pending", "sent"))).distinct()
                ).scalars()
            )
        for device_id in sorted(online & waiting):  # one query, not one per device
            self.send_commands(device_id)

    def publish_configs(self, only=None) -> int:
        c = fleet_configs.c
        published = 0
        with self.engine.begin() as conn:
            query = select(fleet_configs)
            if only is not None:
                query = query.where(c.device_id == only)
            for row in conn.execute(query).all():
                if only is None and row.published_version == row.version:
                    continue
                key = self._key(conn, row.device_id)
                if key is None:
                    continue
                item = fleet.desired(conn, row.device_id)
                self._publish(row.device_id, topics.DOWN_CONFIG, fleet.config_message(item), key,
                              retain=True)  # fmt: skip
                conn.execute(
                    fleet_configs.update()
                    .where(c.device_id == row.device_id)
                    .values(published_version=row.version, published_at=db.utc_now())
                )
                published += 1
        return published

    def send_commands(self, device_id) -> int:
        sent = 0
        with self.engine.begin() as conn:
            key = self._key(conn, device_id)
            if key is None:
                return 0
            for cmd in fleet.due_commands(conn, device_id):
                msg = messages.command(cmd["id"], cmd["cmd"], cmd["args"])
                self._publish(device_id, topics.DOWN_CMD, msg, key)
                fleet.mark_sent(conn, cmd["id"])
                rollout = conn.execute(
                    select(fleet.fleet_commands.c.rollout_id).where(
                        fleet.fleet_commands.c.id == cmd["id"]
                    )
                ).scalar()
                if rollout is not None:
                    firmware.command_sent(conn, rollout, device_id)
                sent += 1
        self.sent += sent
        return sent

    def on_status(self, device_id: str, payload: bytes, live: bool) -> None:
        if not payload:
            return  # a retained status cleared
        try:
            status = messages.decode(payload, messages.STATUS)
        except messages.MessageError as exc:
            log.info("fleet agent: status of %s not used: %s", device_id, exc)
            return
        with self._lock:
            self.online[device_id] = status
        with self.engine.begin() as conn:
            if self._key(conn, device_id) is None:
                return
            fleet.observe_status(conn, device_id, status, live)
            row = fleet.desired(conn, device_id)
        if not (live and status.get("online")):
            return
        if row is not None and status.get("config_version") != row["version"]:
            last = self._republished.get(device_id, 0.0)
            if (
                time.monotonic() - last >= self.republish_s
                or row["published_version"] != row["version"]
            ):
                self._republished[device_id] = time.monotonic()
                self.publish_configs(only=device_id)
        self.send_commands(device_id)

    def on_result(self, device_id: str, payload: bytes) -> None:
        try:
            msg = messages.decode(payload, messages.CMDRES)
        except messages.MessageError as exc:
            log.info("fleet agent: cmdres of %s not used: %s", device_id, exc)
            return
        with self._lock:
            status = self.online.get(device_id)
        with self.engine.begin() as conn:
            state = fleet.record_result(conn, device_id, msg, status)
        if state is not None:
            self.results += 1
