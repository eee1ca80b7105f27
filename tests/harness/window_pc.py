"""`hcp window` as the window PC runs it, for tests: a subprocess on a serial
port (a pseudo-terminal in tests), with its local HTTP service on a free port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_window(serial_port: str, extra_wait: int = 1, extra_args=()):
    """Start `hcp window --port serial_port` (and `extra_args`, e.g. the
    collector's); yields its HTTP port once it listens."""
    http_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcp", "window", "--port", serial_port,
         "--http-port", str(http_port), "--extra-wait", str(extra_wait), *extra_args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "hcp window did not start"
                time.sleep(0.05)
        yield http_port
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stderr.close()
