"""MQTT brokers for the demo and the tests, each run as a child process.

Two kinds share one interface (`start`, `stop`, `restart`, `host`, `port`,
`url`, `kind`, context manager):

* `AmqttBroker` -- the embedded default (amqtt is a Python dependency, so it
  is always there).
* `MosquittoBroker` -- the production broker, used where it is installed.

Both listen on 127.0.0.1 only, allow anonymous clients and keep their config
and log files in a work directory (a temporary one unless given). The one
exception is a `MosquittoBroker` given an `auth_dir` from `hcp collector
broker-auth`: it is then started from exactly those files, listener included
(see MosquittoBroker). `SecuredMosquitto` writes such a folder itself (for
the tests and the fault runs): access control on, nothing anonymous, each
client with its own login (`collector_login`, `fleet_login`; devices log in
with their derived passwords) and devices let in or out by a reload
(`allow`). The open brokers answer the same calls with no login and no-ops,
so a test can run on either.

    with start_broker("amqtt") as broker:
        client.connect(broker.host, broker.port)

Measured with paho-mqtt 2.2 (tests/test_device_mqtt.py checks the same with
the device client): on both kinds QoS 1 publish/subscribe works, and a
persistent session (clean_session False) receives the QoS 1 messages
published while it was offline once it reconnects. Only Mosquitto with
`persistence=True` keeps sessions across `restart()`; amqtt keeps sessions in
memory, so a restarted amqtt broker has forgotten every session.

amqtt 0.12.1 needs two corrections, both made here (details at the classes):
its anonymous login turns off offline queueing (AmqttOpenAuthPlugin), and it
pushed retained messages to clients that had not subscribed to them
(the FixedBroker in _fixed_amqtt_broker_class). The amqtt child process is
therefore started through _amqtt_main(), not the `amqtt` console script.
"""

import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 20
NOT_AUTHORISED = 135  # paho's reason code for CONNACK 5 (MQTT 3.1.1 "not authorised")
RELOAD_LINE = b"Reloading config."  # Mosquitto's log line when a SIGHUP is handled
WAKE_TIMEOUT_S = 2.0  # wake_after_reload: a page that revokes a device waits no longer


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _SubprocessBroker:
    """Shared machinery: config file, child process, readiness wait, log tail."""

    kind = "?"
    host = "127.0.0.1"

    def __init__(self, port: int | None = None, workdir: str | os.PathLike | None = None):
        self.port = port or free_port()
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"hcp-{self.kind}-")
            workdir = self._tmp.name
        else:
            self._tmp = None
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / self._config_name()
        self.log_path = self.workdir / f"{self.kind}.log"
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # -- to be provided by the subclasses
    def _config_name(self) -> str:
        raise NotImplementedError

    def _config_text(self) -> str:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    # -- public interface
    access_control = False  # open: anyone gets in (SecuredMosquitto: logins only)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def url_with(self, login: tuple[str | None, str | None]) -> str:
        """The broker's URL with a (user, password) login in it, as
        `hcp collector serve --mqtt` takes it; no user: the plain URL."""
        user, password = login
        if not user:
            return self.url
        return f"mqtt://{user}:{password}@{self.host}:{self.port}"

    def collector_login(self, n: int = 1) -> tuple[str | None, str | None]:
        """An open broker needs no login: (None, None)."""
        return None, None

    def fleet_login(self) -> tuple[str | None, str | None]:
        return None, None

    def allow(self, devices) -> None:
        """An open broker lets every device in: nothing to do."""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self):
        """Start the broker and wait until its port takes TCP connections."""
        if self.running:
            return self
        if _port_open(self.host, self.port):
            raise RuntimeError(f"{self.kind}: port {self.port} is already in use")
        self.config_path.write_text(self._config_text(), encoding="utf-8")
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
            env=self._env(),
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._cleanup()
                raise RuntimeError(
                    f"{self.kind} exited with code {code} while starting on port {self.port}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if _port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.kind} did not accept connections on port {self.port} within "
            f"{START_TIMEOUT_S:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait until its port is free."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        self._cleanup()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        """Die as a crashed broker does: SIGKILL, no chance to save anything."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        self._cleanup()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self):
        """Stop and start again on the same port (and the same persistence file)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temporary work directory, if this object made one."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def _cleanup(self) -> None:
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"


class MosquittoBroker(_SubprocessBroker):
    """Mosquitto with a generated config.

    `max_queued_messages=0` means no limit (Mosquitto's own default is 1000 per
    client, which would silently drop messages for an offline device).

    With `auth_dir` (the folder `hcp collector broker-auth` writes) the config
    declares no listener and no security of its own: it loads that folder with
    `include_dir`, the way the production broker does, so the listener (its
    port, `use_username_as_clientid`), the password file and the ACL are
    exactly what the operator gets. `reload()` sends SIGHUP, which makes
    Mosquitto read the password file and the ACL again.
    """

    kind = "mosquitto"

    def __init__(
        self,
        port: int | None = None,
        workdir: str | os.PathLike | None = None,
        max_queued_messages: int = 0,
        persistence: bool = False,
        auth_dir: str | os.PathLike | None = None,
    ):
        self.max_queued_messages = max_queued_messages
        self.persistence = persistence
        # a folder written by `hcp collector broker-auth` (sync_server.broker_auth):
        # its *.conf declares the listener and locks it down, so the port comes from there
        self.auth_dir = Path(auth_dir).resolve() if auth_dir else None
        if self.auth_dir is not None:
            listen_port, address = _declared_listener(self.auth_dir)
            if port is not None and port != listen_port:
                raise ValueError(
                    f"port {port} differs from the listener in {self.auth_dir}: {listen_port}"
                )
            port = listen_port
            if address:
                self.host = address
        super().__init__(port, workdir)

    @staticmethod
    def binary() -> str | None:
        found = shutil.which("mosquitto")
        if found:
            return found
        if os.access("/usr/sbin/mosquitto", os.X_OK):
            return "/usr/sbin/mosquitto"
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.binary() is not None

    def _config_name(self) -> str:
        return "mosquitto.conf"

    def _config_text(self) -> str:
        lines = [
            "# written by hcp.broker; regenerated on every start",
            *self._listener_lines(),
            f"max_queued_messages {self.max_queued_messages}",
            # the collector commits the QoS 1 messages waiting for it as one group
            # before it acknowledges them; Mosquitto's default lets only 20 wait
            "max_inflight_messages 1000",
            # send each packet at once: with Nagle's algorithm an ack for a keypad
            # waited behind the PUBACK the keypad had not acknowledged yet (TCP
            # delayed ack, about 40 ms on Linux): record written -> ack p50 went
            # from 50 to 13 ms for one keypad
            "set_tcp_nodelay true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            "autosave_interval 1",
            # stderr: unbuffered, so the log file shows each line at once (stdout to
            # a file is block-buffered: a reload's line showed up only seconds later)
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Started as root, Mosquitto switches to the "mosquitto" user, which
            # cannot write the persistence file into our work directory.
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def _listener_lines(self) -> list[str]:
        if self.auth_dir is None:
            return [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        # Listener and security come from the included folder only. Nothing
        # listener-specific may follow in this file: it would not apply to
        # the included listener but to Mosquitto's default one (port 1883).
        return [f"include_dir {self.auth_dir}"]

    def reload(self, wait: bool = True) -> None:
        """SIGHUP: Mosquitto reloads its password file and ACL, without a restart.

        With `wait`, returns once Mosquitto has logged "Reloading config.": it
        logs that line in its (single-threaded) main loop just before it reads
        the files again, so a client that connects after the line is judged
        by the new files (measured with Mosquitto 2.0.11)."""
        if not self.running:
            raise RuntimeError("mosquitto is not running")
        before = self._reloads_logged()
        self._proc.send_signal(signal.SIGHUP)
        if not wait:
            return
        wake_after_reload(self.host, self.port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._reloads_logged() <= before:
            if time.monotonic() > deadline or not self.running:
                raise RuntimeError(
                    f"mosquitto did not reload within {START_TIMEOUT_S:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def _reloads_logged(self) -> int:
        try:
            return self.log_path.read_bytes().count(RELOAD_LINE)
        except OSError:
            return 0

    def _command(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("the mosquitto binary was not found")
        return [binary, "-c", str(self.config_path)]


def _declared_listener(folder: Path) -> tuple[int, str | None]:
    """(port, bind address or None) of the first `listener` line in folder/*.conf."""
    for conf in sorted(folder.glob("*.conf")):
        for line in conf.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) in (2, 3) and words[0] == "listener":
                return int(words[1]), (words[2] if len(words) == 3 else None)
    raise ValueError(f"no *.conf in {folder} declares a listener")


def wake_after_reload(host: str, port: int) -> None:
    """After a SIGHUP: make Mosquitto handle the reload now.

    Mosquitto (2.0.11 measured) handles a SIGHUP in its main loop, after the
    loop's wait for network events, which lasts up to about 0.1 s when nothing
    happens. This connects once, sends an MQTT CONNECT without a login and
    reads the CONNACK (refused on a locked-down broker, which Mosquitto logs
    as "Client hcp-reload disconnected, not authorised."): the loop pass that
    accepted the connection handled the reload before the pass that read the
    CONNECT, so when this returns the files are read again and a client that
    connects from now on is judged by them, and a revoked device's connection
    is closed. Errors are swallowed: the signal was sent, Mosquitto then
    reloads at its own pace."""
    client_id = b"hcp-reload"
    # CONNECT, MQTT 3.1.1: protocol name and level, clean session, keep-alive 10 s
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=WAKE_TIMEOUT_S) as sock:
            sock.sendall(bytes([0x10, len(variable)]) + variable)
            answer = b""
            while len(answer) < 4:  # CONNACK: 0x20 0x02 flags code
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    break
                answer += chunk
    except OSError:
        pass


def auth_listener(auth_dir) -> tuple[str, int]:
    """(host, port) to reach the listener declared in a folder `hcp collector
    broker-auth` wrote (on every interface: 127.0.0.1)."""
    port, address = _declared_listener(Path(auth_dir))
    return address or "127.0.0.1", port


def reload_mosquitto(pid: int, auth_dir) -> None:
    """Make the Mosquitto with process id `pid`, listening as `auth_dir`'s
    hcp.conf declares, read its password file and ACL again (SIGHUP), and
    return once it has (wake_after_reload). For `hcp provision
    --broker-pid` and the fleet's revocation."""
    from sync_server import broker_auth

    broker_auth.reload(pid)  # raises on a pid that cannot be Mosquitto's, or a dead one
    try:
        listener = auth_listener(auth_dir)
    except (OSError, ValueError):
        return  # no listener declared there: Mosquitto reloads at its own pace
    wake_after_reload(*listener)


class SecuredMosquitto(MosquittoBroker):
    """Mosquitto with access control on, from the files `hcp collector
    broker-auth` writes (sync_server.broker_auth), for the end-to-end tests
    and the fault runs.

    `workdir`/auth holds `passwd`, `acl` and `hcp.conf` for `devices`
    ((device_id, key_hex) pairs), `collectors` collector logins
    (hcp-collector, hcp-collector-2 …) and, with `fleet`, the fleet agent's
    login, all with `service_password` (a new random one unless given); the
    listener on 127.0.0.1 and a free port. Nobody gets in anonymously, a
    device only with its own derived password, and only to its own topics.

    `allow(devices)` makes `devices` the ones let in from now on: the device
    lines of `passwd` are written anew (broker_auth.rewrite_device_logins, as
    revocation does) and Mosquitto reloads them (no restart). The files stay
    in place across `restart()`.
    """

    access_control = True

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        devices=(),
        service_password: str | None = None,
        collectors: int = 1,
        fleet: bool = True,
        port: int | None = None,
        max_queued_messages: int = 0,
        persistence: bool = False,
    ):
        from sync_server import broker_auth

        tmp = None
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="hcp-mosquitto-")
            workdir = tmp.name
        workdir = Path(workdir)
        # a URL-safe password: collectors started as processes get it in --mqtt's URL
        self.service_password = service_password or secrets.token_hex(16)
        self.collectors = collectors
        self.fleet = fleet
        self.devices = dict(devices)
        broker_auth.write_files(workdir / "auth", self.devices.items(), self.service_password,
                                port=port or free_port(), bind_address="127.0.0.1",
                                collectors=collectors, fleet=fleet)  # fmt: skip
        super().__init__(
            workdir=workdir,
            max_queued_messages=max_queued_messages,
            persistence=persistence,
            auth_dir=workdir / "auth",
        )
        self._tmp = tmp

    def collector_login(self, n: int = 1) -> tuple[str, str]:
        """The n-th collector's (user, password); each collector its own."""
        from sync_server import broker_auth

        users = broker_auth.collector_users(self.collectors)
        if not 1 <= n <= len(users):
            raise ValueError(f"collector {n}: this broker has logins for 1..{len(users)}")
        return users[n - 1], self.service_password

    def fleet_login(self) -> tuple[str, str]:
        """The fleet agent's (user, password): it writes configs and commands."""
        from sync_server import broker_auth

        if not self.fleet:
            raise ValueError("this broker was started without the fleet agent's login")
        return broker_auth.FLEET_USER, self.service_password

    def allow(self, devices) -> None:
        """Let exactly `devices` ((device_id, key_hex) pairs) in from now on;
        a running broker reloads (a removed or re-keyed device's connection is
        closed by it)."""
        from sync_server import broker_auth

        devices = dict(devices)
        if devices == self.devices:
            return  # nothing changes: no reload
        self.devices = devices
        broker_auth.rewrite_device_logins(self.auth_dir, self.devices.items())
        if self.running:
            self.reload()


class AmqttBroker(_SubprocessBroker):
    """amqtt 0.12 run through its `amqtt -c <yaml>` entry point.

    Sessions live in the broker's memory: they survive client reconnects but
    not `restart()`.
    """

    kind = "amqtt"

    def _config_name(self) -> str:
        return "amqtt.yaml"

    def _config_text(self) -> str:
        # One auth plugin that lets everyone in (see AmqttOpenAuthPlugin); no
        # topic plugin means no topic checks, no $SYS plugin keeps it quiet.
        return (
            "# written by hcp.broker; regenerated on every start\n"
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n"
            f"  {__name__}.AmqttOpenAuthPlugin: {{}}\n"
        )

    def _env(self) -> dict[str, str]:
        # The child must import this module to find the auth plugin, also when
        # the project is not installed into the interpreter that runs amqtt.
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        return env

    def _command(self) -> list[str]:
        # Not the `amqtt` console script: _amqtt_main() below runs the same
        # broker with one fix (see _fixed_amqtt_broker_class) and exits with a
        # traceback in the log when the listener cannot start.
        code = "import sys; from hcp.broker import _amqtt_main; _amqtt_main(sys.argv[1])"
        return [sys.executable, "-c", code, str(self.config_path)]


@functools.cache
def _open_auth_plugin_class():
    # Built on first use so that importing hcp.broker does not import amqtt.
    from amqtt.plugins.base import BaseAuthPlugin

    class AmqttOpenAuthPlugin(BaseAuthPlugin):
        """Accept every client without marking its session anonymous.

        amqtt 0.12's AnonymousAuthPlugin with allow_anonymous=true flags every
        session as anonymous, and amqtt then neither queues QoS 1 messages for
        an offline persistent session nor keeps that session after the client
        disconnects (measured: a clean_session=False client got nothing that
        was published while it was away). Our devices depend on exactly that
        queueing, so the embedded broker authenticates everyone as a named
        client instead.
        """

        async def authenticate(self, *, session) -> bool:
            return True

    AmqttOpenAuthPlugin.__module__ = __name__
    return AmqttOpenAuthPlugin


def _fixed_amqtt_broker_class():
    from amqtt.broker import Broker

    class FixedBroker(Broker):
        """amqtt's Broker, sending retained messages only to their subscribers.

        amqtt 0.12.1, on every CONNECT, sends each retained message that matches
        *any* client's subscription to the connecting client (measured: a
        client subscribed to nothing got another device's retained will, and
        a client subscribing to one status topic got its retained message
        twice). A keypad would then receive the retained down/config of other
        keypads. Here retained messages go out only for filters that this
        session itself holds, as MQTT 3.1.1 (3.3.1.3) describes.
        """

        async def _publish_retained_messages_for_subscription(self, subscription, session):
            holders = self._subscriptions.get(subscription[0], ())
            if any(held is session for held, _qos in holders):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return FixedBroker


def _amqtt_main(config_path: str) -> None:
    """Entry point of the amqtt child process (see AmqttBroker._command)."""
    import asyncio
    import logging

    from amqtt.utils import read_yaml_config

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s - %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    broker = _fixed_amqtt_broker_class()(read_yaml_config(config_path), loop=loop)
    loop.run_until_complete(broker.start())  # raises (exit code 1) if it cannot listen
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(broker.shutdown())
        loop.close()


def __getattr__(name: str):
    # amqtt loads plugins by dotted path: "hcp.broker.AmqttOpenAuthPlugin".
    if name == "AmqttOpenAuthPlugin":
        return _open_auth_plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


BROKER_KINDS = {
    "mosquitto": MosquittoBroker,
    "amqtt": AmqttBroker,
    # Mosquitto with access control on (SecuredMosquitto): for the runs of hcp
    # that start their own broker (the fault runs) and for the tests
    "secured-mosquitto": SecuredMosquitto,
}


def login_answer(broker, login=(None, None), client_id: str = "hcp-login-check") -> int:
    """Connect to `broker` with `login` ((user, password); (None, None):
    anonymously), disconnect again, and return the CONNACK's reason code as
    paho numbers it: 0 let in, 135 "not authorised" (CONNACK 5 of MQTT
    3.1.1), 134 bad user name or password."""
    import threading

    import paho.mqtt.client as mqtt

    answered = threading.Event()
    codes = []

    def on_connect(_client, _userdata, _flags, reason_code, _props):
        codes.append(reason_code.value)
        answered.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if login[0]:
        client.username_pw_set(*login)
    client.on_connect = on_connect
    client.reconnect_delay_set(30, 30)  # one try only
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        if not answered.wait(START_TIMEOUT_S):
            raise TimeoutError(f"no CONNACK from {broker.url}")
        return codes[0]
    finally:
        client.disconnect()
        client.loop_stop()


def start_broker(kind: str, **kw) -> _SubprocessBroker:
    """Create and start a broker of the given kind ("amqtt" or "mosquitto")."""
    try:
        cls = BROKER_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown broker kind {kind!r}; choose from {sorted(BROKER_KINDS)}"
        ) from None
    return cls(**kw).start()
