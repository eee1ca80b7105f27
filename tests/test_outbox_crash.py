"""The crash run, briefly (sync_server/outbox_crash.py): keypads rate through
a real broker into `hcp collector serve`, which is killed with SIGKILL twice
(once while a request to the province is in flight) while the province is
down, slow, failing, answering garbage and refusing without a reason.
Afterwards every service event and rating is at the province exactly once,
in order, times unchanged; the 差评 held for their reason went once the
call-back recorded it; nothing is left waiting.

`make test` runs it on PostgreSQL; the SQLite run is `long` (`make
test-long`). On SQLite, `make test` proves the same: nothing lost or twice,
in order, through the province's moods and two kills of the sending process
(one in flight) by the fault run (tests/test_outbox_fault.py, SQLite), and
the 差评 held until its reason by tests/test_outbox_reasons.py on both
databases.

The broker runs with access control on (hcp/fault_processes.py's
start_run_broker): its log shows the anonymous client refused and every
connection it let in made with a login, the keypads' and the collector's."""

from __future__ import annotations

import pytest

from hcp.broker import MosquittoBroker
from sync_server import outbox_crash
from tests.harness import shared_worlds
from tests.harness.broker import ANONYMOUS_REFUSED, logins_let_in

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@pytest.mark.skipif(not MosquittoBroker.available(), reason="needs mosquitto")
@pytest.mark.parametrize(
    "engine", [pytest.param("sqlite", marks=pytest.mark.long), "postgresql"], indirect=True
)
def test_the_collector_killed_mid_flight_loses_and_doubles_nothing(engine, tmp_path):
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    result = outbox_crash.run(url, seconds=8, keypads=3, workdir=tmp_path)
    assert result["problems"] == []
    assert result["ok"] and result["drained"] and result["kills"] == 2
    assert result["killed_in_flight"]
    assert result["ratings"] > 30 and result["events"] >= result["ratings"]
    assert result["held_then_sent"] > 0  # some 差评 waited for their reason
    assert set(result["states"]) == {"acked"}
    assert result["province_counts"]["faults"] >= 8  # each bad mood met twice or more
    log = (tmp_path / "broker" / "mosquitto.log").read_text()
    assert ANONYMOUS_REFUSED in log
    keypads = {f"kp-crash-{n:02d}" for n in (1, 2, 3)}
    assert set(logins_let_in(log)) == keypads | {"hcp-collector"}
