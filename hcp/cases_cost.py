"""What making 差评 cases costs durable ingest (issue 9).

Stores the same all-差评 batches through `features.store_evaluations` (the one
path into the evaluations table, every feature's steps included) into fresh
databases, alternately as the collector does and with the cases' after step
left out; the difference is what the cases cost, given as a share of the
store time. Each batch comes from one keypad (one window, one member of staff,
one hour), as a real batch mostly is; a tenth of the windows have an
assignment rule and every hall has two duty contacts, so the rules, the
contacts and the alerts are all exercised. Nothing is asserted; figures are
printed.

    python -m hcp.cases_cost [--ratings 5000] [--batch 50] [--rounds 3]
        [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from pathlib import Path

START = 1767225600  # 2026-01-01T00:00:00Z


def batches(count: int, batch: int, pairs, seed: int = 9) -> list[list[dict]]:
    """`count` 差评 rows (stars 1 and 2) as the ingest stores them, in batches."""
    rng = random.Random(seed)
    stamp = "2026-11-27T00:00:00Z"
    out: list[list[dict]] = []
    seqs: dict[str, int] = {}
    for first in range(0, count, batch):
        w = rng.randrange(len(pairs))
        day = rng.randrange(330) * 86400 + rng.randrange(0, 9 * 3600)
        window, staff = pairs[w]
        device = f"cc-{w}"
        rows = []
        for _n in range(first, min(count, first + batch)):
            seqs[device] = seqs.get(device, 0) + 1
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + day + rng.randrange(3600)))
            rows.append(
                {
                    "id": f"{device}:{seqs[device]}", "device_id": device, "seq": seqs[device],
                    "stars": rng.choice((1, 2)), "channel": "keypad", "tags": '["201"]',
                    "item_code": f"I{rng.randrange(50):03d}", "window_id": window,
                    "staff_id": staff, "org_id": None, "rated_at": at, "clock": "ntp",
                    "origin": "citizen", "attempt": 1, "received_at": stamp,
                    "effective_at": at, "time_source": "device", "excluded": False,
                    "reason_owed": rng.random() < 0.3, "repeat_of": None, "case_no": None,
                    "service_no": None, "comment": None,
                }
            )  # fmt: skip
        out.append(rows)
    return out


def build(engine) -> list[tuple[str, str]]:
    """The bench's organisation, a rule for every tenth window, two duty
    contacts a hall; (window, staff) pairs."""
    from hcp.bench_figures import build_org
    from sync_server import db
    from sync_server.schema_cases import case_rules, duty_contacts

    pairs = build_org(engine)
    now = db.utc_now()
    with engine.begin() as conn:
        halls = sorted({f"hall-{window[1:3]}" for window, _staff in pairs})
        for hall in halls:
            for n in range(2):
                conn.execute(
                    duty_contacts.insert().values(
                        unit_id=hall, name=f"值班{n}", phone=f"0533-70000{n:02d}",
                        created_by="bench", created_at=now,
                    )
                )  # fmt: skip
        for window, _staff in pairs[::10]:
            conn.execute(
                case_rules.insert().values(
                    match_kind="window", match_id=window, unit_id=halls[0],
                    created_by="bench", created_at=now,
                )
            )  # fmt: skip
    return pairs


@contextlib.contextmanager
def _without_cases():
    from sync_server import cases

    kept = cases.after_store
    cases.after_store = lambda conn, rows: None
    try:
        yield
    finally:
        cases.after_store = kept


def store_all(url: str, count: int, batch: int, with_cases: bool) -> tuple[float, int]:
    """A fresh database at `url`: the org, then every batch; (seconds storing,
    cases made)."""
    from sqlalchemy import func, select

    from sync_server import db, features, org
    from sync_server.schema_cases import cases

    engine = db.make_engine(url)
    try:
        db.init(engine)
        org.seed(engine)
        work = batches(count, batch, build(engine))
        with contextlib.ExitStack() as stack:
            if not with_cases:
                stack.enter_context(_without_cases())
            started = time.perf_counter()
            for rows in work:
                with engine.begin() as conn:
                    features.store_evaluations(conn, engine, [dict(row) for row in rows])
            taken = time.perf_counter() - started
        with engine.connect() as conn:
            made = conn.execute(select(func.count()).select_from(cases)).scalar()
        return taken, made
    finally:
        engine.dispose()


@contextlib.contextmanager
def _database(kind: str):
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hcp-cases-cost-") as folder:
            yield f"sqlite:///{Path(folder) / 'collector.db'}"
    else:
        from hcp.bench import postgres_database

        with postgres_database() as url:
            yield url


def measure(kind: str, count: int, batch: int, rounds: int) -> dict:
    """Best of `rounds` for each mode, alternating, each on a fresh database."""
    best = {True: float("inf"), False: float("inf")}
    made = 0
    for _ in range(rounds):
        for with_cases in (False, True):
            with _database(kind) as url:
                taken, cases_made = store_all(url, count, batch, with_cases)
            best[with_cases] = min(best[with_cases], taken)
            if with_cases:
                made = cases_made
    return {
        "database": kind,
        "ratings": count,
        "batch": batch,
        "cases_made": made,
        "without_cases_s": round(best[False], 2),
        "with_cases_s": round(best[True], 2),
        "cases_share": round(1 - best[False] / best[True], 3),
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite")
    args = parser.parse_args(argv)
    found = []
    for kind in args.databases.split(","):
        result = measure(kind, args.ratings, args.batch, args.rounds)
        found.append(result)
        print(
            f"{kind}: {result['ratings']} 差评 in batches of {result['batch']}: "
            f"{result['without_cases_s']} s without cases, {result['with_cases_s']} s with "
            f"({result['cases_made']} cases): cases {result['cases_share']:.1%} of the store time"
        )
    return found


if __name__ == "__main__":
    main()
