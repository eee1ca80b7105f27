"""hcp.bench_collector: the ingest alone in its own process (the latency run uses it)."""

import subprocess
import sys
from pathlib import Path

import pytest

from hcp.bench_collector import collector_process

ROOT = Path(__file__).resolve().parent.parent


def test_it_names_its_arguments_when_given_too_few():
    result = subprocess.run(
        [sys.executable, "-m", "hcp.bench_collector", "sqlite:///x.db"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stdout == "usage: python -m hcp.bench_collector DATABASE_URL HOST PORT CLIENT_ID\n"
    )


def test_a_collector_that_cannot_connect_is_reported_at_once():
    # nothing listens on port 1: the child fails before it is ready
    with pytest.raises(
        RuntimeError, match=r"the collector process ended \(exit 1\) before it subscribed"
    ):
        with collector_process("sqlite://", "127.0.0.1", 1, "bench-test", timeout=60):
            pass
