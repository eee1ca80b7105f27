"""`hcp demo`: the whole suite on its embedded defaults, on one machine.

An embedded broker (amqtt; Mosquitto with --broker mosquitto), the collector
(ingest and web UI on SQLite) and simulated window keypads that citizens
"press" at random. State lives in a work folder (default .hcp-demo), so what
the keypads still hold when the demo stops is sent on the next start.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from rich.console import Console

from hcp.service_events import register_demo_events
from hcp.stack import Device, LocalStack
from kiosk.demo_content import DEMO_PIN, start_demo_kiosk
from protocols import messages, topics
from protocols.levels import is_bad
from simulators.keypad import SimKeypad
from sync_server import db
from sync_server.auth import create_user

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


def _admin_password(workdir: Path, engine, username="admin", role="admin", unit=None) -> str:
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


def _publish_configs(host: str, port: int, devices: list[dict]) -> None:
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
            **DEMO_TAGS,
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


def _rater(keypad: SimKeypad, pace: float, stop: threading.Event, rng: random.Random) -> None:
    levels, weights = zip(*STAR_WEIGHTS.items(), strict=True)
    while not stop.wait(rng.expovariate(1 / pace) if pace > 0 else 0):
        stars = rng.choices(levels, weights)[0]
        keypad.rate(stars, reason_index=rng.randrange(2) if is_bad(stars) else None)


def run(args) -> int:
    console = Console(highlight=False, soft_wrap=True)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    devices = _devices(workdir, args.devices)
    stack = LocalStack(
        workdir,
        args.broker,
        mqtt_port=args.mqtt_port,
        devices=[Device(d["device_id"], d["key_hex"], d["window_id"]) for d in devices],
        web=True,
        web_port=args.web_port,
    )
    with stack:
        broker, engine = stack.broker, stack.engine
        password = _admin_password(workdir, engine)
        _demo_org(engine)
        register_demo_events(engine)  # the simulated windows' service events (issue 10)
        manager, unit = DEMO_MANAGER
        manager_password = _admin_password(workdir, engine, manager, "unit_manager", unit)
        _publish_configs(broker.host, broker.port, devices)
        keypads = stack.start_keypads()
        kiosk, kiosk_id, kiosk_port, headless = start_demo_kiosk(stack, workdir)
        held_at_start = sum(k.pending() for k in keypads)
        stored_at_start = db.count_evaluations(engine)

        console.print("[bold]hcp 演示 / demo[/bold] — 仅用于演示的模拟设备 (simulated devices)")
        console.print(f"  网页 web:    {stack.web_url}   (admin / {password})")
        console.print(
            f"  单位管理员 unit manager (闻韶街道): {DEMO_MANAGER[0]} / {manager_password}"
        )
        console.print(f"  消息 broker: {broker.url}  ({broker.kind})")
        console.print(f"  数据 data:   {workdir}")
        console.print(
            f"  自助机 kiosk: {kiosk_id} {'headless' if headless else 'windowed'}, "
            f"PIN {DEMO_PIN}, API http://127.0.0.1:{kiosk_port}"
        )
        if held_at_start:
            console.print(
                f"  设备上次留存 {held_at_start} 条，正在补传 (held from last run, sending)"
            )
        console.print("  Ctrl-C 停止 / to stop")

        rng = random.Random()
        raters = [
            threading.Thread(
                target=_rater, args=(k, args.pace, stop, random.Random(rng.random())), daemon=True
            )
            for k in keypads
        ]
        for t in raters:
            t.start()
        started = time.monotonic()
        deadline = started + args.duration if args.duration else None
        try:
            while not stop.wait(1.0):
                elapsed = time.monotonic() - started
                stored = db.count_evaluations(engine) - stored_at_start
                pending = sum(k.pending() for k in keypads)
                console.print(
                    f"  {elapsed:6.0f}s  已收到 received {stored:6d}  "
                    f"待发 pending {pending:4d}  {stored / elapsed:6.1f} 条/秒 rec/s"
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
            elapsed = time.monotonic() - started
            stored = db.count_evaluations(engine) - stored_at_start
            pending = sum(k.call(lambda d: len(d.store)) for k in keypads)
            presses = sum(k.presses for k in keypads)
            stack.stop()  # ingest, web app, broker
            console.print(
                f"  停止 stopped: {presses} 次评价 ratings made, {stored} 条入库 stored "
                f"({stored / elapsed:.1f}/s), {pending} 条留在设备上 kept on the devices"
            )
    return 0
