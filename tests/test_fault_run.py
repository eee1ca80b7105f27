"""A short fault run on each broker kind: nothing lost, nothing twice.

On Mosquitto the runs have access control on (the files broker_auth writes):
each keypad and collector logs in with its own login; the run shows that an
anonymous client was refused. `make fault` runs the long version (20
keypads, 2 minutes)."""

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete

from hcp.fault import FAULTS, FaultRun, Report
from sync_server import db
from tests.harness.broker import ANONYMOUS_REFUSED, NOT_AUTHORIZED, logins_let_in, require_kind

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "kind", ["mosquitto", pytest.param("amqtt", marks=pytest.mark.long)]
)  # amqtt proves the same as mosquitto, slower: `make test-long`
def test_every_record_arrives_once_through_all_kinds_of_fault(tmp_path, kind):
    require_kind(kind)
    report = FaultRun(tmp_path, devices=3, duration=6, broker=kind, fault_every=0.5, seed=7).run()
    assert set(report.faults) == set(FAULTS), "every kind of fault was injected"
    assert report.made > 0
    assert report.missing == [] and report.unexpected == []
    assert report.count_mismatches == [] and report.quarantined == 0
    assert report.drained and report.stored == report.made and report.ok
    # Mosquitto refused the anonymous client: access control was on; amqtt is open
    assert report.anonymous_answer == (NOT_AUTHORIZED if kind == "mosquitto" else 0)


def test_a_lost_record_or_a_wrong_count_fails_the_check(tmp_path):
    # the counting itself must be able to fail
    run = FaultRun(tmp_path, devices=1, duration=1, broker="amqtt", fault_every=5, seed=1)
    # (no fault fits in the second: the run rates and counts, nothing else)
    report = run.run()
    assert report.ok and report.made > 1
    run.engine = db.make_engine(f"sqlite:///{tmp_path / 'collector.db'}")
    with run.engine.begin() as conn:
        conn.execute(delete(db.evaluations).where(db.evaluations.c.seq == 1))
    checked = Report(devices=1, seconds=0, drained=True)
    run.count({"kp-fault-00": (report.made, {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0})}, checked)
    assert checked.missing == ["kp-fault-00:1"]
    assert checked.count_mismatches and not checked.ok
    run.engine.dispose()


def test_the_command_reports_pass(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hcp", "sim", "fault", "--devices", "2", "--duration", "2",
         "--fault-every", "0.7", "--broker", "amqtt", "--seed", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS: nothing lost, nothing twice" in result.stdout


@pytest.mark.long  # `make test-long`; `make fault-processes` runs a longer one
def test_real_processes_killed_with_sigkill_lose_nothing(tmp_path, postgres_url):
    """Mosquitto (persistent), two collectors sharing the ingest and the keypad
    hosts, each killed with SIGKILL and started again, on PostgreSQL."""
    from hcp.fault_processes import KINDS, ProcessFaultRun

    require_kind("mosquitto")
    report = ProcessFaultRun(tmp_path, devices=4, collectors=2, hosts=2, duration=12,
                             fault_every=1.3, database_url=postgres_url, seed=5).run()  # fmt: skip
    assert set(report.faults) == set(KINDS), "every kind of process was killed"
    assert report.made > 0 and report.drained
    assert report.missing == [] and report.unexpected == []
    assert report.count_mismatches == [] and report.quarantined == 0
    assert report.stored == report.made and report.ok
    # access control on: the anonymous client refused, everyone let in by a login
    assert report.anonymous_answer == NOT_AUTHORIZED
    log = (tmp_path / "broker" / "mosquitto.log").read_text()
    assert ANONYMOUS_REFUSED in log
    collectors = {"hcp-collector", "hcp-collector-2"}
    assert set(logins_let_in(log)) == collectors | {f"kp-pf-{n:02d}" for n in range(4)}
