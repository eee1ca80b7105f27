"""Key press → durable on the collector → ack back on the keypad, measured.

Simulated keypads (the firmware of device/ on CPython, simulators/keypad.py)
rate through a real broker into the real collector (hcp.stack.LocalStack).
For every rating the time runs from the moment the simulated finger pulls the
key's pin down to the moment the keypad's store forgets the record because
the collector's signed ack named it: debounce, the record's flash write, the
batch interval, the broker both ways, verification, the commit and the ack.

The baseline, from the same run on the same broker: one paho client publishes
QoS 1 messages to a topic it is subscribed to and times each one's arrival.
The figures are percentiles and their ratio to the baseline's; nothing is
asserted on them.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from hardware.boards import sim as sim_board
from hcp.bench_collector import collector_process
from hcp.stack import Device, LocalStack, broker_kind


@dataclass
class Latencies:
    """Milliseconds, one per rating (or message), in the order they finished."""

    samples: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        if not ordered:
            raise ValueError("no samples")
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict:
        return {
            "count": len(self.samples),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "mean_ms": round(statistics.fmean(self.samples), 2),
        }


class _Timed:
    """Wraps one keypad's store: when each seq was added and when it was acked."""

    def __init__(self, store):
        self.added: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        add, remove = store.add, store.remove

        def timed_add(record):
            add(record)
            self.added[record["seq"]] = time.monotonic()

        def timed_remove(seqs):
            now = time.monotonic()
            for seq in seqs:
                self.acked.setdefault(seq, now)
            return remove(seqs)

        store.add, store.remove = timed_add, timed_remove


def broker_round_trip(host: str, port: int, count: int) -> Latencies:
    """publish → receive through the broker, QoS 1, one message at a time."""
    arrived = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="latency-baseline")
    client.on_message = lambda *_: arrived.set()
    client.connect(host, port)
    # no Nagle on the client's side either: its PUBACK, then its next PUBLISH
    # would wait for the broker's delayed TCP ack (about 40 ms)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    topic = "hcp/bench/latency"
    try:
        client.subscribe(topic, 1)[0]
        time.sleep(0.3)
        result = Latencies()
        for n in range(count):
            arrived.clear()
            start = time.monotonic()
            client.publish(topic, b'{"n":%d}' % n, qos=1)
            if not arrived.wait(10):
                raise RuntimeError("the broker did not deliver a baseline message in 10 s")
            result.samples.append((time.monotonic() - start) * 1000)
        return result
    finally:
        client.disconnect()
        client.loop_stop()


def baseline_count(ratings: int) -> int:
    """Round trips timed for the baseline: as many as the ratings, within
    20..500 (one at a time they take a broker's latency each: about 46 ms on
    amqtt, so a short run is not held up by a long baseline)."""
    return max(20, min(500, ratings))


def _rate_all(keypad, timed: _Timed, ratings: int, presses: dict, errors: list) -> None:
    """The finger stays on the key until the keypad has taken the press (a
    loaded machine may run a keypad's loop less often than its debounce), then
    lets go and waits for the follow-up window to end."""
    try:
        for n in range(ratings):
            index = n % 5
            pin = keypad.machine.pins[sim_board.KEY_PINS[index]]
            seq = keypad.call(lambda d: d.store.next_seq)
            presses[seq] = time.monotonic()
            pin.drive(0)  # the finger goes down now
            deadline = time.monotonic() + 10
            while seq not in timed.added:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{keypad.settings['device_id']}: press not taken")
                time.sleep(0.002)
            pin.drive(1)
            while keypad.call(lambda d: d.app.in_window()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{keypad.settings['device_id']}: window did not end")
                time.sleep(0.01)
            keypad.presses += 1
    except Exception as exc:  # noqa: BLE001 - reported after the run
        errors.append(exc)


def measure(
    keypads: int = 20,
    ratings: int = 100,
    broker: str | None = None,
    workdir: str | None = None,
    confirm_ms: int = 300,
    own_process: bool = True,
) -> dict:
    """Rate `ratings` times on each of `keypads` keypads at once; return the
    press→ack percentiles, the broker baseline's and their ratios. With
    `own_process` the collector's ingest runs in a process of its own
    (hcp.bench_collector), as on a deployment, not beside the keypads."""
    devices = [Device(f"lat-{n:02d}", secrets.token_hex(32)) for n in range(keypads)]
    with (
        tempfile.TemporaryDirectory(prefix="hcp-latency-") as scratch,
        contextlib.ExitStack() as scope,
    ):
        folder = Path(workdir or scratch)
        with LocalStack(folder, broker_kind(broker), devices=devices,
                        ingest=not own_process) as stack:  # fmt: skip
            if own_process:
                url = stack.engine.url.render_as_string(hide_password=False)
                scope.enter_context(
                    collector_process(
                        url, stack.broker.host, stack.broker.port, "latency-collector"
                    )
                )
            baseline = broker_round_trip(
                stack.broker.host, stack.broker.port, baseline_count(keypads * ratings)
            )
            started = [stack.start_keypad(d, confirm_ms=confirm_ms) for d in devices]
            timers = [k.call(lambda dev: _Timed(dev.store)) for k in started]
            presses = [{} for _ in started]
            errors: list[BaseException] = []
            threads = [
                threading.Thread(target=_rate_all, args=(k, t, ratings, p, errors))
                for k, t, p in zip(started, timers, presses, strict=True)
            ]
            begun = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for keypad in started:
                if not keypad.wait_drained(60):
                    errors.append(RuntimeError(f"{keypad.settings['device_id']} not drained"))
            elapsed = time.monotonic() - begun
            scope.close()  # the collector process stops before the stack
            if errors:
                raise RuntimeError(f"latency run failed: {errors[0]!r}")
    press_to_ack, write_to_ack = Latencies(), Latencies()
    for timed, pressed in zip(timers, presses, strict=True):
        for seq, down in pressed.items():
            press_to_ack.samples.append((timed.acked[seq] - down) * 1000)
            write_to_ack.samples.append((timed.acked[seq] - timed.added[seq]) * 1000)
    press, base = press_to_ack.summary(), baseline.summary()
    return {
        "keypads": keypads,
        "collector": "own process" if own_process else "the keypads' process",
        "ratings": keypads * ratings,
        "seconds": round(elapsed, 1),
        "press_to_ack": press,
        "write_to_ack": write_to_ack.summary(),
        "broker_round_trip": base,
        "ratio_p50": round(press["p50_ms"] / base["p50_ms"], 1),
        "ratio_p95": round(press["p95_ms"] / base["p95_ms"], 1),
    }
