"""What keeping the figures costs durable ingest.

Stores the same ratings in batches through `features.store_evaluations` (the
one path into the evaluations table, every feature's before and after step
included) twice, each time into a fresh database: once as the collector does,
once with the figures' after step left out. The ratio of the two times is the
cost of the figures on ingest. Nothing is asserted; figures are printed.

Two spreads of ratings:

- ``spread``: each rating at a random time of 2026 at a random one of 120
  windows, so almost no two ratings of a batch share a figure row (the worst
  case for the figures);
- ``device``: each batch from one keypad (one window, one member of staff)
  within one hour of one day, as a real batch mostly is.

    python -m hcp.figures_ingest_cost [--ratings 20000] [--batch 50]
        [--databases sqlite,postgresql] [--spreads spread,device]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from pathlib import Path

START = 1767225600  # 2026-01-01T00:00:00Z
LEVELS = (5, 5, 5, 5, 4, 4, 3, 2, 1)
TAGS = {5: '["501"]', 4: '["401"]', 3: None, 2: '["201","202"]', 1: '["101"]'}


def ratings(count: int, batch: int, pairs, spread: str, seed: int = 8) -> list[list[dict]]:
    """`count` evaluation rows as the ingest stores them, in batches."""
    rng = random.Random(seed)
    stamp = "2026-11-27T00:00:00Z"
    batches: list[list[dict]] = []
    seqs: dict[str, int] = {}
    for first in range(0, count, batch):
        device_pair = rng.randrange(len(pairs))
        day = rng.randrange(365) * 86400 + rng.randrange(0, 9 * 3600)
        rows = []
        for n in range(first, min(count, first + batch)):
            if spread == "spread":
                w = rng.randrange(len(pairs))
                moment = START + rng.randrange(365) * 86400 + rng.randrange(0, 10 * 3600)
            else:
                w = device_pair
                moment = START + day + rng.randrange(0, 3600)
            device = f"ic-{w}"
            seqs[device] = seqs.get(device, 0) + 1
            window, staff = pairs[w]
            stars = rng.choice(LEVELS)
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
            rows.append(
                {
                    "id": f"{device}:{seqs[device]}", "device_id": device, "seq": seqs[device],
                    "stars": stars, "channel": "keypad", "tags": TAGS[stars],
                    "item_code": f"I{rng.randrange(50):03d}", "window_id": window,
                    "staff_id": staff if n % 3 else staff + "b", "org_id": None,
                    "rated_at": at, "clock": "ntp", "origin": "citizen", "attempt": 1,
                    "received_at": stamp, "effective_at": at, "time_source": "device",
                    "excluded": False, "reason_owed": False, "repeat_of": None,
                    "case_no": None, "service_no": None, "comment": None,
                }
            )  # fmt: skip
        batches.append(rows)
    return batches


@contextlib.contextmanager
def _figures_step(with_figures: bool, spent: list[float]):
    """The figures' after step left out, or timed into `spent`."""
    from sync_server import figures

    kept = figures.after_store

    def timed(conn, rows):
        started = time.perf_counter()
        kept(conn, rows)
        spent.append(time.perf_counter() - started)

    figures.after_store = timed if with_figures else (lambda conn, rows: None)
    try:
        yield
    finally:
        figures.after_store = kept


def _store_all(url: str, count: int, batch: int, spread: str, with_figures: bool) -> tuple:
    """A fresh database at `url`: the org, then every batch; seconds storing,
    and seconds of it in the figures' step."""
    from hcp.bench_figures import build_org
    from sync_server import db, features, org

    engine = db.make_engine(url)
    try:
        db.init(engine)
        org.seed(engine)  # Linzi's streets and towns
        batches = ratings(count, batch, build_org(engine), spread)
        spent: list[float] = []
        with _figures_step(with_figures, spent):
            started = time.perf_counter()
            for rows in batches:
                with engine.begin() as conn:
                    features.store_evaluations(conn, engine, [dict(row) for row in rows])
            return time.perf_counter() - started, sum(spent)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _database(kind: str):
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hcp-ingest-cost-") as folder:
            yield f"sqlite:///{Path(folder) / 'collector.db'}"
    else:
        from hcp.bench import postgres_database

        with postgres_database() as url:
            yield url


def measure(kind: str, count: int, batch: int, spread: str, rounds: int = 2) -> dict:
    """Best of `rounds` for each mode, alternating, each on a fresh database."""
    best = {True: float("inf"), False: float("inf")}
    step = float("inf")
    for _ in range(rounds):
        for with_figures in (False, True):
            with _database(kind) as url:
                taken, in_step = _store_all(url, count, batch, spread, with_figures)
            best[with_figures] = min(best[with_figures], taken)
            if with_figures:
                step = min(step, in_step)
    batches = -(-count // batch)
    return {
        "database": kind,
        "spread": spread,
        "ratings": count,
        "batch": batch,
        "without_figures_s": round(best[False], 2),
        "with_figures_s": round(best[True], 2),
        "ratio": round(best[True] / best[False], 2),
        # the after step itself (resolve, aggregate, upsert); the commit of
        # the rows it wrote is in the totals only
        "figures_step_ms_per_batch": round(step * 1000 / batches, 2),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--spreads", default="spread,device")
    args = parser.parse_args(argv)
    results = []
    for kind in args.databases.split(","):
        for spread in args.spreads.split(","):
            found = measure(kind, args.ratings, args.batch, spread, args.rounds)
            print(
                f"{kind:10} {spread:6} {found['ratings']} ratings in batches of {found['batch']}: "
                f"without figures {found['without_figures_s']} s, with {found['with_figures_s']} s,"
                f" ratio {found['ratio']}; the figures step {found['figures_step_ms_per_batch']} ms"
                " a batch",
                flush=True,
            )
            results.append(found)
    return results


if __name__ == "__main__":
    main()
