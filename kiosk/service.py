"""The kiosk's links: delivery to the collector and the local trigger API.

SyncWorker runs the keypad's own device.sync.Sync and device.mqtt.MQTTClient
(the same delivery rules, the same wire bytes) in a thread, over its own
connection to the kiosk's SQLite store. Configs and commands reach the screen
through the app's inbox (KioskApp.post / call); the worker never touches a scene.

The local HTTP API (127.0.0.1 only) lets the hall's self-service app hand a
finished case over, the national rule being that a self-service terminal goes
straight to evaluation:

    POST /evaluate  {case_no, service_no, item_code, staff_id, org_id,
                     window_id, handled_at, attempt, follows, timeout_s}
                    -> 200 {"opened": case_no}; 409 busy or already rated;
                       400 naming the field (the evaluate command's rules)
    POST /cases     the same fields: kept for rating by number later
    GET  /cases/<case_no>  -> {"result": "rated", "record_id"} once rated
                    (never the level), else 404
    GET  /status    -> device id, queue, last seq, last ack, broker state
"""

from __future__ import annotations

import logging
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import unquote

from device.compat import ticks_ms
from device.mqtt import MQTTClient
from device.sync import Sync
from hcp.local_api import JSONHandler
from kiosk.app import clock_state
from kiosk.store import KioskStore
from protocols import messages, sign

log = logging.getLogger(__name__)

LOOP_S = 0.02


class SyncWorker:
    def __init__(self, settings: dict, app):
        self.settings = settings
        self.app = app
        self.device_id = settings["device_id"]
        key = bytes.fromhex(settings["key"])
        self.store = None
        self._folder = settings["data_dir"]
        self.client = MQTTClient(
            self.device_id,
            settings["broker_host"],
            port=settings["broker_port"],
            user=settings.get("broker_user") or self.device_id,
            password=settings.get("broker_password") or sign.mqtt_password(key),
            keepalive=settings["keepalive_s"],
            timeout_ms=settings["timeout_ms"],
        )
        self.key = key
        self.sync = None
        self.failures = 0  # sync steps that raised (the technician screen shows them)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kiosk-sync", daemon=True)

    def start(self) -> SyncWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _setup(self) -> None:
        self.store = KioskStore(self._folder)  # this thread's own connection
        s = self.settings
        self.sync = Sync(
            self.client,
            self.store,
            self.device_id,
            self.key,
            firmware=s["firmware"],
            batch_size=s["batch_size"],
            ack_timeout_ms=s["ack_timeout_ms"],
            min_interval_ms=s["min_batch_interval_ms"],
            status_every_ms=s["status_every_ms"],
        )
        self.sync.on_config = self._config
        self.sync.on_command = self._command
        self.sync.status_extra = self._status_extra

    def _run(self) -> None:
        while self.store is None and not self._stop.is_set():
            try:
                self._setup()
            except Exception:  # the database busy or unreadable: tried again
                log.exception("kiosk sync could not open its store")
                self.failures += 1
                self.store = None
                self._stop.wait(1)
        if self.store is None:
            return
        try:
            while not self._stop.is_set():
                try:
                    self.sync.step(ticks_ms())
                except Exception:  # e.g. the database busy: noted, tried again; never fatal
                    log.exception("kiosk sync step failed")
                    self.failures += 1
                    self._stop.wait(1)
                self.app.link = {
                    "connected": self.client.connected,
                    "last_error": self.client.last_error,
                    "acks": self.sync.acks,
                    "bad_messages": self.sync.bad_messages,
                    "failures": self.failures,
                }
                self._stop.wait(LOOP_S)
        finally:
            if self.client.connected:
                self.client.disconnect()
            self.store.close()

    def _config(self, config: dict) -> None:
        # kept first: a persistent session does not send the retained config again
        self.store.put_setting("config", config)
        self.app.post("config", config)

    def _command(self, command: dict):
        name = command["cmd"]
        if name == "evaluate":
            return self.app.call("evaluate", dict(command["args"]))
        if name == "sync_now":
            self.sync.send_now()
            return True, {}
        if name == "identify":
            self.app.post("identify")
            return True, {}
        return False, "unsupported on the kiosk"

    def _status_extra(self) -> dict:
        extra = {"clock": clock_state(), "boot_id": self.app.boot_id}
        config = self.store.get_setting("config")
        if isinstance(config, dict) and isinstance(config.get("version"), int):
            extra["config_version"] = config["version"]
        return extra


class _Handler(JSONHandler):
    """The kiosk's local API (hcp/local_api.py: JSON answers, body limits
    and errors, as the window PC's)."""

    server_version = "hcp-kiosk"

    def _body(self):
        body = super()._body()
        if body is None:
            return None
        problem = messages.evaluate_problem(body, self.path.strip("/"))
        if problem:
            self._answer(400, {"error": problem})
            return None
        return body

    def do_POST(self):
        app = self.server.app
        if self.path not in ("/evaluate", "/cases"):
            self._answer(404, {"error": "no such endpoint: POST " + self.path})
            return
        body = self._body()
        if body is None:
            return
        ok, result = app.call("evaluate" if self.path == "/evaluate" else "register", body)
        if ok:
            self._answer(200, result)
        else:
            self._answer(409 if str(result).startswith(("busy", "rated")) else 503,
                         {"error": result})  # fmt: skip

    def do_GET(self):
        app = self.server.app
        if self.path == "/status":
            ok, result = app.call("status")
            self._answer(200 if ok else 503, result if ok else {"error": result})
            return
        if self.path.startswith("/cases/"):
            ok, result = app.call("outcome", unquote(self.path[len("/cases/") :]))
            if ok and result:
                self._answer(200, result)
            else:
                self._answer(404, {"error": "no rating for this case on this kiosk"})
            return
        self._answer(404, {"error": "no such endpoint: GET " + self.path})


def serve_http(app, port: int, host: str = "127.0.0.1"):
    """The local API on host:port, serving in a thread; returns the server."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    server.app = app
    threading.Thread(target=server.serve_forever, name="kiosk-http", daemon=True).start()
    return server
