"""`hcp demo` as a user runs it: a real process, the embedded broker, real sockets."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.broker import require_kind

ROOT = Path(__file__).resolve().parent.parent
FINAL = re.compile(
    r"停止 stopped: (\d+) 次评价 ratings made, (\d+) 条入库 stored .* (\d+) 条留在设备上"
)


def demo(workdir, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "hcp", "demo", "--workdir", str(workdir), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )


def stored_in(workdir) -> int:
    with sqlite3.connect(workdir / "collector.db") as conn:
        return conn.execute("SELECT count(*) FROM evaluations").fetchone()[0]


@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"])
def test_an_unattended_demo_shows_ratings_arriving(tmp_path, broker):
    require_kind(broker)
    proc = demo(tmp_path, "--duration", "6", "--pace", "0.2", "--broker", broker)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert re.search(r"http://127\.0\.0\.1:\d+", out), out
    assert re.search(rf"mqtt://127\.0\.0\.1:\d+  \({broker}\)", out), out
    assert re.search(r"已收到 received +\d+", out), out
    made, stored, kept = (int(x) for x in FINAL.search(out).groups())
    assert made > 0 and stored > 0
    # nothing lost, nothing twice: every rating is in the collector or on a keypad
    assert stored + kept == made == stored_in(tmp_path) + kept


def test_ctrl_c_stops_cleanly_and_nothing_is_lost_across_runs(tmp_path):
    proc = demo(tmp_path, "--pace", "0.1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "已收到 received" in line:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    made, stored, kept = (int(x) for x in FINAL.search(out).groups())
    assert stored + kept == made
    # the second run delivers what the keypads kept, and adds its own ratings
    proc = demo(tmp_path, "--duration", "3")
    out2, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out2
    made2, _stored2, kept2 = (int(x) for x in FINAL.search(out2).groups())
    assert stored_in(tmp_path) + kept2 == made + made2


def test_a_work_folder_whose_collector_knows_another_key_stops_at_once(tmp_path):
    # the demo's devices.json and collector.db belong together; a keypad whose
    # key the collector does not have would have every rating quarantined
    from hcp.stack import Device, LocalStack

    with LocalStack(tmp_path, "amqtt", devices=[Device("kp-demo-01", "aa" * 32)]) as stack:
        assert stack.ingest is not None
    stack = LocalStack(tmp_path, "amqtt", devices=[Device("kp-demo-01", "bb" * 32)])
    with pytest.raises(ValueError, match="kp-demo-01: the database .* holds another key"):
        stack.start()
    assert stack.broker is None and stack.ingest is None  # what had started is stopped again
