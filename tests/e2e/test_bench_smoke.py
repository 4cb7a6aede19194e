"""The benchmarks' pipelines in miniature, so the benchmarks cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench import cpu_quota

REPO = Path(__file__).resolve().parents[2]


def run_module(module: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def smoke(module: str) -> dict[str, float]:
    output = run_module(module, "--smoke")
    figures: dict[str, float] = json.loads(output[output.index("{") :])
    return figures


def test_throughput_benchmark_smoke() -> None:
    figures = smoke("bench.delivery_throughput")
    assert figures["deliveries_received"] == figures["deliveries_expected"] == 50
    assert figures["deliveries_per_second"] > 0


def test_batch_ingest_benchmark_smoke() -> None:
    output = run_module("bench.ingest_batch", "--smoke", "--batch", "10")
    figures = json.loads(output[output.index("{") :])
    assert figures["deliveries_received"] == figures["deliveries_expected"] == 50
    assert figures["batch"] == 10


@pytest.mark.skipif(
    not os.access(cpu_quota.CGROUP, os.W_OK) and not os.access(cpu_quota.CGROUP / "cpu", os.W_OK),
    reason="a CPU limit needs write access to /sys/fs/cgroup (root)",
)
def test_throughput_benchmark_with_a_cpu_limit_smoke() -> None:
    output = run_module("bench.delivery_throughput", "--smoke", "--cpu-limit", "0.5")
    figures = json.loads(output[output.index("{") :])
    assert figures["deliveries_received"] == figures["deliveries_expected"] == 50
    assert figures["cpu_limit_per_process"] == 0.5


def test_latency_benchmark_smoke() -> None:
    figures = smoke("bench.delivery_latency")
    assert figures["deliveries_received"] == figures["deliveries_expected"] == 100
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_operator_scale_benchmark_smoke() -> None:
    figures = smoke("bench.operator_scale")
    assert figures["ready"] == figures["endpoints"] == 20
    assert figures["ratio_to_bare_client"] > 0
    for key in (
        "steady_window_seconds",
        "steady_api_writes_per_minute",
        "steady_api_writes_per_minute_by_resource",
        "steady_endpoint_status_writes_per_minute",
        "steady_status_writes_per_live_endpoint_per_10s",
        "steady_status_writes_most_in_10s",
        "steady_idle_endpoints_written",
        "steady_endpoint_writes_without_change",
        "steady_target_met",
    ):
        assert key in figures, key
    assert figures["steady_warm"] is True
    assert figures["steady_deliveries_per_second"] > 0


def test_recovery_benchmark_smoke() -> None:
    figures = smoke("bench.recovery")
    assert figures["held_before_enable"] == figures["deliveries"] == 200
    assert figures["delivered_while_paused"] == 0
    assert figures["deliveries_received"] == 200
    # The drain cannot beat the rate limit: (200 - burst) / 100 per second at the least.
    assert figures["ratio_to_ideal"] >= 0.9
    assert figures["max_in_any_second"] > 0


def test_ceiling_benchmark_smoke() -> None:
    figures = smoke("bench.ceiling")
    assert figures["aiohttp"]["deliveries_per_second"] > 0  # type: ignore[index]
    assert figures["httpx"]["deliveries_per_second"] > 0  # type: ignore[index]


def test_portal_benchmark_smoke() -> None:
    figures: Any = smoke("bench.portal")
    tickets = figures["tickets"]
    for key in ("encode_us", "decode_us", "tenant_check_us"):
        assert tickets[key] > 0, key
    assert figures["endpoints_per_namespace"] == 20
    assert figures["deliveries_received"] == figures["events_emitted"] == 10
    for key in ("list_one_app", "list_spread", "get_endpoint", "deliveries", "deliveries_direct"):
        route = figures["routes"][key]
        assert route["ok"] == route["requests"] == 50, (key, route["statuses"])
        assert 0 < route["p50_ms"] <= route["p99_ms"] <= route["max_ms"], key
    assert (
        figures["routes"]["list_one_app"]["answer_bytes"]
        > (figures["routes"]["list_spread"]["answer_bytes"])
    )


def test_import_memory_benchmark_runs() -> None:
    rows = {row["module"]: row for row in json.loads(run_module("bench.import_memory", "--json"))}
    assert rows["webhook_operator.delivery.service"]["rss_mb"] > rows["(interpreter)"]["rss_mb"]


def test_filter_ingest_benchmark_smoke() -> None:
    figures: Any = smoke("bench.filter_ingest")
    assert figures["endpoints"] == 10
    assert figures["events_per_second_without_filters"] > 0
    assert figures["events_per_second_with_filters"] > 0
    assert figures["build_us_per_event_without_filters"] > 0
    assert figures["build_us_per_event_with_filters"] > 0


def test_cel_library_comparison_runs() -> None:
    output = run_module("bench.cel_libraries", "--smoke")
    results = json.loads(output[: output.rindex("]") + 1])
    chosen = next(r for r in results if r["library"] == "cel-expr-python")
    assert chosen["installed"]
    assert chosen["one_filter_us"] > 0
