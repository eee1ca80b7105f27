"""The collector's ingest alone, in a process of its own, for `hcp bench`.

`python -m hcp.bench_collector DATABASE_URL HOST PORT CLIENT_ID` runs an
IngestService against the database and broker given, prints `ready` once it
has subscribed, and stops in order when its standard input closes (or on
SIGTERM). The bench's latency section runs the collector this way so that
the simulated keypads, twenty threads in the bench's own interpreter, do not
share its interpreter lock with the collector: on a deployment the
collector has its process and each keypad its own board.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time

from sync_server import db
from sync_server.ingest import IngestService


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m hcp.bench_collector DATABASE_URL HOST PORT CLIENT_ID")
        return 2
    url, host, port, client_id = argv
    engine = db.make_engine(url)
    service = IngestService(engine, host, int(port), client_id=client_id)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    service.start()
    print("ready", flush=True)
    done.wait()
    service.stop()
    engine.dispose()
    print(f"stored {service.records_stored} in {service.groups} groups", flush=True)
    return 0


@contextlib.contextmanager
def collector_process(
    url: str,
    host: str,
    port: int,
    client_id: str,
    timeout: float = 60,
    module: str = "hcp.bench_collector",
    extra: tuple[str, ...] = (),
    stop_wait: float = 30,
):
    """The ingest running in a child process (`python -m module url host port
    client_id *extra`, which prints a line once subscribed) until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, url, host, str(port), client_id, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = threading.Event()
        threading.Thread(target=lambda: proc.stdout.readline() and ready.set(), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the collector process ended (exit {proc.returncode}) before it subscribed"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the collector process did not subscribe within {timeout:.0f} s"
                )
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()  # an orderly stop: what it took is finished (and noted) first
            try:
                proc.wait(stop_wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
