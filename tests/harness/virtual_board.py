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
