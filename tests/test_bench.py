"""`hcp bench` runs end to end and writes its figures (timings are never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(tmp_path, *args):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "hcp", "bench", "--broker", "amqtt", "--output", str(output),
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(output.read_text()), result.stdout


def test_bench_writes_its_ingest_ladder(tmp_path):
    figures, stdout = bench(
        tmp_path, "--only", "ingest", "--records", "300", "--devices", "3", "--batches", "1,50",
        "--databases", "sqlite",
    )  # fmt: skip
    assert figures["broker"] == "amqtt" and set(figures) >= {"ingest", "machine", "when"}
    assert [(row["database"], row["batch"], row["records"]) for row in figures["ingest"]] == [
        ("sqlite", 1, 300),
        ("sqlite", 50, 300),
    ]
    for row in figures["ingest"]:
        assert row["collector"] == "own process"
        assert row["durable_records_per_s"] > 0 and row["baseline_records_per_s"] > 0
        assert row["ratio_durable_to_baseline"] > 0
    assert "durable against a subscriber that only counts" in stdout


def test_bench_backlog_and_latency_drain_everything(tmp_path):
    figures, stdout = bench(
        tmp_path, "--only", "latency,backlog", "--latency-keypads", "2", "--latency-ratings", "3",
        "--backlog-keypads", "3", "--backlog-records", "120",
    )  # fmt: skip
    latency, backlog = figures["latency"], figures["backlog"]
    assert latency["press_to_ack"]["count"] == 6 and latency["keypad_processes"] == 2
    assert latency["hops"]["tx_start->committed"]["count"] == 6  # the collector's stamps met
    assert "where the time goes" in stdout and "collector commits" in stdout
    assert backlog["records"] == 360 and backlog["drain_s"] > 0
    assert backlog["batches_sent"] >= 3 * 3  # 120 records: three batches of 50 at least
    assert backlog["all_online_s"] > 0
    assert set(backlog["cpu_s"]) == {"collector_plain_run", "collector_process", "keypad_processes"}
    assert all(stored <= 360 for _seconds, stored in backlog["timeline"])
    # three keypads, three batches each: every batch's wait for its ack, and two
    # turns from an ack to the next batch per keypad
    assert backlog["batch_sent_to_ack_ms"]["count"] == 9
    assert backlog["ack_to_next_batch_ms"]["count"] == 6
    assert "every keypad's store empty" in stdout and "batches sent" in stdout


def test_an_unknown_section_is_refused_with_the_choices():
    result = subprocess.run(
        [sys.executable, "-m", "hcp", "bench", "--only", "ingest,speed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        "choose from ingest, latency, backlog, heap, kiosk, figures, province: 'ingest,speed'"
        in result.stderr
    )


def test_the_stream_is_signed_and_split_into_batches():
    from hcp.bench import make_stream
    from protocols import messages, sign

    stream, keys = make_stream(devices=2, records=250, batch=50)
    assert sum(count for _, _, count in stream) == 250
    assert [count for _, _, count in stream] == [50, 50, 25, 50, 50, 25]
    topic, payload, _ = stream[2]
    batch = messages.decode(payload, messages.EV)
    assert topic == f"hcp/v1/dev/{batch['device_id']}/up/ev"
    assert all(sign.verify(r, keys[batch["device_id"]]) for r in batch["records"])


def test_bench_runs_the_figures_and_province_sections(tmp_path):
    figures, stdout = bench(
        tmp_path, "--only", "figures,province", "--figures-ratings", "2000",
        "--databases", "sqlite", "--province-items", "20",
    )  # fmt: skip
    assert set(figures) >= {"figures", "province"}
    province = figures["province"]
    assert province["items_acknowledged"] >= 20
    assert province["store_to_ack_ms"]["p50"] > 0 and province["ratio_p50"] > 0
    assert "store -> province acknowledged" in stdout
    assert figures["figures"], stdout
