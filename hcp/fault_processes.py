"""For tests only: the fault run with real processes (`hcp sim fault --processes`).

Everything that can die runs as a process of its own and dies by SIGKILL, at
random moments, a transaction or a journal write in progress included:

- Mosquitto, with persistence and access control on (the files `hcp
  collector broker-auth` writes: each collector and keypad its own login,
  nobody anonymous), killed and started again;
- N collectors (`hcp collector serve`) sharing the ingest through MQTT
  shared subscriptions (`--share-group`), writing to one database
  (PostgreSQL where a server answers, else one SQLite file), each killed and
  started again under its own client id (its session waits for it);
- the simulated keypads, in a few host processes that rate all the time,
  killed and started again from the same data folders (a power cut).

Then the faults stop, every part runs, the keypads stop rating and drain,
and every (device, seq) is counted: pass means each device's records
1..last_seq stored exactly once, the per-level counts it kept equal what was
stored, nothing in quarantine.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hcp.broker import NOT_AUTHORISED, SecuredMosquitto, login_answer
from hcp.fault import FAST, Report, count_stored
from sync_server import db

KINDS = ("collector", "keypads", "broker")
STOP_FILE = "stop-rating"


class Child:
    """A process of the run, started again after it is killed."""

    def __init__(self, name: str, command: list[str], log: Path):
        self.name, self.command, self.log = name, command, log
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_run_broker(workdir, devices, collectors: int = 1) -> SecuredMosquitto:
    """The broker of the runs with processes (this one and the outbox's crash
    run, sync_server/outbox_crash.py): Mosquitto in `workdir`/broker with
    persistence on (a killed broker comes back with its sessions) and access
    control on: broker_auth's files for `devices` ((device_id, key_hex)
    pairs), `collectors` collector logins (their URLs: `collector_url`), no
    anonymous client. Started; raises RuntimeError if it lets one in."""
    broker = SecuredMosquitto(workdir=Path(workdir) / "broker", devices=devices,
                              collectors=collectors, fleet=False, persistence=True)  # fmt: skip
    broker.start()
    answer = login_answer(broker)
    if answer != NOT_AUTHORISED:
        broker.stop()
        raise RuntimeError(f"the run's broker let an anonymous client in (CONNACK {answer})")
    return broker


def collector_url(broker, n: int = 1) -> str:
    """`--mqtt` for the n-th collector: the broker's URL with that collector's
    own login (with use_username_as_clientid each login is one session)."""
    return broker.url_with(broker.collector_login(n))


# -- the keypad host: `python -m hcp.fault_processes keypads SPEC` -----------------------------


def host_keypads(spec_path: str) -> None:
    """Run the keypads of a spec: rate until the stop file appears, keep
    syncing, and write {device_id: [last_seq, pending]} to the spec's status
    file twice a second (by rename) until killed or terminated."""
    from simulators.keypad import SimKeypad

    spec = json.loads(Path(spec_path).read_text())
    stop_file = Path(spec["stop_file"])
    keypads = [
        SimKeypad(d["device_id"], d["key_hex"], spec["host"], spec["port"], d["folder"], **FAST)
        for d in spec["devices"]
    ]
    for keypad in keypads:
        keypad.start()
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())

    def rate(keypad, seed):
        rng = random.Random(seed)
        while not terminated.is_set() and not stop_file.exists():
            try:
                keypad.rate(rng.choice((5, 5, 5, 4, 4, 3, 2, 1)), reason_index=0)
            except TimeoutError:
                pass
            time.sleep(rng.expovariate(1 / spec["pace"]))

    for n, keypad in enumerate(keypads):
        threading.Thread(target=rate, args=(keypad, spec["seed"] + n), daemon=True).start()
    status = Path(spec["status_file"])
    while not terminated.is_set():
        figures = {
            k.settings["device_id"]: k.call(lambda d: [d.store.last_seq, len(d.store)])
            for k in keypads
        }
        figures["_rating"] = not stop_file.exists()
        status.with_suffix(".tmp").write_text(json.dumps(figures))
        os.replace(status.with_suffix(".tmp"), status)
        terminated.wait(0.5)
    for keypad in keypads:
        keypad.stop()


# -- the run ----------------------------------------------------------------------------------


class ProcessFaultRun:
    def __init__(self, workdir, devices=12, collectors=2, hosts=2, duration=60.0,
                 fault_every=3.0, database_url=None, pace=0.1, seed=None):  # fmt: skip
        self.workdir = Path(workdir)
        self.devices, self.collectors, self.hosts = devices, collectors, hosts
        self.duration, self.fault_every, self.pace = duration, fault_every, pace
        self.database_url = database_url or f"sqlite:///{self.workdir / 'collector.db'}"
        self.rng = random.Random(seed)
        self.seed = self.rng.randrange(1 << 30)

    def run(self) -> Report:
        self.workdir.mkdir(parents=True, exist_ok=True)
        engine = db.make_engine(self.database_url)
        db.init(engine)
        devices = [(f"kp-pf-{n:02d}", secrets.token_hex(32)) for n in range(self.devices)]
        from device.store import seed

        for device_id, key_hex in devices:
            db.add_device(engine, device_id, key_hex)
            # provisioned as `hcp provision` does: the store's first state is
            # written before the board runs (an unseeded store killed in its very
            # first state write cannot open again: device/store.py reads the
            # empty state.tmp)
            seed(str(self.workdir / device_id))
        broker = start_run_broker(self.workdir, devices, self.collectors)
        collectors = [self._collector(n, broker) for n in range(1, self.collectors + 1)]
        hosts = [self._host(n, devices[n :: self.hosts], broker) for n in range(self.hosts)]
        children = collectors + hosts
        report = Report(devices=self.devices, seconds=0)
        report.anonymous_answer = login_answer(broker)  # refused: start_run_broker checked
        started = time.monotonic()
        try:
            for child in children:
                child.start()
            n = 0
            while time.monotonic() - started < self.duration:
                time.sleep(self.fault_every)
                kind = KINDS[n % len(KINDS)]
                n += 1
                pause = self.rng.uniform(0.2, 1.5)
                if kind == "broker":
                    broker.kill()
                    time.sleep(pause)
                    broker.start()
                else:
                    child = self.rng.choice(collectors if kind == "collector" else hosts)
                    child.kill()
                    time.sleep(pause)
                    child.start()
                report.faults[kind] += 1
            (self.workdir / STOP_FILE).write_text("stop")  # the citizens go home
            report.drained = self._wait_drained(hosts, timeout=180)
            report.seconds = round(time.monotonic() - started, 1)
        finally:
            for child in children:
                child.stop()
            broker.stop()
        kept = {}
        from device.store import Store

        for device_id, _key in devices:
            store = Store(str(self.workdir / device_id))  # after its host has stopped
            kept[device_id] = (store.last_seq, dict(store.counts))
        count_stored(engine, kept, report)
        engine.dispose()
        return report

    def _collector(self, n: int, broker) -> Child:
        command = [sys.executable, "-m", "hcp", "collector", "serve", "--db", self.database_url,
                   "--mqtt", collector_url(broker, n), "--share-group", "hcp", "--client-id",
                   f"hcp-collector-{n}", "--port", "0"]  # fmt: skip
        return Child(f"collector-{n}", command, self.workdir / f"collector-{n}.log")

    def _host(self, n: int, devices, broker) -> Child:
        spec = {
            "host": broker.host,
            "port": broker.port,
            "pace": self.pace,
            "seed": self.seed + 1000 * n,
            "stop_file": str(self.workdir / STOP_FILE),
            "status_file": str(self.workdir / f"keypads-{n}.json"),
            "devices": [
                {"device_id": d, "key_hex": k, "folder": str(self.workdir / d)} for d, k in devices
            ],
        }
        path = self.workdir / f"keypads-{n}.spec.json"
        path.write_text(json.dumps(spec))
        command = [sys.executable, "-m", "hcp.fault_processes", "keypads", str(path)]
        return Child(f"keypads-{n}", command, self.workdir / f"keypads-{n}.log")

    def _wait_drained(self, hosts, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = []
            for n in range(len(hosts)):
                try:
                    statuses.append(json.loads((self.workdir / f"keypads-{n}.json").read_text()))
                except (OSError, ValueError):
                    statuses.append(None)
            if all(
                s is not None
                and not s["_rating"]
                and all(v[1] == 0 for k, v in s.items() if not k.startswith("_"))
                for s in statuses
            ):
                return True
            time.sleep(0.5)
        return False


def run_with_processes(args, console) -> Report:
    """`hcp sim fault --processes`: on PostgreSQL where a server answers, else SQLite."""
    from hcp.bench import postgres_database

    with tempfile.TemporaryDirectory(prefix="hcp-fault-proc-") as tmp:
        workdir = Path(args.workdir or tmp)
        try:
            with postgres_database() as url:
                console.print(f"database: PostgreSQL ({url.rsplit('/', 1)[-1]})")
                return _run(args, workdir, url)
        except OSError as exc:
            console.print(f"[yellow]{exc}; the run uses SQLite[/]")
            return _run(args, workdir, None)


def _run(args, workdir, url) -> Report:
    return ProcessFaultRun(workdir, devices=args.devices, collectors=args.collectors,
                           duration=args.duration, fault_every=args.fault_every,
                           database_url=url, seed=args.seed).run()  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keypads":
        host_keypads(sys.argv[2])
    else:
        sys.exit("usage: python -m hcp.fault_processes keypads SPEC.json (used by the fault run)")
