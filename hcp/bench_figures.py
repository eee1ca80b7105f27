"""The analytics part of `hcp bench`: dashboard and API response times at a
million evaluations (ten million with --figures-ratings 10000000), on SQLite
and PostgreSQL, each against a plain ``SELECT count(*) FROM evaluations`` in
the same run. Goal: p95 under 100 ms.

The ratings are generated straight into the table (executemany on SQLite,
COPY on PostgreSQL) over a year, 120 windows in Linzi's 12 streets and towns,
240 staff and 50 service items; the figures are then built by
`figures.rebuild` (timed too). Requests go through the app in this process
(Flask's test client): what is measured is the app and the database, not a
network. Nothing is asserted; figures are printed and returned.

    python -m hcp.bench_figures [--figures-ratings N] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select, text

from sync_server import db

STREETS = (
    "370305001", "370305002", "370305003", "370305004", "370305005", "370305100",
    "370305102", "370305103", "370305104", "370305107", "370305109", "370305111",
)  # Linzi's 5 streets and 7 towns (sync_server/data/linzi_divisions.csv)  # fmt: skip
WINDOWS_PER_STREET = 10
ITEMS = 50
RUNS = 30
COLUMNS = (
    "id", "device_id", "seq", "stars", "channel", "tags", "item_code", "window_id", "staff_id",
    "rated_at", "clock", "origin", "attempt", "received_at", "effective_at", "time_source",
    "excluded", "reason_owed",
)  # fmt: skip
TAGS = {5: '["501"]', 4: '["401"]', 3: None, 2: '["201","202"]', 1: '["101"]'}


def build_org(engine) -> list[tuple[str, str]]:
    """Halls and windows in each street or town; (window, staff) pairs."""
    from sync_server import org

    pairs = []
    with engine.begin() as conn:
        for s, street in enumerate(STREETS):
            hall = f"hall-{s:02d}"
            org.add(conn, "units", hall, f"便民服务中心{s:02d}", street, kind="hall")
            for w in range(WINDOWS_PER_STREET):
                window, staff = f"W{s:02d}{w:02d}", f"P{s:02d}{w:02d}"
                org.add(conn, "windows", window, f"{s:02d}-{w:02d}号窗", hall)
                org.add(conn, "staff", staff, f"工作人员{s:02d}{w:02d}", hall)
                org.add(conn, "staff", staff + "b", f"工作人员{s:02d}{w:02d}乙", hall)
                pairs.append((window, staff))
        for i in range(ITEMS):
            org.add(conn, "items", f"I{i:03d}", f"事项{i:03d}", "370305")
    return pairs


def rows(count: int, pairs, seed: int = 8):
    """`count` evaluation rows over 2026, as tuples in COLUMNS order."""
    rng = random.Random(seed)
    seqs = [0] * len(pairs)
    start = 1767225600  # 2026-01-01T00:00:00Z
    levels = (5, 5, 5, 5, 4, 4, 3, 2, 1)
    for n in range(count):
        w = n % len(pairs)
        seqs[w] += 1
        window, staff = pairs[w]
        stars = rng.choice(levels)
        moment = start + rng.randrange(365) * 86400 + rng.randrange(0, 10 * 3600)  # 08-18 local
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
        yield (
            f"bf-{w}:{seqs[w]}", f"bf-{w}", seqs[w], stars, "keypad", TAGS[stars],
            f"I{rng.randrange(ITEMS):03d}", window, staff if n % 3 else staff + "b", at, "ntp",
            "citizen", 1, at, at, "device", False, False,
        )  # fmt: skip


def fill(engine, count: int, pairs) -> float:
    """Insert the rows the fastest way each database has; seconds taken."""
    started = time.perf_counter()
    chunk = 50_000
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        if engine.dialect.name == "postgresql":
            with raw.cursor() as cursor:
                with cursor.copy(f"COPY evaluations ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in rows(count, pairs):
                        copy.write_row(row)
        else:
            statement = (
                f"INSERT INTO evaluations ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})"
            )
            cursor = raw.cursor()
            batch = []
            for row in rows(count, pairs):
                batch.append(row)
                if len(batch) >= chunk:
                    cursor.executemany(statement, batch)
                    batch.clear()
            cursor.executemany(statement, batch)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1)}


def timed(call, runs: int = RUNS) -> dict:
    call()  # warm: the first request compiles templates, fills caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


REQUESTS = (
    ("dashboard: figures by unit, the district, all of 2026", "/analytics"),
    (
        "dashboard: a street's windows, one month",
        "/analytics/window?unit=370305001&since=2026-06-01&until=2026-06-30",
    ),  # noqa: E501
    ("dashboard: trend by month", "/analytics/trend?grain=month"),
    ("dashboard: where bad ratings concentrate", "/analytics/bad"),
    ("API: figures by unit", "/api/v1/analytics/units"),
    (
        "API: figures by staff, one quarter",
        "/api/v1/analytics/staff?since=2026-04-01&until=2026-06-30",
    ),  # noqa: E501
    ("API: ratings by hour", "/api/v1/analytics/hour"),
)


def measure(kind: str, url: str, count: int, folder: Path) -> dict:
    from sync_server import create_app, figures

    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False},
        instance_path=str(folder / "instance"),
    )
    engine = app.extensions["hcp_engine"]
    pairs = build_org(engine)
    result = {"database": kind, "ratings": count, "fill_s": round(fill(engine, count, pairs), 1)}
    started = time.perf_counter()
    with engine.begin() as conn:
        figures.rebuild(conn)
    result["rebuild_s"] = round(time.perf_counter() - started, 1)
    with engine.connect() as conn:
        result["figure_rows"] = conn.execute(text("SELECT count(*) FROM figures_daily")).scalar()
    from werkzeug.security import generate_password_hash

    with engine.begin() as conn:
        conn.execute(
            db.users.insert().values(
                username="bench", role="admin", created_at=db.utc_now(),
                password_hash=generate_password_hash("bench-pass-1", method="pbkdf2:sha256:1000"),
            )
        )  # fmt: skip
    client = app.test_client()
    client.post("/login", data={"username": "bench", "password": "bench-pass-1"})

    def count_all():
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(db.evaluations)).scalar()

    result["baseline count(*)"] = timed(count_all)
    for label, path in REQUESTS:

        def call(path=path):
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code}")

        result[label] = timed(call)
    engine.dispose()
    return result


def section(databases=("sqlite", "postgresql"), count: int = 1_000_000, console=None) -> list:
    """Run the figures bench on each database; print a table; return the figures."""
    from hcp.bench import postgres_database

    results = []
    for kind in databases:
        with tempfile.TemporaryDirectory(prefix="hcp-bench-figures-") as folder:
            if kind == "sqlite":
                results.append(measure(kind, f"sqlite:///{folder}/bench.db", count, Path(folder)))
                continue
            try:
                database = postgres_database()
                url = database.__enter__()
            except OSError as exc:
                results.append({"database": kind, "skipped": str(exc)})
                continue
            try:
                results.append(measure(kind, url, count, Path(folder)))
            finally:
                with contextlib.suppress(Exception):
                    database.__exit__(None, None, None)
    print_table(results, console)
    return results


def print_table(results, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    for result in results:
        if "skipped" in result:
            console.print(f"figures, {result['database']}: skipped ({result['skipped']})")
            continue
        table = Table(
            title=f"figures, {result['database']}, {result['ratings']:,} ratings "
            f"(fill {result['fill_s']} s, rebuild {result['rebuild_s']} s, "
            f"{result['figure_rows']:,} figure rows) — goal p95 < 100 ms"
        )
        table.add_column("request")
        table.add_column("p50 ms", justify="right")
        table.add_column("p95 ms", justify="right")
        table.add_column("p95 / count(*) p95", justify="right")
        base = result["baseline count(*)"]["p95_ms"] or 0.1
        for label, value in result.items():
            if isinstance(value, dict):
                ratio = value["p95_ms"] / base
                table.add_row(label, f"{value['p50_ms']}", f"{value['p95_ms']}", f"{ratio:.2f}")
        console.print(table)


def add_arguments(parser) -> None:
    """The options of this section on `hcp bench`'s parser."""
    parser.add_argument(
        "--figures-ratings",
        type=int,
        default=1_000_000,
        help="figures: evaluations generated (10000000 for the large run)",
    )


def bench_section(args, console) -> list:
    """`hcp bench --only figures`: the section on the databases asked for."""
    return section(args.databases, args.figures_ratings, console)


def main(argv=None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="python -m hcp.bench_figures")
    add_arguments(parser)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results = section(args.databases.split(","), args.figures_ratings)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
