"""`hcp bench` runs end to end and writes its figures (timings are never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_writes_its_results(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "hcp", "bench", "--records", "300", "--devices", "3",
         "--broker", "amqtt", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(output.read_text())
    assert figures["records"] == 300 and figures["broker"] == "amqtt"
    assert figures["durable_records_per_s"] > 0 and figures["baseline_records_per_s"] > 0
    assert "ratio durable / baseline" in result.stdout


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
