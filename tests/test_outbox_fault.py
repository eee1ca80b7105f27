"""The fault run, briefly, on both databases (sync_server/outbox_fault.py):
the province down, slow, failing at random, answering garbage and refusing
without a reason, while ratings are stored and the sender process is killed
twice. Afterwards every event and rating is at the province exactly once, in
order, times unchanged; dead letters are exactly the planted refusals."""

from __future__ import annotations

from sync_server import outbox_fault
from tests.harness import shared_worlds

# PostgreSQL migrated once per module and emptied for each test
engine, migrated_postgres = shared_worlds.engine, shared_worlds.migrated_postgres


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
