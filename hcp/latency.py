"""Key press → durable on the collector → ack back on the keypad, measured.

Simulated keypads (the firmware of device/ on CPython, simulators/keypad.py)
rate through a real broker into the real collector. For every rating the
time runs from the moment the simulated finger pulls the key's pin down to
the moment the keypad's store forgets the record because the collector's
signed ack named it: debounce, the record's flash write, the batch interval,
the broker both ways, verification, the commit and the ack.

The keypads run in `processes` processes of their own (0: threads of this
one), so that twenty boards' loops do not queue for one interpreter lock;
the collector's ingest runs in a process of its own too, as on a
deployment. Every keypad is connected and has said who it is before the
first finger goes down: a deployed keypad is online long before a citizen
rates. The finger waits on the firmware's own events (the record written,
the follow-up window ended), not on polling sleeps.

With `trace` the collector is hcp.latency_probe's (the same IngestService
with a timestamp at each hop) and the keypads note when each batch went out,
so each rating's time is split into hops (HOPS); `tail` says which hops the
slowest 1 % of ratings spent it in. A `loop_lag` sampler in each keypad
process measures how late a 10 ms sleep wakes there (the interpreter lock
and the machine's scheduler): what every keypad loop pass pays too.

The baseline, from the same run on the same broker: one paho client publishes
QoS 1 messages to a topic it is subscribed to and times each one's arrival.
The figures are percentiles and their ratio to the baseline's; nothing is
asserted on them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from hcp.stack import Device, LocalStack, broker_kind

# (from, to, what the hop is) for a traced rating; stamps as in _Probe and
# hcp.latency_probe
HOPS = (
    ("press", "written", "finger down -> record written (debounce, loop pass, flash write)"),
    ("written", "sent", "record written -> its batch published (batch wait, loop pass)"),
    ("sent", "received", "publish -> collector's on_message (socket, broker, paho thread)"),
    ("received", "prepared", "on_message -> decoded and verified (queue, prepare thread)"),
    ("prepared", "tx_start", "verified -> its transaction starts (wait for the worker)"),
    ("tx_start", "committed", "transaction with its group, commit and fsync"),
    ("committed", "ack_sent", "committed -> ack handed to paho"),
    ("ack_sent", "acked", "ack handed to paho -> keypad takes it (broker, keypad loop pass)"),
)


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


class _Probe:
    """Wraps one keypad's firmware (between two loop passes): when each seq
    was written and acked, when each batch went out (and in which batch each
    seq was acked), and events the finger waits on."""

    def __init__(self, device):
        self.added: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.acked_in: dict[int, int] = {}  # seq -> the batch its ack answered
        self.sent: dict[int, float] = {}  # batch -> when its publish began
        self.taken = threading.Event()  # a record was written
        self.window_over = threading.Event()  # the follow-up window ended
        store, sync, app = device.store, device.sync, device.app
        add, remove, ack = store.add, store.remove, sync._ack
        publish_stream, end_window = sync.client.publish_stream, app._end_window

        def timed_add(record):
            add(record)
            self.added[record["seq"]] = time.monotonic()
            self.taken.set()

        def timed_remove(seqs):
            now = time.monotonic()
            for seq in seqs:
                self.acked.setdefault(seq, now)
            return remove(seqs)

        def timed_ack(msg):
            for seq in msg["stored"] + msg["quarantined"]:
                self.acked_in.setdefault(seq, msg["batch"])
            return ack(msg)

        def timed_publish_stream(topic, length, chunks, qos=1, retain=False):
            self.sent.setdefault(sync._batch, time.monotonic())
            return publish_stream(topic, length, chunks, qos, retain)

        def timed_end_window(now_ms):
            end_window(now_ms)
            self.window_over.set()

        store.add, store.remove, sync._ack = timed_add, timed_remove, timed_ack
        sync.client.publish_stream = timed_publish_stream
        app._end_window = timed_end_window


def _rate_all(keypad, probe: _Probe, ratings: int, presses: dict, errors: list) -> None:
    """The finger stays on the key until the keypad has written the record
    (a loaded machine may run a keypad's loop less often than its debounce),
    then lets go and waits for the follow-up window to end: both by the
    firmware's events, no polling."""
    from hardware.boards import sim as sim_board

    name = keypad.settings["device_id"]
    try:
        for n in range(ratings):
            pin = keypad.machine.pins[sim_board.KEY_PINS[n % 5]]
            seq = keypad.call(lambda d: d.store.next_seq)
            probe.taken.clear()
            probe.window_over.clear()
            presses[seq] = time.monotonic()
            pin.drive(0)  # the finger goes down now
            if not probe.taken.wait(10):
                raise RuntimeError(f"{name}: press not taken")
            pin.drive(1)
            if not probe.window_over.wait(10):
                raise RuntimeError(f"{name}: window did not end")
            keypad.presses += 1
    except Exception as exc:  # noqa: BLE001 - reported after the run
        errors.append(exc)


def _ready(device) -> bool:
    """Online and has published its first status: as a keypad a citizen finds."""
    return bool(device.client and device.client.connected and device.sync._last_status is not None)


def _loop_lag(stop: threading.Event, lags: list) -> None:
    while not stop.is_set():
        start = time.monotonic()
        time.sleep(0.01)
        lags.append((time.monotonic() - start - 0.01) * 1000)


def host_keypads(specs, host, port, ratings, confirm_ms, go, report) -> None:
    """Run the keypads of `specs` [(device id, key hex, data folder)]: report
    ("ready", None) once every one is online, rate when `go` is set, report
    ("done", result) once every store is empty. A process's target (spawn),
    or a thread's for keypads in the caller's process."""
    from simulators.keypad import SimKeypad

    keypads, errors, said_ready = [], [], False
    result = {"keypads": [], "errors": errors, "loop_lag_ms": []}
    try:
        keypads = [
            SimKeypad(device_id, key_hex, host, port, folder, confirm_ms=confirm_ms).start()
            for device_id, key_hex, folder in specs
        ]
        deadline = time.monotonic() + 60
        while not all(k.call(_ready) for k in keypads):
            if time.monotonic() > deadline:
                raise RuntimeError("keypads not online within 60 s")
            time.sleep(0.05)
        probes = [k.call(_Probe) for k in keypads]
        presses = [{} for _ in keypads]
        report.put(("ready", None))
        said_ready = True
        if not go.wait(300):
            raise RuntimeError("no go within 300 s")
        stop = threading.Event()
        sampler = threading.Thread(target=_loop_lag, args=(stop, result["loop_lag_ms"]))
        sampler.start()
        threads = [
            threading.Thread(target=_rate_all, args=(k, p, ratings, pressed, errors))
            for k, p, pressed in zip(keypads, probes, presses, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for keypad in keypads:
            if not keypad.wait_drained(60):
                errors.append(RuntimeError(f"{keypad.settings['device_id']} not drained"))
        stop.set()
        sampler.join()
        for keypad, probe, pressed in zip(keypads, probes, presses, strict=True):
            result["keypads"].append({
                "device_id": keypad.settings["device_id"],
                "pressed": pressed,
                "added": probe.added,
                "acked": probe.acked,
                "acked_in": probe.acked_in,
                "sent": probe.sent,
            })  # fmt: skip
        errors.extend(e for k in keypads for e in k.errors)
    except Exception as exc:  # noqa: BLE001 - reported to the bench
        errors.append(exc)
    finally:
        for keypad in keypads:
            keypad.stop()
        result["errors"] = [repr(e) for e in errors]
        if not said_ready:
            report.put(("ready", None))  # failed before: the bench is not left waiting
        report.put(("done", result))


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


def fsync_round_trip(folder: Path, count: int = 200) -> Latencies:
    """A small append and its fsync in `folder`, `count` times: the floor of
    every durable write on this disk (the collector's commit, a keypad's
    journal line), measured in the same run."""
    path = folder / "fsync-baseline"
    result = Latencies()
    with open(path, "ab") as out:
        for n in range(count):
            start = time.monotonic()
            out.write(b"%08d\n" % n)
            out.flush()
            os.fsync(out.fileno())
            result.samples.append((time.monotonic() - start) * 1000)
    path.unlink()
    return result


def baseline_count(ratings: int) -> int:
    """Round trips timed for the baseline: as many as the ratings, within
    20..500 (one at a time they take a broker's latency each: about 46 ms on
    amqtt, so a short run is not held up by a long baseline)."""
    return max(20, min(500, ratings))


def _load_average() -> str | None:
    """The machine's 1, 5 and 15 minute load averages: how busy it was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def split(specs: list, processes: int) -> list[list]:
    """The keypads dealt round to `processes` hosts (at least one, none empty)."""
    hosts = max(1, min(processes, len(specs)))
    return [specs[n::hosts] for n in range(hosts)]


def _run_hosts(groups, host, port, ratings, confirm_ms, processes) -> tuple[list, float]:
    """Start the keypad hosts, let every finger go at once; (results, seconds)."""
    if processes:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        go, report = context.Event(), context.Queue()
        workers = [
            context.Process(target=host_keypads,
                            args=(g, host, port, ratings, confirm_ms, go, report))
            for g in groups
        ]  # fmt: skip
    else:
        go, report = threading.Event(), queue.Queue()
        workers = [
            threading.Thread(target=host_keypads,
                             args=(g, host, port, ratings, confirm_ms, go, report))
            for g in groups
        ]  # fmt: skip
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            report.get(timeout=300)  # ready (or failed)
        begun = time.monotonic()
        go.set()
        results = [report.get(timeout=900)[1] for _ in workers]
        elapsed = time.monotonic() - begun
    finally:
        for worker in workers:
            worker.join(60)
    return results, elapsed


def hop_figures(keypads: list[dict], marks: dict | None) -> dict:
    """Each rating's time split into HOPS (with the collector's `marks`), as
    percentiles per hop, and the mean of each hop over the slowest 1 % of
    ratings against all of them ("tail")."""
    rows = []
    for kp in keypads:
        for seq, pressed in kp["pressed"].items():
            batch = kp["acked_in"].get(seq)
            stamps = {"press": pressed, "written": kp["added"][seq], "acked": kp["acked"][seq]}
            if batch is not None:
                if batch in kp["sent"]:
                    stamps["sent"] = kp["sent"][batch]
                stamps.update((marks or {}).get((kp["device_id"], batch), {}))
            rows.append(stamps)
    hops, tail_rows = {}, sorted(rows, key=lambda s: s["acked"] - s["press"])
    tail_rows = tail_rows[-max(1, len(rows) // 100) :]
    for start, end, label in HOPS:
        spans = [(s[end] - s[start]) * 1000 for s in rows if start in s and end in s]
        if not spans:
            continue
        tail = [(s[end] - s[start]) * 1000 for s in tail_rows if start in s and end in s]
        hops[f"{start}->{end}"] = {
            "what": label,
            **Latencies(spans).summary(),
            "tail_mean_ms": round(statistics.fmean(tail), 2) if tail else None,
        }
    groups = [s["group"] for s in rows if "group" in s]
    slowest = []
    for s in reversed(tail_rows[-5:]):
        chain = {"press_to_ack_ms": round((s["acked"] - s["press"]) * 1000, 1)}
        for start, end, _label in HOPS:
            if start in s and end in s:
                chain[f"{start}->{end}"] = round((s[end] - s[start]) * 1000, 1)
        slowest.append(chain)
    return {
        "hops": hops,
        "tail_ratings": len(tail_rows),
        "slowest": slowest,
        "group_messages_mean": round(statistics.fmean(groups), 1) if groups else None,
    }


def measure(
    keypads: int = 20,
    ratings: int = 100,
    broker: str | None = None,
    workdir: str | None = None,
    confirm_ms: int = 300,
    processes: int = 2,
    trace: bool = True,
    keypad_dir: str | None = None,
) -> dict:
    """Rate `ratings` times on each of `keypads` keypads at once; return the
    press→ack percentiles, the broker baseline's and their ratios, and with
    `trace` the hops (see the module doc). The keypads run in `processes`
    processes (0: threads of this process); the collector's ingest always in
    a process of its own. `keypad_dir` is where the keypads' data folders
    (their flash) go: default the run's folder, beside the collector's
    database on the same disk."""
    from hcp.bench_collector import collector_process
    from hcp.latency_probe import read_lags, read_marks, traced_collector

    devices = [Device(f"lat-{n:02d}", secrets.token_hex(32)) for n in range(keypads)]
    with (
        tempfile.TemporaryDirectory(prefix="hcp-latency-") as scratch,
        contextlib.ExitStack() as scope,
    ):
        folder = Path(workdir or scratch)
        marks_file = folder / "collector-marks.jsonl"
        with LocalStack(folder, broker_kind(broker), devices=devices, ingest=False) as stack:
            host, port = stack.broker.host, stack.broker.port
            url = stack.engine.url.render_as_string(hide_password=False)
            if trace:
                collector = traced_collector(url, host, port, "latency-collector", marks_file)
            else:
                collector = collector_process(url, host, port, "latency-collector")
            scope.enter_context(collector)
            baseline = broker_round_trip(host, port, baseline_count(keypads * ratings))
            fsyncs = fsync_round_trip(folder)
            flash = folder
            if keypad_dir:
                made = tempfile.TemporaryDirectory(prefix="hcp-latency-flash-", dir=keypad_dir)
                flash = Path(scope.enter_context(made))
            specs = [(d.device_id, d.key_hex, str(flash / d.device_id)) for d in devices]
            groups = split(specs, processes)
            results, elapsed = _run_hosts(groups, host, port, ratings, confirm_ms, processes)
            scope.close()  # the collector process stops (and writes its marks) before the stack
        errors = [e for r in results for e in r["errors"]]
        if errors:
            raise RuntimeError(f"latency run failed: {errors[0]}")
        marks = read_marks(marks_file) if trace else None
        collector_lags = read_lags(marks_file) if trace else None
    kps = [kp for r in results for kp in r["keypads"]]
    press_to_ack, write_to_ack = Latencies(), Latencies()
    for kp in kps:
        for seq, down in kp["pressed"].items():
            press_to_ack.samples.append((kp["acked"][seq] - down) * 1000)
            write_to_ack.samples.append((kp["acked"][seq] - kp["added"][seq]) * 1000)
    lags = [lag for r in results for lag in r["loop_lag_ms"]]
    press, base = press_to_ack.summary(), baseline.summary()
    figures = {
        "load_average": _load_average(),
        "keypads": keypads,
        "keypad_processes": len(groups) if processes else 0,
        "collector": "own process",
        "ratings": keypads * ratings,
        "seconds": round(elapsed, 1),
        "press_to_ack": press,
        "write_to_ack": write_to_ack.summary(),
        "broker_round_trip": base,
        "fsync": {**fsyncs.summary(), "max_ms": round(max(fsyncs.samples), 2)},
        "loop_lag": Latencies(lags).summary() if lags else None,
        "ratio_p50": round(press["p50_ms"] / base["p50_ms"], 1),
        "ratio_p95": round(press["p95_ms"] / base["p95_ms"], 1),
        "ratio_p99": round(press["p99_ms"] / base["p99_ms"], 1),
    }
    if trace:
        figures.update(hop_figures(kps, marks))
        spans = {(m["tx_start"], m["committed"]) for m in marks.values() if "committed" in m}
        commits = Latencies([(end - start) * 1000 for start, end in spans])
        figures["commit_ms"] = {**commits.summary(), "max_ms": round(max(commits.samples), 2)}
        if collector_lags:
            figures["collector_loop_lag"] = Latencies(collector_lags).summary()
    return figures
