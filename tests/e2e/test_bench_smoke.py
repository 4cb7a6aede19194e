"""The benchmarks' pipelines in miniature, so the benchmarks cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "delivery_throughput.py"


def test_throughput_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout[result.stdout.index("{") :])
    assert figures["deliveries_received"] == figures["deliveries_expected"] == 50
    assert figures["deliveries_per_second"] > 0
