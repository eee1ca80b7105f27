"""The province section of `hcp bench`: store -> province-acknowledged latency.

`measure` starts the simulated province and the outbox sender in this
process, stores service events and ratings at a steady rate through
features.store_evaluations (the collector's one way in), and takes for each
item the time from its store (outbox.stored_at) to the province's
acknowledgement being recorded (outbox.acked_at). The baseline is the
province's own handling time per request in the same run (its signature check
and rules, measured inside the simulator): the ratio says what the outbox,
its batching, signing and HTTP add. `section(console)` prints a table and
returns the figures for results/bench.json.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time

from sqlalchemy import select

from simulators.province import Province, serve
from sync_server import db, outbox, outbox_fault, outbox_sender
from sync_server.schema_outbox import outbox as outbox_table


def _ms(values: list[float], share: float) -> float | None:
    value = outbox.percentile(values, share)
    return None if value is None else round(value * 1000, 1)


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def measure(items: int = 300, rate: float = 50.0, db_url: str | None = None) -> dict:
    folder = tempfile.TemporaryDirectory() if db_url is None else None
    engine = db.make_engine(db_url or f"sqlite:///{folder.name}/bench.db")
    db.init(engine)
    outbox_fault.prepare(engine)
    province = Province()
    server, url = serve(province)
    settings = {
        "HCP_PROVINCE_URL": url,
        "HCP_PROVINCE_CREDENTIAL": province.issue_credential(),
        "HCP_OUTBOX_POLL_S": 0.02,
        "HCP_OUTBOX_BACKOFF_S": 0.05,
    }
    sender = outbox_sender.Sender(engine, settings)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    thread.start()
    producer = outbox_fault.Producer(engine, count=items, rate=rate, seed=1)
    started = time.monotonic()
    producer.run()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and outbox_fault._pending(engine):
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    stop.set()
    thread.join(10)
    o = outbox_table.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.kind, o.stored_at, o.acked_at).where(o.acked_at.is_not(None)))
        lags = {"event": [], "rating": []}
        for kind, stored, acked in rows:
            lags[kind].append((_parse(acked) - _parse(stored)).total_seconds())
    handling = province.received()["handling_s"]
    server.shutdown()
    server.server_close()
    engine.dispose()
    if folder is not None:
        folder.cleanup()
    every = lags["event"] + lags["rating"]
    baseline_p50, baseline_p95 = _ms(handling, 0.5), _ms(handling, 0.95)
    p50, p95 = _ms(every, 0.5), _ms(every, 0.95)
    return {
        "database": engine.dialect.name,
        "items_acknowledged": len(every),
        "rate_per_s": rate,
        "seconds": round(elapsed, 1),
        "requests": len(handling),
        "province_handling_ms": {"p50": baseline_p50, "p95": baseline_p95},
        "store_to_ack_ms": {"p50": p50, "p95": p95},
        "ratings_store_to_ack_ms": {
            "p50": _ms(lags["rating"], 0.5),
            "p95": _ms(lags["rating"], 0.95),
        },
        "ratio_p50": round(p50 / baseline_p50, 1) if p50 and baseline_p50 else None,
        "ratio_p95": round(p95 / baseline_p95, 1) if p95 and baseline_p95 else None,
    }


def section(console, items: int = 300, rate: float = 50.0) -> dict:
    from rich.table import Table

    figures = measure(items, rate)
    table = Table(title=f"store -> province acknowledged, {figures['items_acknowledged']} items "
                  f"at {rate:g}/s ({figures['database']})")  # fmt: skip
    for name in ("path", "p50 ms", "p95 ms"):
        table.add_column(name, justify="right")
    base = figures["province_handling_ms"]
    table.add_row("baseline: the province's own handling", f"{base['p50']}", f"{base['p95']}")
    every = figures["store_to_ack_ms"]
    table.add_row("stored -> acknowledged (events, ratings)", f"{every['p50']}", f"{every['p95']}")
    table.add_row("ratio to baseline", f"{figures['ratio_p50']}", f"{figures['ratio_p95']}")
    console.print(table)
    return figures
