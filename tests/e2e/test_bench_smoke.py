"""The benchmarks' pipelines in miniature, so the benchmarks cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def smoke(module: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", module, "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures: dict[str, float] = json.loads(result.stdout[result.stdout.index("{") :])
    return figures


def test_throughput_benchmark_smoke() -> None:
    figures = smoke("bench.delivery_throughput")
    assert figures["deliveries_received"] == figures["deliveries_expected"] == 50
    assert figures["deliveries_per_second"] > 0


def test_latency_benchmark_smoke() -> None:
    figures = smoke("bench.delivery_latency")
    assert figures["deliveries_received"] == figures["deliveries_expected"] == 100
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_operator_scale_benchmark_smoke() -> None:
    figures = smoke("bench.operator_scale")
    assert figures["ready"] == figures["endpoints"] == 20
    assert figures["ratio_to_bare_client"] > 0
