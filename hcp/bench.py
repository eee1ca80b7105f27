"""`hcp bench`: throughput figures as ratios against a baseline from the same run.

ingest: the same stream of signed batches goes through a local broker twice:
  baseline  a paho subscriber that only counts the records it receives;
  durable   the collector's IngestService: verify, commit to SQLite, publish acks.
The ratio durable/baseline says what verification and durable storage cost on
this machine, whatever its speed. Figures go to results/bench.json; nothing is
asserted.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
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


def register(commands) -> None:
    parser = commands.add_parser("bench", help="measure throughput against a same-run baseline")
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=50, help="records per up/ev message")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument(
        "--broker",
        choices=["mosquitto", "amqtt"],
        default=None,
        help="default: mosquitto where installed, else amqtt",
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
            recs = []
            for seq in range(start, min(start + batch, per_device + 1)):
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
                }
                rec["sig"] = sign.sign(rec, key)
                recs.append(rec)
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
    """Seconds for the collector to verify, commit and ack every record."""
    total = sum(count for _, _, count in stream)
    service = stack.ingest
    started = time.perf_counter()
    _publish(stack.broker, stream)
    deadline = time.monotonic() + 600
    while service.records_stored < total and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stack.stop_ingest()
    stored = db.count_evaluations(stack.engine)
    if stored != total:
        raise RuntimeError(f"durable ingest stored {stored} of {total} records")
    return elapsed


def run(args) -> int:
    console = Console(highlight=False)
    kind = broker_kind(args.broker)
    stream, keys = make_stream(args.devices, args.records, args.batch)
    total = sum(count for _, _, count in stream)
    devices = [Device(device_id, key.hex()) for device_id, key in keys.items()]
    with tempfile.TemporaryDirectory(prefix="hcp-bench-") as tmp:
        with LocalStack(tmp, kind, collector=False) as stack:  # the broker alone
            base_s = baseline(stack.broker, stream)
        with LocalStack(tmp, kind, broker_dir="broker2", database="bench.db", devices=devices,
                        client_id="bench-collector") as stack:  # fmt: skip
            durable_s = durable(stack, stream)
    result = {
        "benchmark": "ingest",
        "broker": kind,
        "records": total,
        "batch": args.batch,
        "devices": args.devices,
        "baseline_records_per_s": round(total / base_s, 1),
        "durable_records_per_s": round(total / durable_s, 1),
        "ratio_durable_to_baseline": round(base_s / durable_s, 3),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["kiosk"] = kiosk_bench(console)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"ingest, {total} records in batches of {args.batch}, {kind}")
    table.add_column("path")
    table.add_column("records/s", justify="right")
    table.add_row("baseline: subscriber that only counts", f"{total / base_s:,.0f}")
    table.add_row("durable: verify + SQLite commit + ack", f"{total / durable_s:,.0f}")
    table.add_row("ratio durable / baseline", f"{base_s / durable_s:.3f}")
    console.print(table)
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
