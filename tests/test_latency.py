"""hcp.latency on a real broker and collector: every key press is timed to its ack."""

import json

import pytest

from hcp.latency import (
    HOPS,
    Latencies,
    baseline_count,
    fsync_round_trip,
    hop_figures,
    measure,
    split,
)
from hcp.latency_probe import _batch_of, read_lags, read_marks


def test_percentiles_pick_the_sample_at_or_above_the_rank():
    lat = Latencies([float(n) for n in range(1, 101)])
    assert (lat.percentile(50), lat.percentile(95), lat.percentile(99)) == (50.0, 95.0, 99.0)
    assert Latencies([7.0]).percentile(99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        Latencies().percentile(50)


def test_the_baseline_times_as_many_round_trips_as_ratings_within_bounds():
    assert [baseline_count(n) for n in (1, 20, 300, 2000)] == [20, 20, 300, 500]


def test_keypads_are_dealt_round_to_the_processes_none_left_empty():
    assert split(list(range(5)), 2) == [[0, 2, 4], [1, 3]]
    assert split(list(range(2)), 4) == [[0], [1]]  # no process without a keypad
    assert split(list(range(3)), 0) == [[0, 1, 2]]  # threads of the caller: one host


def test_the_probe_names_the_device_and_batch_of_a_batch_message_only():
    assert _batch_of("hcp/v1/dev/kp-1/up/ev", b'{"batch":12,"device_id":"kp-1"}') == ("kp-1", 12)
    assert _batch_of("hcp/v1/dev/kp-1/up/status", b'{"online":true}') is None
    assert _batch_of("hcp/v1/dev/kp-1/up/ev", b'{"device_id":"kp-1"}') is None
    assert _batch_of("elsewhere/x", b'{"batch":1}') is None


def test_marks_keep_the_first_time_of_each_kind_and_the_group_size(tmp_path):
    path = tmp_path / "marks.jsonl"
    rows = [["received", 1.0, "kp-1", 3, 0], ["received", 1.5, "kp-1", 3, 0],
            ["tx_start", 2.0, "kp-1", 3, 4], ["committed", 2.5, "kp-1", 3, 4]]  # fmt: skip
    rows.append(["lag", 0.25, "", 0, 0])  # the collector process's sleep lag, not a batch
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert read_marks(path) == {
        ("kp-1", 3): {"received": 1.0, "tx_start": 2.0, "committed": 2.5, "group": 4}
    }
    assert read_lags(path) == [0.25]


def test_the_fsync_baseline_times_each_append_and_leaves_nothing_behind(tmp_path):
    assert len(fsync_round_trip(tmp_path, count=5).samples) == 5
    assert list(tmp_path.iterdir()) == []


def test_each_rating_is_split_into_its_hops_and_the_tail_is_named():
    # 100 ratings of 10 ms each; rating 7 spent 500 ms more waiting for its commit
    pressed, added, acked, acked_in, sent, marks = {}, {}, {}, {}, {}, {}
    for seq in range(1, 101):
        t = seq * 10.0
        slow = 0.5 if seq == 7 else 0.0
        pressed[seq], added[seq] = t, t + 0.001
        sent[seq], acked_in[seq] = t + 0.002, seq
        marks[("kp-1", seq)] = {"received": t + 0.003, "prepared": t + 0.004,
                                "tx_start": t + 0.005, "committed": t + 0.006 + slow,
                                "ack_sent": t + 0.007 + slow, "group": 2}  # fmt: skip
        acked[seq] = t + 0.010 + slow
    keypad = {"device_id": "kp-1", "pressed": pressed, "added": added, "acked": acked,
              "acked_in": acked_in, "sent": sent}  # fmt: skip
    figures = hop_figures([keypad], marks)
    assert list(figures["hops"]) == [f"{a}->{b}" for a, b, _ in HOPS]
    commit = figures["hops"]["tx_start->committed"]
    assert commit["count"] == 100 and commit["p50_ms"] == pytest.approx(1.0)
    assert commit["tail_mean_ms"] == pytest.approx(501.0)  # the slowest 1 %: rating 7
    assert figures["hops"]["ack_sent->acked"]["p50_ms"] == pytest.approx(3.0)
    assert figures["tail_ratings"] == 1 and figures["group_messages_mean"] == 2
    assert figures["slowest"][0]["press_to_ack_ms"] == pytest.approx(510.0)
    assert figures["slowest"][0]["tx_start->committed"] == pytest.approx(501.0)


@pytest.mark.broker
def test_every_press_of_a_small_run_is_acked_timed_and_split_into_hops(tmp_path):
    result = measure(keypads=2, ratings=4, workdir=str(tmp_path), processes=2)
    assert result["ratings"] == 8 and result["keypad_processes"] == 2
    assert result["press_to_ack"]["count"] == 8 and result["write_to_ack"]["count"] == 8
    # the press comes before the record's write, which comes before its ack
    assert result["press_to_ack"]["p50_ms"] >= result["write_to_ack"]["p50_ms"] > 0
    assert result["broker_round_trip"]["count"] == 20  # as many as the ratings, at least 20
    assert result["collector"] == "own process"
    # every hop of every rating was seen: the keypads' stamps and the collector's meet
    assert {hop: row["count"] for hop, row in result["hops"].items()} == {
        f"{a}->{b}": 8 for a, b, _ in HOPS
    }
    assert result["commit_ms"]["count"] >= 1 and result["loop_lag"]["count"] > 0
    assert result["collector_loop_lag"]["count"] > 0 and result["fsync"]["count"] == 200


@pytest.mark.broker
def test_keypads_in_the_callers_process_without_the_trace(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    result = measure(keypads=2, ratings=2, workdir=str(tmp_path / "run"), processes=0,
                     trace=False, keypad_dir=str(flash))  # fmt: skip
    assert result["press_to_ack"]["count"] == 4 and result["keypad_processes"] == 0
    assert "hops" not in result
    # the keypads' journals were in their own folder (removed after the run), not the run's
    assert not list((tmp_path / "run").glob("lat-*")) and list(flash.iterdir()) == []
