"""The benchmark charts' data: result dicts turned into what bench.plots draws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import plots

THROUGHPUT_1 = {
    "store": "sqlite",
    "endpoints": 1,
    "deliveries_per_second": 914.9,
}
THROUGHPUT_1_TWO_PROCESSES = {
    "store": "sqlite",
    "endpoints": 1,
    "processes": 2,
    "deliveries_per_second": 1500.0,
    "ceiling": {
        "aiohttp": {"client": "aiohttp", "deliveries_per_second": 5000.0},
        "httpx": {"client": "httpx", "deliveries_per_second": 150.0},
    },
    "ratio_to_ceiling": 0.3,
}
THROUGHPUT_10 = {
    "store": "postgresql",
    "endpoints": 10,
    "deliveries_per_second": 932.0,
    "ceiling": {"aiohttp": {"deliveries_per_second": 6000.0}},
    "ratio_to_ceiling": {"aiohttp": 0.155, "httpx": 6.2},
}


def test_throughput_panels_per_endpoint_count_with_references() -> None:
    panels = plots.throughput_series(
        {
            "throughput-sqlite-1ep": THROUGHPUT_1,
            "throughput-sqlite-1ep-2p": THROUGHPUT_1_TWO_PROCESSES,
            "throughput-postgresql-10ep": THROUGHPUT_10,
            "latency-sqlite-1ep": {"endpoints": 1, "p99_ms": 3.0},
        }
    )
    assert [p.endpoints for p in panels] == [1, 10]
    one, ten = panels
    assert [(b.label, b.value) for b in one.bars] == [
        ("sqlite\n1 process", 914.9),
        ("sqlite\n2 processes", 1500.0),
    ]
    assert one.bars[0].note is None
    assert one.bars[1].note == "30% of ceiling"
    assert one.lines == {
        "ceiling, bare loop with aiohttp": 5000.0,
        "ceiling, bare loop with httpx": 150.0,
        "Svix": 952.0,
        "target": 1000.0,
    }
    assert ten.bars[0].note == "16% of aiohttp\n6.2x of httpx"
    assert ten.lines == {
        "ceiling, bare loop with aiohttp": 6000.0,
        "Svix": 3050.0,
        "target": 3500.0,
    }


def test_ceilings_of_several_runs_are_their_median() -> None:
    runs = {
        f"throughput-sqlite-1ep-{n}": {
            **THROUGHPUT_1,
            "ceiling": {"aiohttp": {"deliveries_per_second": rate}},
        }
        for n, rate in enumerate([4000.0, 6000.0, 5000.0])
    }
    (panel,) = plots.throughput_series(runs)
    assert panel.lines["ceiling, bare loop with aiohttp"] == 5000.0


def test_results_missing_keys_are_skipped_not_guessed() -> None:
    panels = plots.throughput_series(
        {
            "throughput-a": {"store": "sqlite", "endpoints": 1},
            "throughput-b": {"store": "sqlite", "endpoints": 3, "deliveries_per_second": "fast"},
            "throughput-c": {"endpoints": 3, "deliveries_per_second": 10, "ceiling": "none"},
        }
    )
    (panel,) = panels
    assert panel.endpoints == 3
    assert [(b.label, b.value) for b in panel.bars] == [("throughput-c\n1 process", 10.0)]
    assert panel.lines == {}  # no ceiling, and no reference figures for 3 endpoints
    assert plots.latency_series({"latency-x": {"endpoints": 1}}) == []
    assert plots.operator_scale_series({"operator-scale-9": {"endpoints": 9}}) == []


def test_latency_percentiles_and_reference_lines() -> None:
    (one, ten) = plots.latency_series(
        {
            "latency-sqlite-1ep": {
                "store": "sqlite",
                "endpoints": 1,
                "p50_ms": 2.5,
                "p95_ms": 5.1,
                "p99_ms": 11.5,
            },
            "latency-sqlite-10ep": {"store": "sqlite", "endpoints": 10, "p99_ms": 19.0},
        }
    )
    assert one.rows[0].percentiles == {"p50": 2.5, "p95": 5.1, "p99": 11.5}
    assert one.lines == {"target p99": 10.0, "Svix p99": 7.4}
    assert ten.rows[0].percentiles == {"p99": 19.0}
    assert ten.lines == {"target p99": 20.0, "Svix p99": 14.0}


def test_cdf_only_for_results_with_samples() -> None:
    samples = [float(n) for n in range(1, 5001)]
    series = plots.latency_cdf_series(
        {
            "latency-sqlite-1ep": {"store": "sqlite", "endpoints": 1, "latencies_ms": samples},
            "latency-sqlite-10ep": {"store": "sqlite", "endpoints": 10, "p99_ms": 3.0},
        }
    )
    ((label, xs, ys),) = series
    assert label == "sqlite, 1 process, 1 endpoint(s)"
    assert len(xs) <= plots.CDF_POINTS + 1
    assert xs == sorted(xs)
    assert (xs[-1], ys[-1]) == (5000.0, 1.0)
    assert ys[0] == pytest.approx(1 / 5000)


def test_cdf_of_nothing_is_empty() -> None:
    assert plots.cdf([]) == ([], [])
    assert plots.cdf([3.0, 1.0, 2.0]) == ([1.0, 2.0, 3.0], [1 / 3, 2 / 3, 1.0])


def test_operator_scale_sorted_by_size_with_ratio() -> None:
    rows = plots.operator_scale_series(
        {
            "operator-scale-5000": {
                "endpoints": 5000,
                "operator_seconds_to_all_ready": 100.0,
                "bare_client_seconds": 40.0,
            },
            "operator-scale-1000": {
                "endpoints": 1000,
                "operator_seconds_to_all_ready": 16.8,
                "bare_client_seconds": 5.9,
                "ratio_to_bare_client": 2.85,
            },
        }
    )
    assert [(r.endpoints, r.operator_seconds, r.ratio) for r in rows] == [
        (1000, 16.8, 2.85),
        (5000, 100.0, 2.5),
    ]


def test_load_results_skips_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "throughput-sqlite-1ep.json").write_text(json.dumps(THROUGHPUT_1))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "list.json").write_text("[]")
    assert plots.load_results(tmp_path) == {"throughput-sqlite-1ep": THROUGHPUT_1}


def test_render_writes_small_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = {
        "throughput-sqlite-1ep": THROUGHPUT_1_TWO_PROCESSES,
        "throughput-postgresql-10ep": THROUGHPUT_10,
        "latency-sqlite-1ep": {
            "store": "sqlite",
            "endpoints": 1,
            "p50_ms": 2.5,
            "p95_ms": 5.0,
            "p99_ms": 11.0,
            "latencies_ms": [1.0, 2.0, 3.0, 40.0],
        },
        "operator-scale-1000": {
            "endpoints": 1000,
            "operator_seconds_to_all_ready": 16.8,
            "bare_client_seconds": 5.9,
        },
    }
    written = plots.render(results, tmp_path / "out")
    assert [p.name for p in written] == [
        "throughput.png",
        "latency.png",
        "latency-cdf.png",
        "operator-scale.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < 300_000
