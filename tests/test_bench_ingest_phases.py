"""hcp.bench_ingest_phases: the ingest's time per phase (timings never asserted)."""

from hcp import bench_ingest_phases
from sync_server import features, ingest


def test_every_phase_is_timed_and_every_record_stored(capsys):
    originals = (ingest.classify, ingest.Ingestor.__dict__["_decode_batch"], features.after_store)
    assert bench_ingest_phases.main(["--batch", "10", "--records", "200", "--group", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sqlite, batches of 10, groups of 5: 200 records in ")
    for label in (
        "store run (all of it)",
        "classify (check, verify)",
        "decode",
        "look-up of stored ids",
        "insert (with before steps)",
        "signed acks",
        "after steps (all)",
        "channels.before_store",
        "figures.after_store",
        "cases.after_store",
        "outbox.after_store",
        "CPU time of this process",
    ):
        assert f"  {label} " in out, label
    # the functions are themselves again afterwards
    assert originals == (
        ingest.classify,
        ingest.Ingestor.__dict__["_decode_batch"],
        features.after_store,
    )
