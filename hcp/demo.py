"""`hcp demo`: the whole suite on its embedded defaults, on one machine.

An embedded broker (amqtt; Mosquitto with --broker mosquitto), the collector
(ingest, web UI and its background work on SQLite), a simulated provincial
platform the collector reports to, simulated window keypads that citizens
"press" at random and one hall kiosk. State lives in a work folder (default
.hcp-demo), so what the keypads still hold when the demo stops is sent on
the next start.

Each keypad is wired to a simulated window PC (its serial link on a
pseudo-terminal, hcp/window.py's WindowPort at the PC's end): for every
citizen the demo's business system registers a service event at that window
(sync_server/service_events.register_one) and the window PC starts the case
on the keypad, so the keypad's rating carries the case number and is bound
to the event. The keypads allow walk-up ratings too: after start, one of
them gets a planted burst of 非常满意 with no case, which the gaming scan
flags for a supervisor. The citizen channels (QR codes, web portal, SMS,
paper card) each get one rating over real HTTP (hcp/sim_sms.demo_channels).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import secrets
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from rich.console import Console

from hcp.service_events import DEMO_ITEMS, register_demo_events
from hcp.stack import Device, LocalStack
from hcp.window import NoAnswer, Refused, WindowPort
from kiosk.demo_content import DEMO_PIN, start_demo_kiosk
from protocols import messages, topics
from protocols.levels import is_bad
from simulators.keypad import SimKeypad
from simulators.uart import PtyUART
from sync_server import db
from sync_server.auth import create_user
from sync_server.service_events import EventError, register_one

# Weights a demo citizen uses, stars 5..1 (most people are satisfied).
STAR_WEIGHTS = {5: 60, 4: 20, 3: 10, 2: 6, 1: 4}

# The demo's own, clearly labelled content tags (not the province's table).
DEMO_TAGS = {
    "content_version": "demo-1",
    "tags": [
        [2, "D201", "等候时间长"],
        [2, "D202", "办事指引不清"],
        [1, "D101", "服务态度差"],
        [1, "D102", "多次跑动"],
    ],
}

WINDOWS = [
    ("A01", "张敏", "1001"),
    ("A02", "李强", "1002"),
    ("B03", "王芳", "1003"),
    ("B04", "赵磊", "1004"),
    ("C05", "刘洋", "1005"),
]


def register(commands) -> None:
    parser = commands.add_parser("demo", help="run the suite on embedded defaults")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop by itself after N seconds (unattended run)",
    )
    parser.add_argument("--devices", type=int, default=3, help="simulated keypads (default 3)")
    parser.add_argument("--broker", choices=["amqtt", "mosquitto"], default="amqtt")
    parser.add_argument("--mqtt-port", type=int, default=None)
    parser.add_argument("--web-port", type=int, default=None)
    parser.add_argument("--workdir", default=".hcp-demo", help="demo state (default .hcp-demo)")
    parser.add_argument(
        "--pace",
        type=float,
        default=0.3,
        help="mean seconds between ratings on each keypad (default 0.3)",
    )
    parser.set_defaults(handler=run)


def _devices(workdir: Path, count: int) -> list[dict]:
    path = workdir / "devices.json"
    known = json.loads(path.read_text()) if path.exists() else []
    while len(known) < count:
        n = len(known) + 1
        window = WINDOWS[(n - 1) % len(WINDOWS)]
        known.append(
            {
                "device_id": f"kp-demo-{n:02d}",
                "key_hex": secrets.token_hex(32),
                "window_id": window[0],
                "staff_name": window[1],
                "staff_no": window[2],
            }
        )
    path.write_text(json.dumps(known, ensure_ascii=False, indent=1))
    return known[:count]


def demo_password(workdir: Path, engine, username="admin", role="admin", unit=None) -> str:
    path = workdir / f"{username}-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    create_user(engine, username, password, role, unit)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


# the demo's windows in Linzi's tree: A01/A02 in the district hall, the rest in
# 闻韶街道's, whose unit manager (DEMO_MANAGER) sees only those
DEMO_HALLS = (
    ("demo-hall-qu", "临淄区政务服务中心", "370305"),
    ("demo-hall-ws", "闻韶街道便民服务中心", "370305001"),
)
DEMO_MANAGER = ("wenshao", "370305001")
# the keypads' follow-up window: long enough for a simulated citizen to pick
# a 差评's reason even on a loaded machine (the province refuses a 差评 without one)
CONFIRM_MS = 800
SUPERVISOR = "supervisor"  # role supervisor (督查): sees the gaming flags

# The demo collector's gaming settings (sync_server/gaming.py). Demo values,
# not advice for a hall: the demo runs at any hour, its simulated citizens
# press far faster than real ones and it is started again and again in a
# day, so the rules about opening hours, runs of top ratings after a sign-in
# and reboots a day would flag honest demo ratings. The burst rule keeps its
# real threshold: the planted burst is what it finds.
DEMO_GAMING = {
    "HCP_GAMING_OPENING": "always",
    "HCP_GAMING_SIGNIN_RUN": 1_000_000,
    "HCP_GAMING_REBOOTS_PER_DAY": 1_000,
    "HCP_GAMING_SCAN_S": 30.0,
}


def _demo_org(engine) -> None:
    from sync_server import org

    with engine.begin() as conn:
        if org.get(conn, "units", DEMO_HALLS[0][0]) is not None:
            return
        for code, name, parent in DEMO_HALLS:
            org.add(conn, "units", code, name, parent, kind="hall")
        for window_id, staff_name, staff_no in WINDOWS:
            hall = DEMO_HALLS[0][0] if window_id in ("A01", "A02") else DEMO_HALLS[1][0]
            org.add(conn, "windows", window_id, f"{window_id} 窗口", hall)
            org.add(conn, "staff", staff_no, staff_name, hall)


def publish_configs(host: str, port: int, devices: list[dict], tags: dict = DEMO_TAGS) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hcp-demo-config")
    client.connect(host, port)
    client.loop_start()
    for dev in devices:
        config = messages.config(
            1,
            window_id=dev["window_id"],
            staff_id=dev["staff_no"],
            staff_name=dev["staff_name"],
            staff_no=dev["staff_no"],
            org_id="370305",
            **tags,
        )
        info = client.publish(
            topics.topic(dev["device_id"], topics.DOWN_CONFIG),
            messages.encode_signed(config, bytes.fromhex(dev["key_hex"])),
            qos=1,
            retain=True,
        )
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


class Window:
    """A window PC on a keypad's serial link, and the business system behind
    it: for each citizen it registers the service event with the collector,
    then starts that case on the keypad (docs/protocol.md §4)."""

    def __init__(self, engine, device: dict, unit: str | None, uart: PtyUART):
        import serial

        self.engine = engine
        self.device = device
        self.unit = unit
        self.uart = uart
        self.serial = serial.serial_for_url(uart.path, baudrate=115200, timeout=0.05)
        self.port = WindowPort(self.serial)
        self.cases = 0
        self.started = 0
        self.errors: list[str] = []
        self._stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")

    def start_case(self) -> str | None:
        """Register the next citizen's service event and start it on the
        keypad; the case number, or None when either step failed (the
        reason is kept in `errors`)."""
        if self.unit is None:
            return None
        self.cases += 1
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        handled = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "case_no": f"DEMO-{self._stamp}-{self.device['window_id']}-K{self.cases}",
            "service_no": "1",
            "item_code": DEMO_ITEMS[self.cases % len(DEMO_ITEMS)],
            "unit_id": self.unit,
            "window_id": self.device["window_id"],
            "staff_id": self.device["staff_no"],
            "handled_at": handled,
        }
        try:
            register_one(self.engine, body, "demo", "hcp-demo", now=now)
            self.port.command(
                "start",
                case_no=body["case_no"],
                service_no="1",
                item_code=body["item_code"],
                staff_id=body["staff_id"],
                org_id=self.unit,
                handled_at=handled,
            )
        except (EventError, NoAnswer, Refused, OSError) as exc:
            self.errors.append(f"{body['case_no']}: {exc}")
            return None
        self.started += 1
        return body["case_no"]

    def close(self) -> None:
        self.port.close()
        self.serial.close()
        self.uart.close()


KIOSK_CITIZEN = "ks-demo-02"  # a second hall kiosk, run in this process for its citizen
KIOSK_LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}


class KioskCitizen:
    """A hall kiosk run in this process (kiosk.app.KioskApp on an off-screen
    surface, its own store and sync worker to the broker), so the demo can
    play a citizen on it: a finished case is handed over (as the hall's
    self-service app does) and the citizen taps a level and skips the rest.
    The demo's other kiosk (kiosk/demo_content.py) runs as its own process
    for people to try."""

    def __init__(self, stack, workdir: Path):
        import os

        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        from kiosk import demo_content
        from kiosk.app import KioskApp
        from kiosk.service import SyncWorker
        from kiosk.settings import load
        from kiosk.store import KioskStore

        self.pg = pygame
        path = workdir / "kiosk-citizen.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        if not known:
            known = {"device_id": KIOSK_CITIZEN, "key_hex": secrets.token_hex(32)}
            path.write_text(json.dumps(known))
        device = Device(known["device_id"], known["key_hex"], kind="kiosk")
        stack.provision([device])
        folder = workdir / device.device_id
        folder.mkdir(parents=True, exist_ok=True)
        self.settings = load(
            None,
            {
                "device_id": device.device_id,
                "key": device.key_hex,
                "broker_host": stack.broker.host,
                "broker_port": stack.broker.port,
                "data_dir": str(folder / "data"),
                "http_port": 0,
                "technician_pin": DEMO_PIN,
            },
        )
        pygame.font.init()
        config = demo_content.config(1, followup_url=(stack.web_url or "") + "/followup")
        self._config = messages.decode(messages.encode(config))
        self._parts = (KioskApp, KioskStore, SyncWorker)
        self.app = self.store = self.worker = None
        self.now = 1000
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._jobs: list = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="kiosk-citizen", daemon=True)
        self.device_id = device.device_id

    def start(self) -> KioskCitizen:
        self._thread.start()
        self._ready.wait(30)
        if self.app is None:
            raise RuntimeError(f"kiosk {self.device_id} did not start: {self.errors}")
        self.worker = self._parts[2](self.settings, self.app).start()
        return self

    def _loop(self) -> None:
        # the store's SQLite connection belongs to this thread: it is made,
        # used and closed here (the sync worker has its own)
        kiosk_app, kiosk_store, _worker = self._parts
        try:
            self.store = kiosk_store(self.settings["data_dir"])
            self.store.put_setting("config", self._config)
            surface = self.pg.Surface((self.settings["width"], self.settings["height"]))
            self.app = kiosk_app(self.settings, self.store, surface)
        except Exception as exc:  # noqa: BLE001 - start() reports it
            self.errors.append(str(exc))
            return
        finally:
            self._ready.set()
        try:
            while not self._stop.wait(0.02):
                with self._lock:
                    jobs, self._jobs = self._jobs, []
                for job in jobs:
                    try:
                        job()
                    except Exception as exc:  # noqa: BLE001 - shown in the demo's output
                        self.errors.append(str(exc))
                try:
                    self._step()
                except Exception as exc:  # noqa: BLE001 - the demo goes on without this kiosk
                    self.errors.append(f"kiosk stopped: {exc}")
                    return
        finally:
            self.store.close()

    def _step(self, events=()) -> None:
        self.now += 20
        self.app.step(self.now, list(events))  # never pygame's own queue: no display here

    def _tap(self, label: str) -> None:
        for button in self.app.scene.buttons:
            if button.label == label:
                x, y = button.rect.center
                ev = self.pg.event.Event
                self._step(
                    [
                        ev(self.pg.MOUSEBUTTONDOWN, button=1, pos=(x, y)),
                        ev(self.pg.MOUSEBUTTONUP, button=1, pos=(x, y)),
                    ]
                )
                return
        labels = [b.label for b in self.app.scene.buttons]
        raise RuntimeError(f"kiosk: no button {label!r} on {self.app.scene.name}: {labels}")

    def rate_case(self, fields: dict, stars: int, timeout: float = 10) -> str | None:
        """Hand the case over and rate it as a citizen; the record id, or None."""
        done = threading.Event()
        answer: list = []

        def job():
            ok, result = self.app.open_case(fields)
            if not ok:
                raise RuntimeError(f"kiosk: case {fields['case_no']}: {result}")
            self._tap(KIOSK_LEVELS[stars])
            for _ in range(4):  # tags, comment, phone: nothing chosen, nothing typed
                if self.app.scene.name == "thanks":
                    break
                names = {b.label for b in self.app.scene.buttons}
                self._tap("跳过" if "跳过" in names else "下一步")
            answer.append(self.app.outcomes.get(fields["case_no"]))

        def finish():
            try:
                job()
            finally:
                done.set()

        with self._lock:
            self._jobs.append(finish)
        done.wait(timeout)
        return answer[0] if answer else None

    def stop(self) -> None:
        """Stop the sync worker and the kiosk's loop (again: nothing)."""
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _kiosk_rating(engine, kiosk: KioskCitizen, window: Window) -> str:
    """One finished case handed over to the kiosk and rated there; the line to print."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    handled = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {
        "case_no": f"DEMO-{now.strftime('%Y%m%d%H%M%S')}-KIOSK-1",
        "service_no": "1",
        "item_code": DEMO_ITEMS[0],
        "staff_id": window.device["staff_no"],
        "org_id": window.unit,
        "window_id": window.device["window_id"],
        "handled_at": handled,
    }
    body = {k: fields[k] for k in ("case_no", "service_no", "item_code", "window_id", "staff_id")}
    body.update(unit_id=window.unit, handled_at=handled)
    try:
        register_one(engine, body, "demo", "hcp-demo", now=now)
        record_id = kiosk.rate_case(fields, 5)
    except (EventError, RuntimeError) as exc:
        return f"自助机 kiosk ({kiosk.device_id}): {exc}"
    if record_id is None:
        return f"自助机 kiosk ({kiosk.device_id}): 未评价 not rated {kiosk.errors[-1:]}"
    return f"自助机 kiosk ({kiosk.device_id}): 办件 {fields['case_no']} 已评价 rated"


def _rater(
    keypad: SimKeypad,
    window: Window | None,
    pace: float,
    stop: threading.Event,
    rng: random.Random,
) -> None:
    levels, weights = zip(*STAR_WEIGHTS.items(), strict=True)
    while not stop.wait(rng.expovariate(1 / pace) if pace > 0 else 0):
        stars = rng.choices(levels, weights)[0]
        if window is not None and window.unit is not None and window.start_case() is None:
            # the window PC could not start the case: this citizen does not
            # rate (an honest rating is never a walk-up one in the demo, so the
            # burst rule sees only the planted burst)
            stop.wait(0.5)
            continue
        keypad.rate(stars, reason_index=rng.randrange(2) if is_bad(stars) else None)


def _units_of_windows(engine) -> dict:
    from sync_server import org

    with engine.connect() as conn:
        return {w["id"]: w["unit"] for w in org.members(conn, "windows")}


def _plant_burst(engine, keypad: SimKeypad, thresholds: dict) -> tuple[list[str], dict | None]:
    """A staff member presses 非常满意 on `keypad` as many times as the burst
    rule needs, with no case started; once the collector has them, scan the
    last two days. Returns the burst's record ids and its flag (or None)."""
    from sqlalchemy import select

    from sync_server import gaming

    count = int(thresholds["HCP_GAMING_BURST_COUNT"])
    device_id = keypad.settings["device_id"]
    with engine.connect() as conn:
        known = {
            r.id
            for r in conn.execute(
                select(db.evaluations.c.id).where(db.evaluations.c.device_id == device_id)
            )
        }
    for _ in range(count):
        keypad.rate(5)
    keypad.wait_drained(20)
    ev = db.evaluations.c
    deadline = time.monotonic() + 20
    burst: list[str] = []
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            burst = [
                r.id
                for r in conn.execute(
                    select(ev.id)
                    .where(ev.device_id == device_id, ev.case_no.is_(None))
                    .order_by(ev.effective_at, ev.id)
                )
                if r.id not in known
            ]
        if len(burst) >= count:
            break
        time.sleep(0.2)
    gaming.run_recent(engine, 2, thresholds)
    with engine.connect() as conn:
        for flag in gaming.flags(conn, rule="burst_no_case"):
            if flag["subject"] == device_id and set(burst) <= set(flag["evidence"]["records"]):
                return burst, flag
    return burst, None


def _keypad_ratings(engine) -> int:
    """Ratings stored from the keypads (the other channels are counted apart)."""
    from sqlalchemy import func, select

    ev = db.evaluations.c
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(ev.channel == "keypad")).scalar()


def _status(engine) -> tuple[dict, int]:
    """The report's figures as the outbox page reads them, and the 差评
    cases still being worked on."""
    from sqlalchemy import func, select

    from sync_server import cases, outbox
    from sync_server.schema_cases import cases as cases_table

    with engine.connect() as conn:
        figures = outbox.figures(conn)
        open_cases = conn.execute(
            select(func.count())
            .select_from(cases_table)
            .where(cases_table.c.state.in_(cases.ACTIVE))
        ).scalar()
    return figures, open_cases


def _report_line(figures: dict) -> str:
    acked = figures["backlog"]["acked"]
    lag = figures["p50_ack_s"]
    oldest = figures["oldest_unsent_age_s"]
    return (
        f"上报 province: 待报 backlog {figures['unsent']}, 已确认 acked {acked}, "
        f"延迟 lag p50 {'-' if lag is None else f'{lag:.1f}s'}"
        f"{'' if oldest is None else f', 最早待报 oldest {oldest:.0f}s'}"
    )


def run(args) -> int:
    from hcp.sim_province import start_beside
    from hcp.sim_sms import demo_channels
    from sync_server import background, gaming, tags

    console = Console(highlight=False, soft_wrap=True)
    # the demo's own requests (citizen channels, the SMS gateway) are not news
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    devices = _devices(workdir, args.devices)
    _province, province_server, province_url, credential = start_beside(workdir)
    config = {
        "HCP_PROVINCE_URL": province_url,
        "HCP_PROVINCE_CREDENTIAL": str(credential),
        **DEMO_GAMING,
    }
    stack = LocalStack(
        workdir,
        args.broker,
        mqtt_port=args.mqtt_port,
        devices=[Device(d["device_id"], d["key_hex"], d["window_id"]) for d in devices],
        web=True,
        web_port=args.web_port,
        config=config,
    )
    windows: list[Window] = []
    running = citizen_kiosk = None
    try:
        with stack:
            broker, engine, web = stack.broker, stack.engine, stack.web_url
            password = demo_password(workdir, engine)
            _demo_org(engine)
            register_demo_events(engine)  # the simulated windows' service events (issue 10)
            manager, unit = DEMO_MANAGER
            manager_password = demo_password(workdir, engine, manager, "unit_manager", unit)
            supervisor_password = demo_password(workdir, engine, SUPERVISOR, "supervisor")
            # the tags in force at the collector, which the province knows too
            with engine.connect() as conn:
                in_force = tags.device_tags(conn, "offline")
            publish_configs(broker.host, broker.port, devices, in_force)
            units = _units_of_windows(engine)
            keypads = []
            for dev, device in zip(devices, stack.devices, strict=True):
                uart = PtyUART()
                keypads.append(
                    stack.start_keypad(device, uart=uart, walk_up=True, confirm_ms=CONFIRM_MS)
                )
                windows.append(Window(engine, dev, units.get(dev["window_id"]), uart))
            kiosk, kiosk_id, kiosk_port, headless = start_demo_kiosk(stack, workdir)
            citizen_kiosk = KioskCitizen(stack, workdir)
            citizen_kiosk.start()
            held_at_start = sum(k.pending() for k in keypads)
            stored_at_start = _keypad_ratings(engine)

            console.print("[bold]hcp 演示 / demo[/bold] — 仅用于演示的模拟设备 (simulated devices)")
            console.print(f"  网页 web:    {web}   (admin / {password})")
            console.print(
                f"  单位管理员 unit manager (闻韶街道): {DEMO_MANAGER[0]} / {manager_password}"
            )
            console.print(f"  督查 supervisor: {SUPERVISOR} / {supervisor_password}")
            console.print(f"  消息 broker: {broker.url}  ({broker.kind})")
            console.print(f"  数据 data:   {workdir}")
            console.print(
                f"  自助机 kiosk: {kiosk_id} {'headless' if headless else 'windowed'}, "
                f"PIN {DEMO_PIN}, API http://127.0.0.1:{kiosk_port}"
            )
            console.print(f"  省平台 province (simulated): {province_url}")
            console.print(
                "  评价器接窗口机 keypads wired to window PCs: "
                + ", ".join(f"{w.device['device_id']}={w.uart.path}" for w in windows)
            )
            if held_at_start:
                console.print(
                    f"  设备上次留存 {held_at_start} 条，正在补传 (held from last run, sending)"
                )
            console.print("  群众渠道 citizen channels:")
            for line in demo_channels(stack, password):
                console.print("  " + line)
            console.print("    " + _kiosk_rating(engine, citizen_kiosk, windows[0]))
            running = background.start(stack.app, fleet=(broker.host, broker.port, None))

            thresholds = gaming.SETTINGS | {
                k: v for k, v in stack.app.config.items() if k.startswith("HCP_GAMING_")
            }
            burst, flag = _plant_burst(engine, keypads[0], thresholds)
            console.print(
                f"  刷好评演示 planted burst: {keypads[0].settings['device_id']} "
                f"连按 {len(burst)} 次非常满意，无办件 (pressed 5 stars with no case)"
            )
            if flag is not None:
                console.print(
                    f"  疑似刷评 gaming flag: {web}/gaming/{flag['id']}  (督查 supervisor)"
                )
            else:
                console.print(
                    f"  疑似刷评 gaming flag: 无新标记 no new flag (an earlier burst on this "
                    f"keypad within the rule's minutes may hold it: {web}/gaming)"
                )
            console.print(
                "  演示阈值 demo gaming settings: "
                + ", ".join(f"{k}={v}" for k, v in DEMO_GAMING.items())
            )
            console.print("  打开 open:")
            for label, path in (
                ("差评工单 bad-review cases", "/cases"),
                ("排名 rankings", "/rankings"),
                ("公示 public page", "/public"),
                ("上报省平台 reporting upward", "/outbox"),
                ("疑似刷评 gaming evidence", "/gaming"),
                ("设备 fleet", "/fleet"),
            ):
                console.print(f"    {label}: {web}{path}")
            console.print("  Ctrl-C 停止 / to stop")

            rng = random.Random()
            raters = [
                threading.Thread(
                    target=_rater,
                    args=(k, w, args.pace, stop, random.Random(rng.random())),
                    daemon=True,
                )
                for k, w in zip(keypads, windows, strict=True)
            ]
            for t in raters:
                t.start()
            started = time.monotonic()
            deadline = started + args.duration if args.duration else None
            try:
                while not stop.wait(1.0):
                    elapsed = time.monotonic() - started
                    stored = _keypad_ratings(engine) - stored_at_start
                    pending = sum(k.pending() for k in keypads)
                    figures, open_cases = _status(engine)
                    console.print(
                        f"  {elapsed:6.0f}s  已收到 received {stored:6d}  "
                        f"待发 pending {pending:4d}  {stored / elapsed:6.1f} 条/秒 rec/s  "
                        f"{_report_line(figures)}  在办差评 open cases {open_cases}"
                    )
                    if deadline and time.monotonic() >= deadline:
                        stop.set()
            finally:
                stop.set()
                for t in raters:
                    t.join(10)
                for k in keypads:  # give the keypads a moment to send what they hold
                    k.wait_drained(5)
                stack.stop_keypads()
                citizen_kiosk.stop()
                elapsed = time.monotonic() - started
                stored = _keypad_ratings(engine) - stored_at_start
                pending = sum(k.call(lambda d: len(d.store)) for k in keypads)
                presses = sum(k.presses for k in keypads)
                started_cases = sum(w.started for w in windows)
                figures, open_cases = _status(engine)
                if running is not None:
                    running.stop()
                    running = None
                stack.stop()  # ingest, web app, broker
                console.print(
                    f"  停止 stopped: {presses} 次评价 ratings made, {stored} 条入库 stored "
                    f"({stored / elapsed:.1f}/s), {pending} 条留在设备上 kept on the devices"
                )
                console.print(
                    f"  办件 cases started on keypads: {started_cases}; {_report_line(figures)}; "
                    f"在办差评 open cases {open_cases}"
                )
                failed = [e for w in windows for e in w.errors]
                if failed:
                    console.print(
                        f"  未能开始的办件 cases not started: {len(failed)} (first: {failed[0]})"
                    )
    finally:
        if running is not None:
            running.stop()
        if citizen_kiosk is not None:
            citizen_kiosk.stop()
        for window in windows:
            window.close()
        province_server.shutdown()
        province_server.server_close()
    return 0
