"""The latency benchmark's breakdown: which stage the slowest deliveries spent their time in."""

from __future__ import annotations

from bench.latency_stages import Timing, breakdown, timings


def test_the_tail_is_attributed_to_the_stage_that_was_slow() -> None:
    quick = [Timing(0.0, 0.002, 0.001, 0.002, 0.001) for _ in range(99)]
    slow_queue = Timing(0.0, 0.002, 0.001, 0.101, 0.001)  # 100 ms waiting to be claimed
    found = breakdown([*quick, slow_queue])
    assert found["queued"]["tail_mean_ms"] == 100.0
    assert found["queued"]["p50_ms"] == 1.0
    assert found["sent"]["tail_mean_ms"] == 1.0
    assert found["ingest"]["max_ms"] == 1.0


def test_only_deliveries_whose_post_was_answered_count() -> None:
    rows = [("evt_a", 1.0, 1.5, 0.01), ("evt_b", 2.0, 2.5, 0.01)]
    found = timings(rows, {"evt_a": 0.9}, {"evt_a": 1.1})
    assert found == [Timing(0.9, 1.1, 1.0, 1.5, 0.01)]
