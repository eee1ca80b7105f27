"""`hcp collector ...`: run the collector and manage its users and devices.

    hcp collector serve --db URL --mqtt mqtt://HOST:PORT --host 127.0.0.1 --port 8080
    hcp collector create-user USERNAME --role ROLE [--unit UNIT] [--password P]
    hcp collector create-token NAME --role ROLE [--unit UNIT]
    hcp collector add-device DEVICE_ID [--key HEX] [--kind keypad|kiosk] [--window W]

`--db` defaults to the app's own SQLite file in its instance folder.
"""

from __future__ import annotations

import getpass
import secrets
import signal
import sys
import threading
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from werkzeug.serving import make_server

from protocols.levels import DEVICE_CHANNELS
from protocols.record import valid_device_id
from sync_server.auth import ROLES

KEY_BYTES = 32
DEVICE_KINDS = DEVICE_CHANNELS  # a device's kind is the channel of its records


def serve_web(app, host: str, port: int):
    """Serve `app` with werkzeug's threaded server in a daemon thread.

    Returns (server, thread); `server.shutdown()` stops it within a tenth of
    a second (the loop looks for it that often; werkzeug's default, half a
    second, added up over the hundreds of servers the tests start). The
    socket is bound before this returns, so the address can be used at once.
    """
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="hcp-web", daemon=True
    )
    thread.start()
    return server, thread


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """'mqtt://HOST:PORT' -> (host, port); ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"--mqtt: must look like mqtt://HOST:PORT, got {url!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        raise ValueError(f"--mqtt: bad port in {url!r}") from None
    return parts.hostname, port


def _app(args):
    from sync_server import create_app

    config = {"DATABASE_URL": args.db} if args.db else {}
    if getattr(args, "settings", None):
        config["HCP_SETTINGS"] = args.settings
    if getattr(args, "plain_http", False):
        config["SESSION_COOKIE_SECURE"] = False
    return create_app(config or None)


def _fail(message: str) -> int:
    print("error: " + message, file=sys.stderr)
    return 1


def serve(args) -> int:
    from sync_server.ingest import IngestService

    try:
        mqtt_host, mqtt_port = parse_mqtt_url(args.mqtt)
    except ValueError as exc:
        return _fail(str(exc))
    from sync_server import SettingsError

    try:
        app = _app(args)
    except SettingsError as exc:
        return _fail(str(exc))
    engine = app.extensions["hcp_engine"]
    parts = urlsplit(args.mqtt)
    try:
        ingest = IngestService(
            engine,
            mqtt_host,
            mqtt_port,
            client_id=args.client_id,
            username=parts.username,
            password=parts.password,
            share_group=args.share_group,
        )
    except ValueError as exc:
        return _fail(f"--share-group: {exc}".replace("share_group: ", ""))
    # Ctrl-C or SIGTERM while the parts are still starting only asks for a
    # stop: the loop below sees it at once and everything started is stopped
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return _run(args, app, engine, ingest, _fleet_of(args, mqtt_host, mqtt_port, parts), stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fleet_of(args, host, port, parts):
    return (host, port, parts.password) if getattr(args, "fleet", False) else None


def _run(args, app, engine, ingest, fleet, stop) -> int:
    try:
        ingest.start()
    except (OSError, RuntimeError) as exc:
        ingest.stop()
        return _fail(f"cannot reach the MQTT broker at {args.mqtt}: {exc}")
    try:
        server, thread = serve_web(app, args.host, args.port)
    except OSError as exc:
        ingest.stop()
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc}")
    from sync_server import background

    try:
        jobs = background.start(app, fleet)
    except (OSError, ValueError, ConnectionError) as exc:
        server.shutdown()
        ingest.stop()
        return _fail(f"cannot start the collector's background work: {exc}")

    print(f"collector web: http://{args.host}:{server.server_port}/", flush=True)
    print(f"collector mqtt: {args.mqtt} (Ctrl-C to stop)", flush=True)
    print("collector background: " + ", ".join(jobs.names()), flush=True)
    try:
        while not stop.wait(0.5):
            if not thread.is_alive():
                return _fail("the web server stopped unexpectedly")
    finally:
        jobs.stop()
        server.shutdown()
        ingest.stop()
        engine.dispose()
        print(f"collector stopped ({ingest.records_stored} records stored this run)", flush=True)
    return 0


def broker_auth_command(args) -> int:
    from sync_server import broker_auth, db

    if not 1 <= args.port <= 65535:
        return _fail("--port: must be 1..65535")
    if args.bind_address is not None and len(args.bind_address.split()) != 1:
        return _fail("--bind-address: must be one address or host name")
    password = args.collector_password
    if password is None:
        password = getpass.getpass(f"MQTT password for {broker_auth.COLLECTOR_USER}: ")
    if len(password) < 12:
        return _fail("--collector-password: must be at least 12 characters")
    engine = _app(args).extensions["hcp_engine"]
    if not 1 <= args.collectors <= 64:
        return _fail("--collectors: must be 1..64")
    passwd, acl, conf = broker_auth.write_files(
        args.out,
        db.device_keys(engine),
        password,
        args.port,
        args.bind_address,
        collectors=args.collectors,
    )
    print(f"wrote {passwd}, {acl} and {conf}")
    print(f"in mosquitto.conf (and no other listener on port {args.port}):")
    print(f"  include_dir {conf.parent}")
    print("after a change, reload Mosquitto (SIGHUP, e.g. systemctl reload mosquitto)")
    print(
        f"collector: hcp collector serve --mqtt mqtt://{broker_auth.COLLECTOR_USER}:…@HOST:{args.port}"
    )
    return 0


def create_user_command(args) -> int:
    from sync_server.auth import create_user

    password = args.password
    if password is None:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            return _fail("the two passwords differ")
    app = _app(args)
    try:
        create_user(app.extensions["hcp_engine"], args.username, password, args.role, args.unit)
    except ValueError as exc:
        return _fail(str(exc))
    print(f"user {args.username} ({args.role}) created")
    return 0


def create_token_command(args) -> int:
    from sync_server import tokens

    app = _app(args)
    try:
        with app.extensions["hcp_engine"].begin() as conn:
            token_id, token = tokens.create(conn, args.name, args.role, args.unit, "cli")
    except ValueError as exc:
        return _fail(str(exc))
    print(f"token {token_id} ({args.role}) created; it is not shown again:")
    print(token)
    return 0


def add_device_command(args) -> int:
    from sync_server import db

    if not valid_device_id(args.device_id):
        return _fail("device_id: must be 1..32 characters of A-Z a-z 0-9 - _")
    key_hex = args.key
    if key_hex is not None:
        try:
            if len(bytes.fromhex(key_hex)) < 16:
                raise ValueError
        except ValueError:
            return _fail("--key: must be at least 16 bytes as hex (32 hex characters or more)")
        key_hex = key_hex.lower()
    generated = key_hex is None
    if generated:
        key_hex = secrets.token_hex(KEY_BYTES)
    app = _app(args)
    try:
        db.add_device(
            app.extensions["hcp_engine"],
            args.device_id,
            key_hex,
            kind=args.kind,
            window_id=args.window,
            name=args.name,
        )
    except IntegrityError:
        return _fail(f"device_id: {args.device_id!r} is already registered")
    print(f"device {args.device_id} ({args.kind}) registered")
    if generated:
        # shown once: the collector keeps it, but nothing prints it again
        print(f"key (provision it on the device; it is not shown again): {key_hex}")
    return 0


def register(commands) -> None:
    collector = commands.add_parser("collector", help="the collector: web UI, API and ingest")
    sub = collector.add_subparsers(dest="collector_command", metavar="SUBCOMMAND")
    sub.required = True

    def with_db(parser):
        parser.add_argument("--db", default=None, help="SQLAlchemy database URL")
        return parser

    serve_parser = with_db(sub.add_parser("serve", help="run MQTT ingest and the web UI"))
    serve_parser.add_argument(
        "--mqtt", default="mqtt://127.0.0.1:1883", help="mqtt://[USER:PASSWORD@]HOST:PORT"
    )
    serve_parser.add_argument("--host", default="127.0.0.1", help="web address (default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, default=8080, help="web port (default 8080)")
    serve_parser.add_argument(
        "--plain-http",
        action="store_true",
        help="session cookie without Secure, for a browser reaching this port over plain HTTP",
    )
    serve_parser.add_argument(
        "--share-group",
        help="share the ingest with the collectors of this group (MQTT shared subscriptions)",
    )
    serve_parser.add_argument(
        "--client-id",
        default="hcp-collector",
        help="MQTT client id, one per collector (a broker run by broker-auth uses the user name)",
    )
    serve_parser.add_argument(
        "--settings",
        help="the collector's settings, a TOML file (default: $HCP_SETTINGS, "
        "else settings.toml in the instance folder)",
    )
    serve_parser.add_argument(
        "--fleet",
        action="store_true",
        help="also run the fleet agent (MQTT user hcp-fleet, the collector's password)",
    )
    serve_parser.set_defaults(handler=serve)

    user_parser = with_db(sub.add_parser("create-user", help="add a web user"))
    user_parser.add_argument("username")
    user_parser.add_argument("--role", choices=ROLES, required=True)
    user_parser.add_argument("--unit", help="unit code (unit_manager and clerk only)")
    user_parser.add_argument("--password", help="prompted for when not given")
    user_parser.set_defaults(handler=create_user_command)

    token_parser = with_db(sub.add_parser("create-token", help="add an API token (shown once)"))
    token_parser.add_argument("name", help="who uses it, e.g. business-system")
    token_parser.add_argument("--role", choices=ROLES, required=True)
    token_parser.add_argument("--unit", help="unit code (unit_manager and clerk only)")
    token_parser.set_defaults(handler=create_token_command)

    device_parser = with_db(sub.add_parser("add-device", help="register a device and its key"))
    device_parser.add_argument("device_id")
    device_parser.add_argument("--key", help="HMAC key as hex (default: a new 32-byte key)")
    device_parser.add_argument("--kind", choices=DEVICE_KINDS, default="keypad")
    device_parser.add_argument("--window", help="window id the device sits at")
    device_parser.add_argument("--name", help="a name for people")
    device_parser.set_defaults(handler=add_device_command)

    auth_parser = with_db(
        sub.add_parser(
            "broker-auth", help="write Mosquitto's password file, ACL and listener config"
        )
    )
    auth_parser.add_argument("--out", required=True, help="folder for passwd, acl and hcp.conf")
    auth_parser.add_argument(
        "--port", type=int, default=1883, help="the MQTT listener's port (default 1883)"
    )
    auth_parser.add_argument(
        "--bind-address", help="the listener's address (default: every interface)"
    )
    auth_parser.add_argument(
        "--collector-password", help="the collector's MQTT password (prompted for when not given)"
    )
    auth_parser.add_argument(
        "--collectors",
        type=int,
        default=1,
        help="collector logins for collectors sharing the work (default 1)",
    )
    auth_parser.set_defaults(handler=broker_auth_command)

    from hcp.fleet import add_remove_device
    from sync_server import figures_cli, rankings_cli

    figures_cli.register(sub)
    rankings_cli.register(sub)
    add_remove_device(sub)
