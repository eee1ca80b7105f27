"""`hcp bench`: the project's performance ladder, every figure a ratio
against a baseline measured in the same run. Figures go to results/bench.json
and are printed as tables; nothing is asserted.

ingest   the same stream of signed batches (batch sizes 1, 10, 50) goes through
         a local broker twice: a paho subscriber that only counts the records
         (baseline), and the collector's IngestService, which verifies,
         commits (SQLite, and PostgreSQL where a server answers) and acks.
latency  key press -> durable on the collector -> ack back on the keypad, over
         20 simulated keypads (hcp.latency), against the broker's own QoS 1
         publish -> receive round trip.
backlog  100 keypads holding 1,000 records each reconnect at once: the time
         until every store is empty, against the same records published by one
         plain client into the same collector.
heap     the smallest `-X heapsize` of the 32-bit MicroPython unix port at which
         300 ratings made offline drain (tests/harness/micropython_unix.py), the
         firmware as .mpy files and frozen into the image; needs ../shared.
kiosk    frame time, tap-to-next-scene latency and cold start (kiosk/bench.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from rich.console import Console
from rich.table import Table

from hcp.stack import Device, LocalStack, broker_kind
from protocols import messages, sign, topics
from sync_server import db

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("ingest", "latency", "backlog", "heap", "kiosk", "figures", "province")
DATABASES = ("sqlite", "postgresql")


def _csv(kind, allowed=None):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        try:
            values = [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list: {text!r}") from None
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(map(str, allowed or ()))}: {text!r}"
            )
        return values

    parse.__name__ = "list"
    return parse


def register(commands) -> None:
    parser = commands.add_parser("bench", help="the performance ladder, as same-run ratios")
    parser.add_argument(
        "--only",
        type=_csv(str, SECTIONS),
        default=list(SECTIONS),
        help="sections to run, comma-separated: " + ", ".join(SECTIONS),
    )
    parser.add_argument("--records", type=int, default=20000, help="ingest: records per run")
    parser.add_argument(
        "--batches", type=_csv(int), default=[1, 10, 50], help="ingest: records per up/ev message"
    )
    parser.add_argument("--devices", type=int, default=10, help="ingest: devices in the stream")
    parser.add_argument(
        "--collector",
        choices=["process", "thread"],
        default="process",
        help="ingest: the collector's ingest in a process of its own (default), or a thread "
        "of the bench beside the publisher",
    )
    parser.add_argument(
        "--databases",
        type=_csv(str, DATABASES),
        default=list(DATABASES),
        help="ingest: sqlite, postgresql (skipped with a note where no server answers)",
    )
    parser.add_argument("--latency-keypads", type=int, default=20)
    parser.add_argument("--latency-ratings", type=int, default=100, help="per keypad")
    parser.add_argument(
        "--latency-processes",
        type=int,
        default=2,
        help="latency: processes hosting the keypads (0: threads of the bench)",
    )
    parser.add_argument(
        "--latency-keypad-dir",
        default=None,
        help="latency: where the keypads' data folders (their flash) go, e.g. /dev/shm "
        "(default: the run's folder, on the collector's disk)",
    )
    parser.add_argument(
        "--latency-trace",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="latency: split each rating's time into hops (a timestamp at each)",
    )
    parser.add_argument("--backlog-keypads", type=int, default=100)
    parser.add_argument("--backlog-records", type=int, default=1000, help="per keypad")
    parser.add_argument(
        "--broker",
        choices=["mosquitto", "amqtt"],
        default=None,
        help="default: mosquitto where installed, else amqtt",
    )
    from hcp import bench_figures

    bench_figures.add_arguments(parser)
    parser.add_argument(
        "--province-items", type=int, default=300, help="province: items stored and reported"
    )
    parser.add_argument("--output", default="results/bench.json")
    parser.set_defaults(handler=run)


def make_stream(devices: int, records: int, batch: int):
    """Signed batches spread over `devices` devices: [(topic, payload, count)], keys."""
    keys = {f"bench-{n:03d}": secrets.token_bytes(32) for n in range(devices)}
    per_device = records // devices
    stream = []
    for device_id, key in keys.items():
        for start in range(1, per_device + 1, batch):
            recs = [
                bench_record(device_id, seq, key)
                for seq in range(start, min(start + batch, per_device + 1))
            ]
            payload = messages.encode(messages.batch(device_id, start, recs))
            stream.append((topics.topic(device_id, topics.UP_EV), payload, len(recs)))
    return stream, keys


def _publish(broker, stream) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(100)
    client.connect(broker.host, broker.port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload, _ in stream]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def baseline(broker, stream) -> float:
    """Seconds for a subscriber that only counts to receive every record."""
    received = {"messages": 0}
    done = threading.Event()

    def on_message(_client, _userdata, _message):
        received["messages"] += 1
        if received["messages"] >= len(stream):
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe(topics.subscription(topics.UP_EV), 1)
    sub.loop_start()
    time.sleep(0.5)
    started = time.perf_counter()
    _publish(broker, stream)
    if not done.wait(300):
        raise RuntimeError(f"baseline received {received['messages']} of {len(stream)} messages")
    elapsed = time.perf_counter() - started
    sub.disconnect()
    sub.loop_stop()
    return elapsed


def durable(stack, stream) -> float:
    """Seconds for the collector to verify, commit and ack every record: the
    stack's own ingest, or (a stack started with ingest=False) one in a
    process of its own (hcp.bench_collector), whose commits are counted."""
    total = sum(count for _, _, count in stream)
    if stack.ingest is None:
        return _durable_in_own_process(stack, stream, total)
    service = stack.ingest
    started = time.perf_counter()
    _publish(stack.broker, stream)
    deadline = time.monotonic() + 600
    while service.records_stored < total and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stack.stop_ingest()
    _check_stored(stack, total)
    return elapsed


def _durable_in_own_process(stack, stream, total) -> float:
    from hcp.bench_collector import collector_process

    url = stack.engine.url.render_as_string(hide_password=False)
    with collector_process(url, stack.broker.host, stack.broker.port, stack.client_id):
        started = time.perf_counter()
        _publish(stack.broker, stream)
        deadline = time.monotonic() + 600
        while db.count_evaluations(stack.engine) < total and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    _check_stored(stack, total)
    return elapsed


def _check_stored(stack, total) -> None:
    stored = db.count_evaluations(stack.engine)
    if stored != total:
        raise RuntimeError(f"durable ingest stored {stored} of {total} records")


@contextlib.contextmanager
def postgres_database():
    """A fresh PostgreSQL database on the server of HCP_BENCH_PG (default: the
    local one, user postgres), dropped afterwards; OSError when none answers."""
    import psycopg

    admin_url = os.environ.get("HCP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        raise OSError(f"no PostgreSQL server at {admin_url}: {exc}") from None
    name = "hcp_bench_" + secrets.token_hex(6)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def ingest_ladder(args, kind, console) -> list[dict]:
    rows = []
    own_process = getattr(args, "collector", "process") == "process"
    for batch in args.batches:
        stream, keys = make_stream(args.devices, args.records, batch)
        total = sum(count for _, _, count in stream)
        devices = [Device(device_id, key.hex()) for device_id, key in keys.items()]
        with tempfile.TemporaryDirectory(prefix="hcp-bench-") as tmp:
            with LocalStack(tmp, kind, collector=False) as stack:  # the broker alone
                base_s = baseline(stack.broker, stream)
            for database in args.databases:
                row = {"database": database, "batch": batch, "records": total,
                       "collector": "own process" if own_process else "bench thread"}  # fmt: skip
                row["baseline_records_per_s"] = round(total / base_s, 1)
                try:
                    with contextlib.ExitStack() as scope:
                        url = None
                        if database == "postgresql":
                            url = scope.enter_context(postgres_database())
                        stack = scope.enter_context(
                            LocalStack(
                                tmp,
                                kind,
                                broker_dir=f"broker-{database}",
                                database=f"bench-{batch}.db",
                                database_url=url,
                                devices=devices,
                                client_id="bench-collector",
                                ingest=not own_process,
                            )  # fmt: skip
                        )
                        durable_s = durable(stack, stream)
                except OSError as exc:
                    row["skipped"] = str(exc)
                    console.print(f"[yellow]ingest on {database} skipped: {exc}[/]")
                    rows.append(row)
                    continue
                row["durable_records_per_s"] = round(total / durable_s, 1)
                row["ratio_durable_to_baseline"] = round(base_s / durable_s, 3)
                rows.append(row)
    where = "collector in its own process" if own_process else "collector in the bench"
    table = Table(title=f"ingest: durable against a subscriber that only counts ({kind}, {where})")
    for name in ("database", "batch", "baseline rec/s", "durable rec/s", "ratio"):
        table.add_column(name, justify="right")
    for row in rows:
        if "skipped" in row:
            table.add_row(row["database"], str(row["batch"]), "skipped", "", "")
            continue
        table.add_row(
            row["database"],
            str(row["batch"]),
            f"{row['baseline_records_per_s']:,.0f}",
            f"{row['durable_records_per_s']:,.0f}",
            f"{row['ratio_durable_to_baseline']:.3f}",
        )
    console.print(table)
    return rows


def latency_section(args, kind, console) -> dict:
    from hcp import latency

    figures = latency.measure(
        args.latency_keypads,
        args.latency_ratings,
        broker=kind,
        processes=getattr(args, "latency_processes", 2),
        trace=getattr(args, "latency_trace", True),
        keypad_dir=getattr(args, "latency_keypad_dir", None),
    )
    table = Table(title=f"key press -> ack, {figures['ratings']} ratings on "
                  f"{figures['keypads']} keypads ({kind})")  # fmt: skip
    for name in ("path", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(name, justify="right")
    for label, key in (
        ("baseline: broker publish -> receive", "broker_round_trip"),
        ("baseline: a small append and its fsync", "fsync"),
        ("key press -> ack on the keypad", "press_to_ack"),
        ("record written -> ack", "write_to_ack"),
    ):
        row = figures[key]
        table.add_row(label, f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}", f"{row['p99_ms']:.1f}")
    table.add_row("ratio press -> ack / baseline", f"{figures['ratio_p50']}",
                  f"{figures['ratio_p95']}", f"{figures['ratio_p99']}")  # fmt: skip
    console.print(table)
    if figures.get("hops"):
        hops = Table(title="where the time goes: each hop of a rating (ms); tail = mean over "
                     f"the slowest {figures['tail_ratings']} ratings")  # fmt: skip
        for name in ("hop", "p50", "p95", "p99", "tail"):
            hops.add_column(name, justify="right" if name != "hop" else "left")
        for row in figures["hops"].values():
            hops.add_row(row["what"], f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}",
                         f"{row['p99_ms']:.1f}", f"{row['tail_mean_ms']:.1f}")  # fmt: skip
        console.print(hops)
        commit, lag = figures["commit_ms"], figures["loop_lag"]
        late = f"keypad processes p99 {lag['p99_ms']:.1f}"
        if figures.get("collector_loop_lag"):
            late += f", collector p99 {figures['collector_loop_lag']['p99_ms']:.1f}"
        console.print(
            f"collector commits: p50 {commit['p50_ms']:.1f} / p99 {commit['p99_ms']:.1f} / "
            f"max {commit['max_ms']:.1f} ms over {commit['count']} transactions (fsync max "
            f"{figures['fsync']['max_ms']:.1f}); a 10 ms sleep wakes late by ({late}) ms; "
            f"load average {figures['load_average']}"
        )
    return figures


def bench_record(device_id: str, seq: int, key: bytes, **extra) -> dict:
    """A signed keypad record as a keypad makes it (levels in turn)."""
    rec = {
        "id": f"{device_id}:{seq}",
        "device_id": device_id,
        "seq": seq,
        "stars": 5 - seq % 5,
        "channel": "keypad",
        "rated_at": "2026-11-26T08:30:00Z",
        "clock": "ntp",
        "origin": "citizen",
        "attempt": 1,
        **extra,
    }
    rec["sig"] = sign.sign(rec, key)
    return rec


def backlog_record(device_id: str, seq: int, key: bytes) -> dict:
    return bench_record(device_id, seq, key, boot_id="b0000001", uptime_ms=seq * 1000)


def fill_store(folder: Path, records: list[dict]) -> None:
    """A keypad's data folder holding `records` unacknowledged, as the firmware
    writes it (journal lines and state), written in one go for speed."""
    from device import store as device_store

    folder.mkdir(parents=True, exist_ok=True)
    counts = {str(n): 0 for n in range(1, 6)}
    with open(folder / "journal", "wb") as journal:
        for rec in records:
            journal.write(device_store._line({"a": rec}))
            counts[str(rec["stars"])] += 1
    state = {"counts": counts, "known": True, "next_seq": len(records) + 1}
    (folder / "state").write_text(json.dumps(state))


HOST_PROCESSES = 2  # processes hosting the simulated keypads, apart from the collector's


def _host_keypads(specs, host, port, go, report) -> None:
    """A child process: the simulated keypads of `specs` (id, key, folder),
    booted together when `go` is set with their link down, then all given the
    link at once (so hcp.latency._Probe sees every batch); reports when all
    their stores are empty, when all were online, the CPU seconds this process
    spent meanwhile, and each batch's wait for its ack and each turn from an
    ack to the keypad's next batch.

    The keypads run in processes of their own so that a hundred simulated
    boards do not take the collector's interpreter lock (one process of them
    spends about a core just idling)."""
    from simulators.keypad import SimKeypad

    keypads = [
        SimKeypad(device_id, key_hex, host, port, folder) for device_id, key_hex, folder in specs
    ]
    report.put(("ready", None))
    go.wait(120)
    from hcp.latency import _Probe

    cpu = time.process_time()
    for keypad in keypads:
        keypad.network.link_up = False  # booted offline, so the probe sees every batch
        keypad.start()
    probes = [keypad.call(_Probe) for keypad in keypads]
    for keypad in keypads:
        keypad.network.link_up = True  # the hall's network is back: all reconnect at once
    deadline = time.monotonic() + 900
    left, online = len(keypads), None
    while time.monotonic() < deadline:
        left = sum(1 for keypad in keypads if keypad.pending())
        if online is None and all(k.call(lambda d: d.client.connected) for k in keypads):
            online = time.monotonic()
        if not left:
            break
        time.sleep(0.05)
    finished = time.monotonic()
    cpu = time.process_time() - cpu
    errors = [repr(e) for keypad in keypads for e in keypad.errors]
    for keypad in keypads:
        keypad.stop()
    batches = sum(keypad.call(lambda d: d.sync.batches_sent) for keypad in keypads)
    waits, turns = [], []
    for probe in probes:
        waits_, turns_ = _round_trips(probe)
        waits += waits_
        turns += turns_
    report.put(("done", (finished, left, errors, online, cpu, batches, waits, turns)))


def _round_trips(probe) -> tuple[list[float], list[float]]:
    """From one keypad's probe (hcp.latency._Probe): ms from each batch sent to
    its ack, and from an ack to the keypad's next batch sent."""
    acked_at: dict[int, float] = {}
    for seq, batch in probe.acked_in.items():
        acked_at[batch] = min(acked_at.get(batch, probe.acked[seq]), probe.acked[seq])
    waits, turns = [], []
    for batch, sent in probe.sent.items():
        if batch in acked_at:
            waits.append((acked_at[batch] - sent) * 1000)
            if batch + 1 in probe.sent:
                turns.append((probe.sent[batch + 1] - acked_at[batch]) * 1000)
    return waits, turns


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _progress(engine, started, stop, timeline) -> None:
    """(seconds, records stored) every 0.25 s while the drain runs."""
    while not stop.wait(0.25):
        timeline.append((round(time.monotonic() - started, 2), db.count_evaluations(engine)))


def backlog_section(args, kind, console) -> dict:
    """The drain of `keypads` stores against one plain client, the collector's
    ingest in a process of its own both times (as in the ingest ladder), so
    that neither the plain publisher nor the bench shares its interpreter."""
    import multiprocessing

    from hcp.bench_collector import collector_process

    keypads, per = args.backlog_keypads, args.backlog_records
    devices = [Device(f"bl-{n:03d}", secrets.token_hex(32)) for n in range(keypads)]
    records = {
        d.device_id: [backlog_record(d.device_id, seq, bytes.fromhex(d.key_hex))
                      for seq in range(1, per + 1)]
        for d in devices
    }  # fmt: skip
    total = keypads * per
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="hcp-backlog-") as tmp:
        work = Path(tmp)
        with LocalStack(work / "plain", kind, devices=devices, client_id="bench-plain",
                        ingest=False) as stack:  # fmt: skip
            stream = [
                (topics.topic(device_id, topics.UP_EV),
                 messages.encode(messages.batch(device_id, n, recs[n:n + 50])), len(recs[n:n + 50]))
                for device_id, recs in records.items()
                for n in range(0, per, 50)
            ]  # fmt: skip
            url = stack.engine.url.render_as_string(hide_password=False)
            with collector_process(url, stack.broker.host, stack.broker.port, stack.client_id) as c:
                cpu = _cpu_seconds(c.pid)
                started = time.perf_counter()
                _publish(stack.broker, stream)
                deadline = time.monotonic() + 900
                while db.count_evaluations(stack.engine) < total and time.monotonic() < deadline:
                    time.sleep(0.02)
                plain_s = time.perf_counter() - started
                plain_cpu = _cpu_seconds(c.pid) - cpu
            _check_stored(stack, total)
        with LocalStack(work / "keypads", kind, devices=devices, client_id="bench-backlog",
                        ingest=False) as stack:  # fmt: skip
            specs = []
            for device in devices:
                folder = work / "keypads" / device.device_id
                fill_store(folder, records[device.device_id])
                specs.append((device.device_id, device.key_hex, str(folder)))
            go, report = context.Event(), context.Queue()
            hosts = [
                context.Process(
                    target=_host_keypads,
                    args=(specs[n::HOST_PROCESSES], stack.broker.host, stack.broker.port, go,
                          report),
                )
                for n in range(HOST_PROCESSES)
            ]  # fmt: skip
            url = stack.engine.url.render_as_string(hide_password=False)
            with collector_process(url, stack.broker.host, stack.broker.port, stack.client_id) as c:
                for host in hosts:
                    host.start()
                for _ in hosts:
                    report.get(timeout=300)  # ready
                timeline, stop = [], threading.Event()
                cpu = _cpu_seconds(c.pid)
                started = time.monotonic()
                go.set()  # every keypad connects now
                watcher = threading.Thread(
                    target=_progress, args=(stack.engine, started, stop, timeline)
                )
                watcher.start()
                reports = [report.get(timeout=1000)[1] for _ in hosts]
                collector_cpu = _cpu_seconds(c.pid) - cpu
                stop.set()
                watcher.join()
            for host in hosts:
                host.join(60)
            drain_s = max(r[0] for r in reports) - started
            left = sum(r[1] for r in reports)
            errors = [e for r in reports for e in r[2]]
            onlines = [r[3] for r in reports]
            online_s = None if None in onlines else round(max(onlines) - started, 2)
            keypads_cpu = sum(r[4] for r in reports)
            batches = sum(r[5] for r in reports)
            from hcp.latency import Latencies

            sent_to_ack = Latencies([w for r in reports for w in r[6]]).summary()
            ack_to_next = Latencies([t for r in reports for t in r[7]]).summary()
            stored = db.count_evaluations(stack.engine)
        if left or stored != total or errors:
            raise RuntimeError(
                f"backlog: {left} keypads not drained, {stored} of {total} stored, "
                f"errors {errors[:3]}"
            )
    figures = {
        "keypads": keypads,
        "records": total,
        "keypad_processes": HOST_PROCESSES,
        "drain_s": round(drain_s, 2),
        "plain_client_s": round(plain_s, 2),
        "ratio_drain_to_plain": round(drain_s / plain_s, 2),
        "all_online_s": online_s,
        "batches_sent": batches,  # more than records / 50: batches sent again
        # a keypad's round: its batch waits for the ack, then it sends the next
        "batch_sent_to_ack_ms": sent_to_ack,
        "ack_to_next_batch_ms": ack_to_next,
        "cpu_s": {
            "collector_plain_run": round(plain_cpu, 1),
            "collector_process": round(collector_cpu, 1),
            "keypad_processes": round(keypads_cpu, 1),
        },  # fmt: skip
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "timeline": timeline,
    }
    table = Table(title=f"backlog: {keypads} keypads x {per} records reconnect at once ({kind})")
    table.add_column("path")
    table.add_column("seconds", justify="right")
    table.add_column("records/s", justify="right")
    table.add_row("baseline: one plain client, batches of 50", f"{plain_s:.1f}",
                  f"{total / plain_s:,.0f}")  # fmt: skip
    table.add_row("every keypad's store empty", f"{drain_s:.1f}", f"{total / drain_s:,.0f}")
    table.add_row("ratio drain / plain client", f"{drain_s / plain_s:.2f}", "")
    console.print(table)
    console.print(
        f"all keypads online after {online_s} s; {batches} batches sent; CPU seconds "
        f"during the drain: collector {collector_cpu:.1f} (plain client's run: {plain_cpu:.1f}), "
        f"keypad processes {keypads_cpu:.1f}; a keypad's batch waited p50 "
        f"{sent_to_ack['p50_ms']:.0f} / p95 {sent_to_ack['p95_ms']:.0f} ms for its ack, then "
        f"sent the next after p50 {ack_to_next['p50_ms']:.0f} / p95 "
        f"{ack_to_next['p95_ms']:.0f} ms; "
        f"load average {figures['load_average']}"
    )
    return figures


HEAP_LINE = re.compile(r"smallest passing heap (\d+)K \(fails at (\d+)K\)")


def heap_section(console) -> dict:
    """The heap bisection of tests/harness/micropython_unix.py, .mpy and frozen."""
    if not (ROOT.parent / "shared" / "tools" / "micropython-unix" / "build.sh").exists():
        note = "skipped: ../shared/tools/micropython-unix is not beside the checkout"
        console.print(f"[yellow]heap {note}[/]")
        return {"skipped": note}
    figures = {}
    for label, extra in (("mpy", []), ("frozen", ["--frozen"])):
        cmd = [sys.executable, "-m", "tests.harness.micropython_unix", "--ratings", "300",
               "--batch-size", "50", *extra]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        found = HEAP_LINE.search(done.stdout)
        if done.returncode != 0 or not found:
            figures[label] = {"error": (done.stdout + done.stderr).strip().splitlines()[-3:]}
            continue
        figures[label] = {"smallest_kb": int(found.group(1)), "fails_kb": int(found.group(2))}
    table = Table(title="firmware heap: 300 offline ratings drained, batches of 50 (32-bit port)")
    table.add_column("firmware")
    table.add_column("smallest heap", justify="right")
    table.add_column("target", justify="right")
    for label, row in figures.items():
        value = f"{row['smallest_kb']}K" if "smallest_kb" in row else "error"
        table.add_row(label, value, "96K (goal 64K)")
    console.print(table)
    return figures


def run(args) -> int:
    console = Console(highlight=False)
    kind = broker_kind(args.broker)
    result = {
        "broker": kind,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "ingest" in args.only:
        result["ingest"] = ingest_ladder(args, kind, console)
    if "latency" in args.only:
        result["latency"] = latency_section(args, kind, console)
    if "backlog" in args.only:
        result["backlog"] = backlog_section(args, kind, console)
    if "heap" in args.only:
        result["heap"] = heap_section(console)
    if "kiosk" in args.only:
        result["kiosk"] = kiosk_bench(console)
    if "figures" in args.only:
        from hcp import bench_figures

        result["figures"] = bench_figures.bench_section(args, console)
    if "province" in args.only:
        from hcp import bench_province

        result["province"] = bench_province.section(console, args.province_items)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {output}")
    return 0


def kiosk_bench(console) -> dict:
    """The kiosk's frame time, tap-to-next-scene latency and cold start, each
    against a baseline from this run (kiosk/bench.py); printed and returned."""
    from kiosk import bench as kiosk_figures

    figures = kiosk_figures.measure()
    table = Table(title=f"kiosk, {figures['display']} (median / p95 ms)")
    table.add_column("measure")
    table.add_column("baseline", justify="right")
    table.add_column("kiosk", justify="right")

    def cell(summary):
        return f"{summary['median_ms']:.1f} / {summary['p95_ms']:.1f}"

    table.add_row("frame, start screen (baseline: fill + flip)",
                  cell(figures["frame_empty"]), cell(figures["frame_start_screen"]))  # fmt: skip
    table.add_row("frame, level screen", cell(figures["frame_empty"]),
                  cell(figures["frame_level_screen"]))  # fmt: skip
    table.add_row(
        f"tap to next scene (goal < {figures['latency_goal_ms']:.0f} ms)",
        cell(figures["latency_baseline"]),
        cell(figures["latency_tap_to_next_scene"]),
    )
    start = figures["cold_start"]
    table.add_row("cold start to first frame (baseline: pygame + flip)",
                  cell(start["baseline"]), cell(start["kiosk"]))  # fmt: skip
    console.print(table)
    return figures
