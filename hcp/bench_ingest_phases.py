"""Where the durable ingest spends its time, per record and per phase.

    python -m hcp.bench_ingest_phases [--database sqlite|postgresql]
        [--batch 50] [--records 20000] [--group 20]

The bench's signed stream (hcp.bench.make_stream) goes straight to
Ingestor.process_many in groups of `--group` messages, as the service's
worker gets them, without a broker: what is left is the collector's own
work. Each phase is timed by wrapping its function (wall time, so a phase
that waits on the database counts its wait): deciding (decode, classify),
the look-up of stored ids, the insert with the features' before steps, and
each feature's after step. Phases nest (the store run holds the insert), so
the shares do not add up to 100 %; a loaded machine stretches every figure,
the shares less, and the line "CPU time of this process" (the collector's
own CPU, the database server's not in it) least. For PostgreSQL,
HCP_BENCH_PG names the server (as for `hcp bench`).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import Counter

from hcp.bench import make_stream, postgres_database
from sync_server import clock, db, features, ingest


@contextlib.contextmanager
def _timed(owner, name: str, label: str, totals: Counter):
    """`owner.name` timed into totals[label] while the block runs."""
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    function = original.__func__ if isinstance(original, staticmethod) else original

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - started

    setattr(owner, name, staticmethod(wrapper) if isinstance(original, staticmethod) else wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def measure(database: str = "sqlite", batch: int = 50, records: int = 20000, group: int = 20):
    """(records stored, seconds, {phase: seconds}); the seconds of this
    process's CPU time are under the label CPU."""
    stream, keys = make_stream(10, records, batch)
    items = [(topic, payload, False) for topic, payload, _ in stream]
    totals: Counter = Counter()
    with contextlib.ExitStack() as scope:
        if database == "postgresql":
            url = scope.enter_context(postgres_database())
        else:
            folder = scope.enter_context(tempfile.TemporaryDirectory(prefix="hcp-phases-"))
            url = f"sqlite:///{folder}/phases.db"
        engine = db.make_engine(url)
        scope.callback(engine.dispose)
        db.init(engine)
        for device_id, key in keys.items():
            db.add_device(engine, device_id, key.hex())
        targets = [
            (ingest.Ingestor, "_store_run", "store run (all of it)"),
            (ingest, "classify", "classify (check, verify)"),
            (ingest.Ingestor, "_decode_batch", "decode"),
            (ingest, "_stored_sigs", "look-up of stored ids"),
            (ingest, "_lock_devices", "device locks"),
            (clock, "boot_refs", "boot clocks"),
            (ingest, "evaluation_row", "evaluation rows"),
            (features, "store_evaluations", "insert (with before steps)"),
            (ingest.Ingestor, "_ack", "signed acks"),
            (ingest, "_touch", "last seen"),
            (features, "after_store", "after steps (all)"),
        ]
        for module in features.modules():
            for step in ("before_store", "after_store"):
                if hasattr(module, step):
                    targets.append((module, step, f"{module.__name__.split('.')[-1]}.{step}"))
        for owner, name, label in targets:
            scope.enter_context(_timed(owner, name, label, totals))
        ingestor = ingest.Ingestor(engine)
        stored = 0
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(items), group):
            outcomes = ingestor.process_many(items[start : start + group])
            stored += sum(len(o.stored) for o in outcomes)
        elapsed = time.perf_counter() - started
        totals[CPU] = time.process_time() - cpu
    return stored, elapsed, dict(totals)


# this process's CPU time over the run (the database server's not in it): on a
# machine other work loads, it moves less than the wall times
CPU = "CPU time of this process"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hcp.bench_ingest_phases")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--batch", type=int, default=50, help="records per message")
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--group", type=int, default=20, help="messages per transaction")
    args = parser.parse_args(argv)
    stored, elapsed, totals = measure(args.database, args.batch, args.records, args.group)
    print(
        f"{args.database}, batches of {args.batch}, groups of {args.group}: {stored} records "
        f"in {elapsed:.2f} s = {stored / elapsed:,.0f} records/s "
        f"({elapsed / stored * 1e6:.1f} us a record)"
    )
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(
            f"  {label:34s} {seconds / stored * 1e6:7.1f} us a record  "
            f"{100 * seconds / elapsed:5.1f} %"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
