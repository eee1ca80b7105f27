"""hcp.latency on a real broker and collector: every key press is timed to its ack."""

import pytest

from hcp.latency import Latencies, baseline_count, measure


def test_percentiles_pick_the_sample_at_or_above_the_rank():
    lat = Latencies([float(n) for n in range(1, 101)])
    assert (lat.percentile(50), lat.percentile(95), lat.percentile(99)) == (50.0, 95.0, 99.0)
    assert Latencies([7.0]).percentile(99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        Latencies().percentile(50)


def test_the_baseline_times_as_many_round_trips_as_ratings_within_bounds():
    assert [baseline_count(n) for n in (1, 20, 300, 2000)] == [20, 20, 300, 500]


@pytest.mark.broker
def test_every_press_of_a_small_run_is_acked_and_timed(tmp_path):
    result = measure(keypads=2, ratings=4, workdir=str(tmp_path))
    assert result["ratings"] == 8
    assert result["press_to_ack"]["count"] == 8 and result["write_to_ack"]["count"] == 8
    # the press comes before the record's write, which comes before its ack
    assert result["press_to_ack"]["p50_ms"] >= result["write_to_ack"]["p50_ms"] > 0
    assert result["broker_round_trip"]["count"] == 20  # as many as the ratings, at least 20
    assert result["collector"] == "own process"
