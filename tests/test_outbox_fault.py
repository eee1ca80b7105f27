"""The fault run, briefly, on both databases (sync_server/outbox_fault.py):
the province down, slow, failing at random, answering garbage and refusing
without a reason, while ratings are stored and the sender process is killed
twice. Afterwards every event and rating is at the province exactly once, in
order, times unchanged; dead letters are exactly the planted refusals.

`make test` runs it on SQLite; the PostgreSQL run is `long` (`make test-long`).
On PostgreSQL, `make test` proves the same: nothing lost or twice, in order,
through the province's moods and two kills (one in flight) by the crash run
(tests/test_outbox_crash.py, PostgreSQL), and a refusal without a reason
kept as a clear dead state, each bad answer on its own, by
tests/test_outbox.py on both databases."""

from __future__ import annotations

import pytest

from sync_server import outbox_fault
from tests.harness import shared_worlds

# PostgreSQL migrated once per test process and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.long)], indirect=True
)
def test_nothing_lost_nothing_twice_in_order_through_faults_and_kills(engine, tmp_path):
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    result = outbox_fault.run(url, seconds=6, workdir=tmp_path)
    assert result["problems"] == []
    assert result["ok"] and result["kills"] == 2
    assert result["states"]["dead"] == result["planted_refusals"] > 0
    assert result["refused_items"] == result["planted_refusals"]
    assert result["states"]["skipped"] == result["repeats"] > 0
    assert set(result["states"]) == {"acked", "dead", "skipped"}
    assert result["province_counts"]["faults"] >= 8  # each bad mood met twice or more
