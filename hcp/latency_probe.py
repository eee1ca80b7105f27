"""The collector's ingest with a timestamp at each hop, for `hcp bench`'s latency.

`python -m hcp.latency_probe DATABASE_URL HOST PORT CLIENT_ID MARKS_FILE`
runs the IngestService of sync_server/ingest.py unchanged, in a process of
its own, and notes when each batch message

    received   reached the collector (paho's on_message, its network thread),
    prepared   was decoded and verified (the prepare thread; includes its wait
               in the queue behind the messages before it),
    tx_start   entered the transaction of its group (the worker),
    committed  was committed (the group's transaction returned),
    ack_sent   had its signed ack handed to paho for the device,

by time.monotonic(), which is the system's monotonic clock and so comparable
with the keypads' stamps in other processes. It prints `ready` once it has
subscribed and, when its standard input closes, stops in order and writes
the marks as JSON lines [kind, time, device_id, batch, group size] to
MARKS_FILE. A stamp costs a clock read and a list append: microseconds
against the milliseconds measured.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time

from protocols import topics
from sync_server import db
from sync_server.ingest import IngestService

_BATCH = re.compile(rb'^\{"batch":(\d+)')


def _batch_of(topic: str, payload: bytes) -> tuple[str, int] | None:
    """(device id, batch number) of an up/ev batch message, else None."""
    try:
        device_id, kind = topics.parse(topic)
    except ValueError:
        return None
    found = _BATCH.match(payload[:24])
    if kind != topics.UP_EV or not found:
        return None
    return device_id, int(found.group(1))


class TracedIngestService(IngestService):
    """IngestService with a timestamp at each hop of a batch (see the module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.marks: list[tuple[str, float, str, int, int]] = []
        mark = self.marks.append
        ingestor, client = self.ingestor, self.client
        prepare, process_many, publish = ingestor.prepare, ingestor.process_many, client.publish

        def traced_prepare(topic, payload):
            try:
                return prepare(topic, payload)
            finally:
                key = _batch_of(topic, payload)
                if key:
                    mark(("prepared", time.monotonic(), *key, 0))

        def traced_process_many(items, prepared=None):
            start = time.monotonic()
            outcomes = process_many(items, prepared)
            end = time.monotonic()
            for topic, payload, _retained in items:
                key = _batch_of(topic, payload)
                if key:
                    mark(("tx_start", start, *key, len(items)))
                    mark(("committed", end, *key, len(items)))
            return outcomes

        def traced_publish(topic, payload=None, qos=0, retain=False, properties=None):
            now = time.monotonic()
            if topic.endswith("/" + topics.DOWN_ACK):
                found = _BATCH.match(payload[:24])
                if found:
                    mark(("ack_sent", now, topics.parse(topic)[0], int(found.group(1)), 0))
            return publish(topic, payload, qos, retain, properties)

        ingestor.prepare = traced_prepare
        ingestor.process_many = traced_process_many
        client.publish = traced_publish

    def _on_message(self, client, userdata, message):
        key = _batch_of(message.topic, message.payload)
        if key:
            self.marks.append(("received", time.monotonic(), *key, 0))
        super()._on_message(client, userdata, message)


def _loop_lag(done: threading.Event, lags: list) -> None:
    """How late a 10 ms sleep wakes in this process (ms): its interpreter
    lock and the machine's scheduler, which every hop here pays too."""
    while not done.is_set():
        start = time.monotonic()
        time.sleep(0.01)
        lags.append((time.monotonic() - start - 0.01) * 1000)


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: python -m hcp.latency_probe DATABASE_URL HOST PORT CLIENT_ID MARKS_FILE")
        return 2
    url, host, port, client_id, marks_file = argv
    engine = db.make_engine(url)
    service = TracedIngestService(engine, host, int(port), client_id=client_id)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    service.start()
    print("ready", flush=True)
    lags: list[float] = []
    sampler = threading.Thread(target=_loop_lag, args=(done, lags), daemon=True)
    sampler.start()
    done.wait()
    sampler.join()
    service.stop()
    engine.dispose()
    with open(marks_file, "w") as out:
        for row in service.marks:
            out.write(json.dumps(row) + "\n")
        for lag in lags:
            out.write(json.dumps(["lag", lag, "", 0, 0]) + "\n")
    print(f"stored {service.records_stored} in {service.groups} groups", flush=True)
    return 0


def read_marks(path) -> dict[tuple[str, int], dict[str, float]]:
    """{(device id, batch): {kind: first time}} from a MARKS_FILE; a batch's
    group size under "group"."""
    found: dict[tuple[str, int], dict[str, float]] = {}
    with open(path) as lines:
        for line in lines:
            kind, when, device_id, batch, size = json.loads(line)
            if kind == "lag":
                continue
            stamps = found.setdefault((device_id, batch), {})
            stamps.setdefault(kind, when)
            if size:
                stamps.setdefault("group", size)
    return found


def read_lags(path) -> list[float]:
    """The collector process's sleep lags (ms) from a MARKS_FILE."""
    with open(path) as lines:
        rows = (json.loads(line) for line in lines)
        return [row[1] for row in rows if row[0] == "lag"]


def traced_collector(url, host, port, client_id, marks_file, timeout: float = 60):
    """The traced ingest in a child process until the block ends; its marks
    are in `marks_file` once the block has ended."""
    from hcp.bench_collector import collector_process

    return collector_process(url, host, port, client_id, timeout, module="hcp.latency_probe",
                             extra=(str(marks_file),), stop_wait=60)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
