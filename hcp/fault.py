"""For tests only: the fault run (`hcp sim fault`). Many simulated keypads rate
while the broker restarts, the collector is killed, links are cut and keypads
lose power (some mid-write); afterwards every (device, seq) is counted at the
collector.

Pass means: each device's records 1..last_seq are stored exactly once, the
per-level counts the device kept equal what was stored, and nothing sits in
quarantine. The run stops by itself; all traffic stays on 127.0.0.1.

On Mosquitto the run's broker has access control on, as in production
(hcp.broker.SecuredMosquitto: the files `hcp collector broker-auth` writes):
the collector logs in with its login, each keypad with its id and derived
password; the run checks first that an anonymous client is refused. amqtt
runs open (docs/architecture.md, "Testing").
"""

from __future__ import annotations

import random
import secrets
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from hcp.broker import NOT_AUTHORISED, MosquittoBroker, login_answer
from hcp.stack import Device, LocalStack, broker_kind
from sync_server import db

FAULTS = ("link", "broker", "collector", "power")

# keypad settings that keep a run short: quick acks, a short follow-up window
FAST = {"ack_timeout_ms": 2000, "confirm_ms": 50, "timeout_ms": 1000}


@dataclass
class Report:
    devices: int
    seconds: float
    faults: Counter = field(default_factory=Counter)
    made: int = 0  # records the keypads created (sum of their last seq)
    stored: int = 0
    missing: list[str] = field(default_factory=list)  # "device:seq" made but not stored
    unexpected: list[str] = field(default_factory=list)  # stored but never made
    count_mismatches: list[str] = field(default_factory=list)
    quarantined: int = 0
    drained: bool = False
    # the broker's answer to an anonymous client at the start: 135 (refused) with
    # access control on, 0 (let in) on an open broker
    anonymous_answer: int | None = None

    @property
    def ok(self) -> bool:
        return (
            self.drained
            and not self.missing
            and not self.unexpected
            and not self.count_mismatches
            and self.quarantined == 0
            and self.stored == self.made
        )


class _Slot:
    """One keypad position; a power cut replaces the keypad in it."""

    def __init__(self, make):
        self.make = make
        self.lock = threading.Lock()
        self.keypad = make()


class FaultRun:
    def __init__(self, workdir, devices=6, duration=30.0, broker="mosquitto", pace=0.05,
                 fault_every=1.5, seed=None):  # fmt: skip
        self.workdir = Path(workdir)
        self.devices = devices
        self.duration = duration
        self.broker_kind = broker
        self.pace = pace
        self.fault_every = fault_every
        self.rng = random.Random(seed)
        self.log: list[str] = []

    def _kill_collector(self):
        # a process that dies says no goodbye and PUBACKs nothing more
        self.stack.ingest.kill()

    def run(self) -> Report:
        devices = [Device(f"kp-fault-{n:02d}", secrets.token_hex(32)) for n in range(self.devices)]
        # Mosquitto locked down as in production; amqtt cannot be (it runs open)
        with LocalStack(self.workdir, self.broker_kind, devices=devices,
                        client_id="hcp-collector-fault",
                        access_control=self.broker_kind == "mosquitto") as stack:  # fmt: skip
            self.stack, self.engine, self.broker = stack, stack.engine, stack.broker
            return self._run(stack, devices)

    def _run(self, stack, devices) -> Report:
        report = Report(devices=self.devices, seconds=0)
        report.anonymous_answer = login_answer(stack.broker)
        if stack.broker.access_control and report.anonymous_answer != NOT_AUTHORISED:
            raise RuntimeError(f"the broker let an anonymous client in ({stack.broker.url})")
        slots = [_Slot(lambda d=device: stack.start_keypad(d, **FAST)) for device in devices]
        stop = threading.Event()
        raters = [threading.Thread(target=self._rate, args=(slot, stop), daemon=True)
                  for slot in slots]  # fmt: skip
        started = time.monotonic()
        for t in raters:
            t.start()
        try:
            n = 0
            while True:
                left = self.duration - (time.monotonic() - started)
                if left < self.fault_every:
                    time.sleep(max(0.0, left))  # no fault would fit before the end
                    break
                time.sleep(self.fault_every)
                kind = FAULTS[n % len(FAULTS)]  # every kind, in turn, on random targets
                n += 1
                self._inject(kind, slots)
                report.faults[kind] += 1
        finally:
            stop.set()
            for t in raters:
                t.join(15)
        for slot in slots:
            slot.keypad.network.link_up = True
        report.drained = all(slot.keypad.wait_drained(60) for slot in slots)
        report.seconds = round(time.monotonic() - started, 1)
        kept = {
            slot.keypad.settings["device_id"]: slot.keypad.call(
                lambda d: (d.store.last_seq, dict(d.store.counts))
            )
            for slot in slots
        }
        self.count(kept, report)
        return report  # the stack stops keypads, collector, broker and database

    def _rate(self, slot, stop):
        rng = random.Random(self.rng.random())
        while not stop.wait(rng.expovariate(1 / self.pace)):
            with slot.lock:
                stars = rng.choice((5, 5, 5, 4, 4, 3, 2, 1))
                try:
                    slot.keypad.rate(stars, reason_index=0)
                except TimeoutError:
                    pass  # a keypad busy reconnecting; the citizen tries again

    def _inject(self, kind, slots):
        rng = self.rng
        if kind == "link":
            slot = rng.choice(slots)
            slot.keypad.network.link_up = False
            threading.Timer(rng.uniform(0.5, 2.0), self._link_up, (slot,)).start()
        elif kind == "broker":
            self.broker.stop()
            time.sleep(rng.uniform(0.2, 1.0))
            self.broker.start()
        elif kind == "collector":
            self._kill_collector()
            time.sleep(rng.uniform(0.2, 1.0))
            self.stack.start_ingest()
        elif kind == "power":
            slot = rng.choice(slots)
            with slot.lock:
                self.stack.stop_keypad(slot.keypad.settings["device_id"], power_cut=True)
                if rng.random() < 0.5:  # the cut came in the middle of a journal write
                    with open(Path(slot.keypad.settings["data_dir"]) / "journal", "ab") as f:
                        f.write(b'1a2b3c4d {"a":{"id":"torn')
                slot.keypad = slot.make()
        self.log.append(kind)

    @staticmethod
    def _link_up(slot):
        slot.keypad.network.link_up = True

    def count(self, kept, report):
        count_stored(self.engine, kept, report)


def count_stored(engine, kept, report) -> None:
    """Compare what each device made, {device_id: (last_seq, counts)}, with the store."""
    ev = db.evaluations.c
    with engine.connect() as conn:
        rows = conn.execute(select(ev.device_id, ev.seq, ev.stars)).all()
        report.quarantined = conn.execute(select(func.count()).select_from(db.quarantine)).scalar()
    stored = {}
    for device_id, seq, stars in rows:
        stored.setdefault(device_id, {})[seq] = stars
    report.stored = len(rows)
    for device_id, (last_seq, counts) in kept.items():
        report.made += last_seq
        have = stored.get(device_id, {})
        report.missing += [f"{device_id}:{s}" for s in range(1, last_seq + 1) if s not in have]
        report.unexpected += [f"{device_id}:{s}" for s in have if not 1 <= s <= last_seq]
        got = Counter(str(stars) for stars in have.values())
        if any(got.get(k, 0) != v for k, v in counts.items()):
            report.count_mismatches.append(f"{device_id}: device {counts}, stored {dict(got)}")


# -- `hcp sim fault` ---------------------------------------------------------


def register(runs) -> None:
    """Add `fault` to the runs of `hcp sim`."""
    fault = runs.add_parser("fault", help="keypads rating through broker, collector, link and "
                            "power faults; then count every (device, seq)")  # fmt: skip
    fault.add_argument("--devices", type=int, default=10)
    fault.add_argument("--duration", type=float, default=60, help="seconds of faults (default 60)")
    fault.add_argument("--fault-every", type=float, default=1.5, help="seconds between faults")
    fault.add_argument("--broker", choices=["mosquitto", "amqtt"], default=None,
                       help="default: mosquitto where installed, else amqtt")  # fmt: skip
    fault.add_argument("--seed", type=int, default=None)
    fault.add_argument("--workdir", default=None, help="keep the run's files here")
    fault.add_argument("--processes", action="store_true",
                       help="collectors, Mosquitto and keypads as processes killed with SIGKILL; "
                       "PostgreSQL where a server answers")  # fmt: skip
    fault.add_argument("--collectors", type=int, default=2,
                       help="with --processes: collectors sharing the ingest")  # fmt: skip
    fault.set_defaults(handler=run)


def run(args) -> int:
    console = Console(highlight=False)
    kind = broker_kind(args.broker)
    if args.processes:
        from hcp import fault_processes

        if kind != "mosquitto" or not MosquittoBroker.available():
            console.print("--processes needs Mosquitto (shared subscriptions, persistence)")
            return 2
        console.print(f"fault run with processes: {args.devices} keypads, {args.collectors} "
                      f"collectors, {args.duration:.0f} s, mosquitto (simulated devices, for "
                      "tests)")  # fmt: skip
        report = fault_processes.run_with_processes(args, console)
        return _print(console, report)
    with tempfile.TemporaryDirectory(prefix="hcp-fault-") as tmp:
        console.print(f"fault run: {args.devices} keypads, {args.duration:.0f} s, {kind} "
                      "(simulated devices, for tests)")  # fmt: skip
        fault_run = FaultRun(args.workdir or tmp, devices=args.devices, duration=args.duration,
                             broker=kind, fault_every=args.fault_every, seed=args.seed)  # fmt: skip
        report = fault_run.run()
    return _print(console, report)


def _print(console, report) -> int:
    table = Table(title="fault run")
    table.add_column("what")
    table.add_column("count", justify="right")
    for kind_name, count in sorted(report.faults.items()):
        table.add_row(f"faults: {kind_name}", str(count))
    table.add_row("records made on the keypads", str(report.made))
    table.add_row("records stored at the collector", str(report.stored))
    table.add_row("lost (made, not stored)", str(len(report.missing)))
    table.add_row("stored but never made", str(len(report.unexpected)))
    table.add_row("per-level count mismatches", str(len(report.count_mismatches)))
    table.add_row("quarantined", str(report.quarantined))
    table.add_row("keypads drained", "yes" if report.drained else "no")
    if report.anonymous_answer is not None:
        refused = report.anonymous_answer == NOT_AUTHORISED
        table.add_row("broker access control", "on" if refused else "off (open broker)")
    console.print(table)
    for line in report.missing[:20] + report.unexpected[:20] + report.count_mismatches:
        console.print(f"  {line}")
    console.print("PASS: nothing lost, nothing twice" if report.ok else "FAIL")
    return 0 if report.ok else 1
