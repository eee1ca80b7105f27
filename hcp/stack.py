"""The whole suite on 127.0.0.1, for the runs of `hcp` (demo, bench, fault).

One `LocalStack` starts, in this order: an MQTT broker of the chosen kind on a
free port, the collector's database (SQLite, schema initialised), the devices
provisioned with their keys, the collector's IngestService and, when asked
for, the collector's web app. Simulated keypads are started on demand, each
with its data folder in the stack's work folder. `stop()` takes everything
down the other way round: keypads, ingest, web app, broker, database.

    devices = [Device("kp-01", secrets.token_hex(32))]
    with LocalStack(workdir, "amqtt", devices=devices) as stack:
        keypad = stack.start_keypad(devices[0])
        keypad.rate(5)

Every file (broker config and log, database, keypad journals) lives in the
work folder. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hcp.broker import MosquittoBroker, free_port, start_broker
from kiosk.process import KioskProcess
from simulators.keypad import SimKeypad
from sync_server import create_app, db
from sync_server.cli import serve_web
from sync_server.ingest import IngestService

WEB_HOST = "127.0.0.1"


def broker_kind(requested: str | None) -> str:
    """The kind asked for; by default Mosquitto where it is installed, else amqtt."""
    if requested:
        return requested
    return "mosquitto" if MosquittoBroker.available() else "amqtt"


@dataclass(frozen=True)
class Device:
    """A device as the collector knows it: its id, its key (hex) and its window."""

    device_id: str
    key_hex: str
    window_id: str | None = None
    kind: str = "keypad"  # or "kiosk": the channel its records carry


class LocalStack:
    """Broker, collector and simulated keypads, started and stopped together.

    broker      "amqtt", "mosquitto" or None (see `broker_kind`).
    mqtt_port   the broker's port (default: a free one).
    broker_dir  the broker's folder, under `workdir`.
    collector   False: the broker alone (no database, no ingest, no web app).
    database    the SQLite file, under `workdir`.
    database_url  another database instead (PostgreSQL: `postgresql+psycopg://…`).
    config      more collector settings for the web app (docs/operator-guide.md).
    devices     provisioned at start (see `provision`).
    ingest      start the IngestService, with MQTT client id `client_id`.
    web         serve the collector's web app on WEB_HOST:`web_port`
                (default: a free port).
    access_control  True: the broker is Mosquitto locked down as in production
                (hcp.broker.SecuredMosquitto, from the files `hcp collector
                broker-auth` writes): the devices provisioned are let in (a
                reload), the collector logs in with its own login, keypads and
                kiosks with their id and derived password, nobody anonymously.
                Needs broker "mosquitto" (or None where Mosquitto is installed);
                "secured-mosquitto" as the broker kind means the same.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        broker: str | None = None,
        *,
        mqtt_port: int | None = None,
        broker_dir: str = "broker",
        collector: bool = True,
        database: str = "collector.db",
        devices: Iterable[Device] = (),
        ingest: bool = True,
        client_id: str = "hcp-collector",
        web: bool = False,
        web_port: int | None = None,
        database_url: str | None = None,
        config: dict | None = None,
        access_control: bool = False,
    ):
        if web and not collector:
            raise ValueError("the web app is part of the collector: web=True needs collector=True")
        self.workdir = Path(workdir)
        self.kind = broker_kind(broker)
        if self.kind == "secured-mosquitto":
            access_control = True
        elif access_control:
            if self.kind != "mosquitto":
                raise ValueError(
                    f"access control needs Mosquitto; the {self.kind} broker runs open "
                    "(docs/architecture.md, 'Testing on real parts')"
                )
            self.kind = "secured-mosquitto"
        self.access_control = access_control
        self.mqtt_port = mqtt_port
        self.broker_dir = broker_dir
        self.collector = collector
        self.database = database
        self.database_url = database_url  # e.g. PostgreSQL; None: SQLite in workdir
        self.config = dict(config or {})
        self.devices = list(devices)
        self.want_ingest = ingest
        self.client_id = client_id
        self.want_web = web
        self.web_port = web_port
        self.broker = None
        self.app = None
        self.engine = None
        self.ingest: IngestService | None = None
        self.keypads: dict[str, SimKeypad] = {}
        self.kiosks: dict[str, KioskProcess] = {}
        self._web_server = None

    # -- starting

    def start(self) -> LocalStack:
        """Start every part; if one fails, stop what had started and raise."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.broker = start_broker(
                self.kind, port=self.mqtt_port, workdir=str(self.workdir / self.broker_dir)
            )
            if self.collector:
                self._open_database()
                self.provision(self.devices)
                if self.want_ingest:
                    self.start_ingest()
                if self.want_web:
                    self._start_web()
        except BaseException:
            self.stop()
            raise
        return self

    def _open_database(self) -> None:
        url = self.database_url or f"sqlite:///{self.workdir / self.database}"
        if self.want_web:
            # create_app makes the engine and initialises the schema itself
            # plain HTTP on this machine: the session cookie cannot be Secure-only
            settings = {"DATABASE_URL": url, "SESSION_COOKIE_SECURE": False, **self.config}
            self.app = create_app(settings)
            self.engine = self.app.extensions["hcp_engine"]
        else:
            self.engine = db.make_engine(url)
            db.init(self.engine)

    def provision(self, devices: Iterable[Device]) -> None:
        """Register each device and its key with the collector.

        A device the database already knows with the same key is left as it is
        (a work folder used again); one it knows with another key is an error,
        since every record of it would fail verification.
        """
        known = dict(db.device_keys(self.engine))
        for device in devices:
            if device.device_id not in known:
                db.add_device(
                    self.engine,
                    device.device_id,
                    device.key_hex,
                    kind=device.kind,
                    window_id=device.window_id,
                )
                known[device.device_id] = device.key_hex
            elif known[device.device_id] != device.key_hex:
                raise ValueError(
                    f"{device.device_id}: the database in {self.workdir} holds another key "
                    "for this device"
                )
        # a locked-down broker lets in exactly the devices the database holds
        # (a reload, as revocation does); an open one: nothing to do
        self.broker.allow(db.device_keys(self.engine))

    def start_ingest(self) -> IngestService:
        """Start a (new) IngestService; it replaces one that was stopped or killed."""
        user, password = self.broker.collector_login()  # (None, None) on an open broker
        self.ingest = IngestService(self.engine, self.broker.host, self.broker.port,
                                    client_id=self.client_id, username=user,
                                    password=password)  # fmt: skip
        self.ingest.start()
        return self.ingest

    def _start_web(self) -> None:
        self.web_port = self.web_port or free_port()
        self._web_server, _thread = serve_web(self.app, WEB_HOST, self.web_port)

    @property
    def web_url(self) -> str | None:
        return f"http://{WEB_HOST}:{self.web_port}" if self._web_server else None

    def start_keypad(self, device: Device, **settings) -> SimKeypad:
        """A simulated keypad for `device`, connected to the broker, data in workdir/<id>.

        `settings` override the keypad's (see SimKeypad). A device runs one
        keypad at a time: stop the one before (`stop_keypad`) to start another.
        """
        if device.device_id in self.keypads:
            raise RuntimeError(f"{device.device_id}: a keypad is already running")
        keypad = SimKeypad(
            device.device_id,
            device.key_hex,
            self.broker.host,
            self.broker.port,
            str(self.workdir / device.device_id),
            **settings,
        ).start()
        self.keypads[device.device_id] = keypad
        return keypad

    def start_keypads(self, **settings) -> list[SimKeypad]:
        """A keypad for each device given at construction, in that order."""
        return [self.start_keypad(device, **settings) for device in self.devices]

    def start_kiosk(self, device: Device, headless: bool = True, **settings) -> KioskProcess:
        """The hall kiosk (`python -m kiosk`) for `device` in its own process,
        connected to the broker, its store in workdir/<id>. `settings` are
        kiosk settings (kiosk/settings.py); headless uses SDL's dummy driver."""
        if device.device_id in self.kiosks:
            raise RuntimeError(f"{device.device_id}: a kiosk is already running")
        folder = self.workdir / device.device_id
        folder.mkdir(parents=True, exist_ok=True)
        values = {
            "device_id": device.device_id,
            "key": device.key_hex,
            "broker_host": self.broker.host,
            "broker_port": self.broker.port,
            "data_dir": str(folder / "data"),
            "http_port": 0,
        }
        values.update(settings)
        path = folder / "settings.json"
        path.write_text(json.dumps(values, ensure_ascii=False, indent=1))
        kiosk = KioskProcess(path, headless, folder / "kiosk.log")
        self.kiosks[device.device_id] = kiosk
        return kiosk

    # -- stopping

    def stop_kiosks(self) -> None:
        for device_id in list(self.kiosks):
            self.kiosks.pop(device_id).stop()

    def stop_keypad(self, device_id: str, power_cut: bool = False) -> None:
        """Stop a device's keypad: orderly, or a power cut (no goodbye to the broker)."""
        self.keypads.pop(device_id).stop(power_cut=power_cut)

    def stop_keypads(self) -> None:
        for device_id in list(self.keypads):
            self.stop_keypad(device_id)

    def stop_ingest(self) -> None:
        if self.ingest is not None:
            ingest, self.ingest = self.ingest, None
            ingest.stop()

    def stop(self) -> None:
        """Stop keypads, ingest, web app and broker, then close the database.

        Safe to call again, and after a start that failed half-way.
        """
        self.stop_keypads()
        self.stop_kiosks()
        self.stop_ingest()
        if self._web_server is not None:
            server, self._web_server = self._web_server, None
            server.shutdown()
            server.server_close()
        if self.broker is not None:
            broker, self.broker = self.broker, None
            broker.close()
        if self.engine is not None:
            self.engine.dispose()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
