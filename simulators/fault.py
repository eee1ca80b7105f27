"""For tests only: the fault run. Many simulated keypads rate while the broker
restarts, the collector is killed, links are cut and keypads lose power (some
mid-write); afterwards every (device, seq) is counted at the collector.

Pass means: each device's records 1..last_seq are stored exactly once, the
per-level counts the device kept equal what was stored, and nothing sits in
quarantine. The run stops by itself; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from hcp.broker import start_broker
from simulators.keypad import SimKeypad
from sync_server import db
from sync_server.ingest import IngestService

FAULTS = ("link", "broker", "collector", "power")


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

    def _collector(self):
        service = IngestService(self.engine, self.broker.host, self.broker.port,
                                client_id="hcp-collector-fault")  # fmt: skip
        service.start()
        return service

    def _kill_collector(self):
        # a process that dies says no goodbye: stop the loop, drop the socket
        self.collector.client.loop_stop()
        sock = self.collector.client.socket()
        if sock is not None:
            sock.close()

    def run(self) -> Report:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.engine = db.make_engine(f"sqlite:///{self.workdir / 'collector.db'}")
        db.init(self.engine)
        self.broker = start_broker(self.broker_kind, workdir=str(self.workdir / "broker"))
        self.broker.start()
        self.collector = self._collector()
        slots = []
        for n in range(self.devices):
            device_id, key_hex = f"kp-fault-{n:02d}", secrets.token_hex(32)
            db.add_device(self.engine, device_id, key_hex)
            data = str(self.workdir / device_id)

            def make(device_id=device_id, key_hex=key_hex, data=data):
                host, port = self.broker.host, self.broker.port
                fast = {"ack_timeout_ms": 2000, "thanks_ms": 50, "timeout_ms": 1000}
                return SimKeypad(device_id, key_hex, host, port, data, **fast).start()

            slots.append(_Slot(make))
        report = Report(devices=self.devices, seconds=0)
        stop = threading.Event()
        raters = [threading.Thread(target=self._rate, args=(slot, stop), daemon=True)
                  for slot in slots]  # fmt: skip
        started = time.monotonic()
        for t in raters:
            t.start()
        try:
            n = 0
            while time.monotonic() - started < self.duration:
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
        for slot in slots:
            slot.keypad.stop()
        self.collector.stop()
        self.broker.stop()
        self.engine.dispose()
        return report

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
            self.collector = self._collector()
        elif kind == "power":
            slot = rng.choice(slots)
            with slot.lock:
                slot.keypad.stop(power_cut=True)
                if rng.random() < 0.5:  # the cut came in the middle of a journal write
                    with open(Path(slot.keypad.settings["data_dir"]) / "journal", "ab") as f:
                        f.write(b'1a2b3c4d {"a":{"id":"torn')
                slot.keypad = slot.make()
        self.log.append(kind)

    @staticmethod
    def _link_up(slot):
        slot.keypad.network.link_up = True

    def count(self, kept, report):
        """Compare what each device made, {device_id: (last_seq, counts)}, with the store."""
        ev = db.evaluations.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(ev.device_id, ev.seq, ev.stars)).all()
            report.quarantined = conn.execute(
                select(func.count()).select_from(db.quarantine)
            ).scalar()
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
