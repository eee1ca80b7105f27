"""`hcp fleet ...` and `hcp collector remove-device`: the fleet from the command line.

    hcp collector remove-device kp-07 --db URL --broker-auth-dir /etc/mosquitto/hcp \
        --broker-pid-file /run/mosquitto/mosquitto.pid
    hcp fleet agent --db URL --mqtt mqtt://hcp-fleet:PASSWORD@HOST:1883
    hcp fleet bundle 0.2.0 build/firmware --db URL
    hcp fleet rollout 0.2.0 --group unit:370305001 --percent 10 --url http://10.0.0.2:8080 --db URL
    hcp fleet stop 3 --db URL

remove-device deletes the device's key (its ratings stay), cancels its open
commands, rewrites the broker's password file without it and reloads
Mosquitto (SIGHUP): the broker refuses the login from then on and closes its
open connection (docs/fleet.md).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEFAULT_DB = "sqlite:///instance/hcp.db"


def _fail(message: str) -> int:
    print("error: " + message, file=sys.stderr)
    return 1


def _engine(args):
    from hcp.provision import ProvisionError, engine_for

    url = args.db or os.environ.get("HCP_DATABASE_URL") or DEFAULT_DB
    try:
        return engine_for(url)
    except ProvisionError as exc:
        raise SystemExit(_fail(str(exc))) from None


def remove_device_command(args) -> int:
    from sync_server import audit, fleet

    engine = _engine(args)
    with engine.begin() as conn:
        removed = fleet.remove_device(conn, args.device_id)
        if removed is None:
            return _fail(f"device_id: no device {args.device_id!r}")
        audit.record(conn, "fleet.remove", f"device:{args.device_id}", removed, None)
    print(f"removed {args.device_id}: its key is gone, its ratings stay")
    if not args.broker_auth_dir:
        print("now rewrite the broker's files (hcp collector broker-auth) and reload Mosquitto")
        return 0
    try:
        print(fleet.revoke_on_broker(engine, args.broker_auth_dir, args.broker_pid,
                                     args.broker_pid_file))  # fmt: skip
    except (OSError, ValueError) as exc:
        return _fail(f"--broker-auth-dir: {exc}")
    return 0


def add_remove_device(sub) -> None:
    """`remove-device` under `hcp collector` (sync_server/cli.py calls this)."""
    parser = sub.add_parser("remove-device", help="remove a device: key, broker login, commands")
    parser.add_argument("device_id")
    parser.add_argument("--db", default=None, help="SQLAlchemy database URL")
    parser.add_argument("--broker-auth-dir", help="the folder broker-auth wrote (passwd rewritten)")
    parser.add_argument("--broker-pid", type=int, help="Mosquitto's process id (SIGHUP)")
    parser.add_argument("--broker-pid-file", help="Mosquitto's pid file (SIGHUP)")
    parser.set_defaults(handler=remove_device_command)


def broker_login_command(args) -> int:
    import getpass

    from hcp.broker import reload_mosquitto
    from sync_server import broker_auth

    password = args.password or os.environ.get("HCP_FLEET_PASSWORD")
    if password is None:
        password = getpass.getpass(f"MQTT password for {broker_auth.FLEET_USER}: ")
    try:
        broker_auth.add_fleet_login(args.broker_auth_dir, password)
        target = broker_auth.broker_pid(args.broker_pid, args.broker_pid_file)
        if target is not None:  # returns once Mosquitto has read the files again
            reload_mosquitto(target, args.broker_auth_dir)
    except (OSError, ValueError) as exc:
        return _fail(f"--broker-auth-dir: {exc}")
    print(f"{broker_auth.FLEET_USER} may now log in"
          + (f"; Mosquitto {target} reloaded" if target else "; reload Mosquitto now"))  # fmt: skip
    return 0


def _mqtt(url: str):
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"--mqtt: must look like mqtt://[USER:PASSWORD@]HOST:PORT, got {url!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, parts.port or 1883, user, password


def agent_command(args) -> int:
    from sync_server import broker_auth
    from sync_server.fleet_agent import FleetAgent

    try:
        host, port, user, password = _mqtt(args.mqtt)
    except ValueError as exc:
        return _fail(str(exc))
    engine = _engine(args)
    password = password or os.environ.get("HCP_FLEET_PASSWORD")
    agent = FleetAgent(engine, host, port, user or broker_auth.FLEET_USER, password)
    try:
        agent.start()
    except ConnectionError as exc:
        return _fail(str(exc))
    print(f"fleet agent connected to {host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    agent.stop()
    print(f"fleet agent stopped ({agent.sent} commands sent, {agent.results} answers)")
    return 0


def bundle_command(args) -> int:
    from hcp.provision import ProvisionError
    from sync_server import firmware

    folder = Path(args.folder)
    if not folder.is_dir():
        return _fail(f"folder: {folder} is not a folder")
    engine = _engine(args)
    try:
        files = compiled(folder, args.board) if args.compile else firmware.files_from_folder(folder)
        with engine.begin() as conn:
            manifest = firmware.add_bundle(conn, args.version, files, "cli", args.chunk)
    except firmware.FirmwareError as exc:
        return _fail(str(exc))
    except ProvisionError as exc:  # mpy-cross missing or refusing a file
        return _fail(str(exc))
    size = sum(f["size"] for f in manifest["files"])
    print(f"bundle {args.version}: {len(manifest['files'])} files, {size} bytes")
    return 0


def compiled(source_root: Path, board_name: str | None) -> dict[str, bytes]:
    """The firmware files of a source tree (a checkout), compiled with mpy-cross
    as `hcp provision --flash` does; paths relative to the board's /lib."""
    import tempfile

    from hcp.provision import compile_firmware

    with tempfile.TemporaryDirectory(prefix="hcp-bundle-") as tmp:
        files = compile_firmware(Path(tmp), 0, board_name, source_root)
        return {path.removeprefix("/lib/"): local.read_bytes() for path, local in files.items()}


def rollout_command(args) -> int:
    from sync_server import firmware

    engine = _engine(args)
    try:
        with engine.begin() as conn:
            rollout_id = firmware.start_rollout(
                conn, args.version, args.group, args.percent, "cli", args.url, args.health_s
            )
            count = len([r for r in firmware.rollouts(conn) if r["id"] == rollout_id][0]["targets"])
    except firmware.FirmwareError as exc:
        return _fail(str(exc))
    print(f"rollout {rollout_id}: {args.version} to {count} devices")
    return 0


def stop_command(args) -> int:
    from sync_server import firmware

    engine = _engine(args)
    try:
        with engine.begin() as conn:
            cancelled = firmware.stop_rollout(conn, args.rollout_id)
    except firmware.FirmwareError as exc:
        return _fail(str(exc))
    print(f"rollout {args.rollout_id} stopped; {cancelled} undelivered commands cancelled")
    return 0


def register(commands) -> None:
    fleet = commands.add_parser("fleet", help="device configs, commands and firmware updates")
    sub = fleet.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")
    sub.required = True

    def with_db(parser):
        parser.add_argument("--db", default=None, help="SQLAlchemy database URL")
        return parser

    agent = with_db(sub.add_parser("agent", help="deliver configs and commands over MQTT"))
    agent.add_argument(
        "--mqtt", default="mqtt://127.0.0.1:1883", help="mqtt://[USER:PASSWORD@]HOST:PORT"
    )
    agent.set_defaults(handler=agent_command)
    bundle = with_db(sub.add_parser("bundle", help="store a firmware bundle from a folder"))
    bundle.add_argument("version")
    bundle.add_argument("folder", help="the firmware root (device/, protocols/ ... as .mpy)")
    bundle.add_argument(
        "--compile",
        action="store_true",
        help="FOLDER is a source tree (a checkout): compile its firmware with mpy-cross",
    )
    bundle.add_argument("--board", help="with --compile: the board file to include, e.g. sim")
    bundle.add_argument("--chunk", type=int, default=4096, help="download chunk size in bytes")
    bundle.set_defaults(handler=bundle_command)
    rollout = with_db(sub.add_parser("rollout", help="send a bundle to a group of devices"))
    rollout.add_argument("version")
    rollout.add_argument("--group", default="all", help="all, unit:<id> or devices:<id>,<id>")
    rollout.add_argument("--percent", type=int, default=100, help="1..100 of the group")
    rollout.add_argument("--url", required=True, help="the collector's address as devices see it")
    rollout.add_argument("--health-s", type=int, default=300, help="seconds to report healthy")
    rollout.set_defaults(handler=rollout_command)
    stop = with_db(sub.add_parser("stop", help="stop a rollout"))
    stop.add_argument("rollout_id", type=int)
    stop.set_defaults(handler=stop_command)
    add_remove_device(sub)
    login = sub.add_parser("broker-login", help="give the fleet agent its broker login")
    login.add_argument("--broker-auth-dir", required=True, help="the folder broker-auth wrote")
    login.add_argument("--password", help="the agent's MQTT password (HCP_FLEET_PASSWORD)")
    login.add_argument("--broker-pid", type=int, help="Mosquitto's process id (SIGHUP)")
    login.add_argument("--broker-pid-file", help="Mosquitto's pid file (SIGHUP)")
    login.set_defaults(handler=broker_login_command)


def main(argv=None) -> int:
    """`hcp fleet ...` (and `remove-device`) without the lead's registration."""
    import argparse

    parser = argparse.ArgumentParser(prog="hcp")
    commands = parser.add_subparsers(dest="command")
    register(commands)
    args = parser.parse_args(argv)
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
