"""Pytest fixture: a virtual MicroPython board (simulators/virtual_board.py)
on a pseudo-terminal, for mpremote and `hcp provision`.

It runs the 32-bit unix port of tests/harness/micropython_unix.py, so it
skips where ../shared is absent and fails under CI=true, as the other
unix-port fixtures do (require_micropython32)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.micropython_unix import require_micropython32

MPREMOTE = [sys.executable, "-m", "mpremote"]


def mpremote(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the venv's real mpremote against `port` (connect PORT ARGS...)."""
    return subprocess.run(
        [*MPREMOTE, "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUTF8": "1"},
    )


@pytest.fixture
def virtual_board_factory(tmp_path):
    """make(root=None, **options) -> a started VirtualBoard; all stopped after the test."""
    from simulators.virtual_board import VirtualBoard

    binary = require_micropython32()
    boards = []

    def make(root: Path | None = None, **options) -> VirtualBoard:
        root = Path(root) if root else tmp_path / f"board{len(boards)}"
        board = VirtualBoard(root, binary, **options).start()
        boards.append(board)
        assert board.wait_idle(10), "the virtual board did not finish booting"
        return board

    yield make
    for board in boards:
        board.stop()


@pytest.fixture
def virtual_board(virtual_board_factory):
    """A started virtual board with an empty file system."""
    return virtual_board_factory()


def measure(runs: int = 3) -> list[tuple[float, float]]:
    """Wall clock of `hcp provision` against a virtual board, each a new
    process as a technician runs it, the first status included: a new id
    with --flash, then the same id again with --reprovision (no --flash).
    Mosquitto, a collector (ingest) on SQLite; returns [(flash, no_flash)]."""
    import shutil
    import tempfile
    import time

    from hcp.broker import start_broker
    from simulators.virtual_board import VirtualBoard
    from sync_server import db
    from sync_server.ingest import IngestService
    from tests.harness.micropython_unix import micropython32_path

    figures = []
    with tempfile.TemporaryDirectory(prefix="hcp-provision-measure-") as tmp:
        tmp = Path(tmp)
        url = f"sqlite:///{tmp / 'collector.db'}"
        engine = db.make_engine(url)
        db.init(engine)
        broker = start_broker("mosquitto", workdir=tmp / "broker")
        service = IngestService(engine, broker.host, broker.port)
        service.start()
        board = VirtualBoard(tmp / "fs", micropython32_path()).start()
        board.wait_idle(10)
        try:

            def provision(device_id, *extra):
                started = time.perf_counter()
                run = subprocess.run(
                    [sys.executable, "-m", "hcp", "provision", "--port", board.port,
                     "--db", url, "--device-id", device_id, "--window", "A01",
                     "--broker-host", broker.host, "--broker-port", str(broker.port),
                     "--board", "sim", "--set", "ntp_host=", "--timeout", "30", *extra],
                    capture_output=True, text=True,
                )  # fmt: skip
                seconds = time.perf_counter() - started
                if run.returncode != 0 or "is online" not in run.stdout:
                    raise RuntimeError(run.stdout + run.stderr)
                return seconds

            for n in range(runs):
                shutil.rmtree(board.root / "data", ignore_errors=True)  # a fresh board's data
                flash = provision(f"kp-measure-{n}", "--flash")
                again = provision(f"kp-measure-{n}", "--reprovision")
                figures.append((flash, again))
                print(
                    f"run {n + 1}: new id with --flash {flash:.2f} s; "
                    f"--reprovision without --flash {again:.2f} s",
                    flush=True,
                )
        finally:
            board.stop()
            service.stop()
            broker.stop()
            engine.dispose()
    return figures


if __name__ == "__main__":
    # .venv/bin/python -m tests.harness.virtual_board [RUNS]
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
