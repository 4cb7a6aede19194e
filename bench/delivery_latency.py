"""End-to-end latency (event POST sent -> receiver got the delivery) at a steady rate,
through the real ingest API and one delivery-service process.

    .venv/bin/python -m bench.delivery_latency --rate 200 --seconds 60 --endpoints 1
    .venv/bin/python -m bench.delivery_latency --rate 200 --seconds 60 --endpoints 10
    .venv/bin/python -m bench.delivery_latency --smoke

Events are sent on a fixed schedule (open loop: a slow answer does not delay the next
send). Traffic stays on 127.0.0.1; the run is bounded by --seconds."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

import aiohttp
import httpx

from bench import latency_stages as stages
from bench.harness import HERE, rss_mb, running
from bench.report import columns, publish


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


async def steady(
    url: str, token: str, rate: float, seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Send `rate` events per second for `seconds`; returns event id -> send time, and
    event id -> the time its 202 arrived."""
    body = json.dumps({"type": "bench.event", "data": {"x": "y" * 900}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent: dict[str, float] = {}
    acknowledged: dict[str, float] = {}
    total = int(rate * seconds)
    async with aiohttp.ClientSession() as session:

        async def one(at: float) -> None:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.json()
                if response.status != 202:
                    raise RuntimeError(f"ingest answered {response.status}: {payload}")
                sent[payload["eventId"]] = at
                acknowledged[payload["eventId"]] = time.time()

        start = time.time()
        tasks = []
        for n in range(total):
            at = start + n / rate
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(time.time())))
        await asyncio.gather(*tasks)
    return sent, acknowledged


def subsample(latencies: list[float], keep: int = 2000) -> list[float]:
    """Every k-th of the sorted latencies: enough for the CDF plot, small enough for JSON."""
    ordered = sorted(latencies)
    return [round(v, 3) for v in ordered[:: max(1, len(ordered) // keep)]]


def run(args: argparse.Namespace) -> dict[str, object]:
    with running(args.endpoints, args.store) as setup:
        idle_rss = rss_mb(setup.delivery_pid)
        # The load generator's own collector pauses would count as the service's latency;
        # the run is bounded, so it keeps its garbage until the end.
        gc.collect()
        gc.disable()
        try:
            sent, acknowledged = asyncio.run(
                steady(setup.ingest_url, setup.token, args.rate, args.seconds)
            )
        finally:
            gc.enable()
        peak_rss = rss_mb(setup.delivery_pid)
        expected = len(sent) * args.endpoints
        deadline = time.time() + 60
        arrivals: dict[str, list[float]] = {}
        while time.time() < deadline:
            arrivals = httpx.get(f"{setup.receiver}/arrivals", timeout=30).json()
            if sum(len(v) for v in arrivals.values()) >= expected:
                break
            time.sleep(0.5)
        latencies = [
            (t - sent[event_id]) * 1000
            for event_id, times in arrivals.items()
            if event_id in sent
            for t in times
        ]
        p50, p99, most = (
            percentile(latencies, 50),
            percentile(latencies, 99),
            max(latencies),
        )
        read = stages.read_sqlite if setup.store == "sqlite" else stages.read_postgres
        found = stages.timings(read(setup.store_url), sent, acknowledged)
        return {
            "store": setup.store,
            "endpoints": args.endpoints,
            "rate": args.rate,
            "seconds": args.seconds,
            "events": len(sent),
            "deliveries_expected": expected,
            "deliveries_received": len(latencies),
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "max_ms": round(max(latencies), 2),
            # Issue 18's targets, within one run: p99 <= 4 x p50, max <= 20 x p50.
            "p99_over_p50": round(p99 / p50, 2),
            "max_over_p50": round(most / p50, 2),
            "stages": stages.breakdown(found),
            "rss_mb_idle": round(idle_rss, 1),
            "rss_mb_end": round(peak_rss, 1),
            "date": time.strftime("%Y-%m-%d"),
            "samples_ms": [
                round(v, 3) for v in sorted(latencies)[:: max(1, len(latencies) // 2000)]
            ],
        }


def table(result: dict[str, object]) -> str:
    rows = [
        ("store / endpoints per event", f"{result['store']} / {result['endpoints']}"),
        ("rate", f"{result['rate']:g} events/s for {result['seconds']:g} s"),
        ("deliveries", f"{result['deliveries_received']:,} of {result['deliveries_expected']:,}"),
        (
            "latency p50 / p95 / p99 / max",
            " / ".join(f"{result[k]} ms" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        ),
        (
            "p99 / p50, max / p50 (targets 4, 20)",
            f"{result['p99_over_p50']} / {result['max_over_p50']}",
        ),
        ("delivery RSS idle / end", f"{result['rss_mb_idle']} / {result['rss_mb_end']} MB"),
    ]
    found = result.get("stages")
    for stage, figures in (found if isinstance(found, dict) else {}).items():
        rows.append(
            (
                f"  {stage}: p50 / p99 / max; slowest 1 %",
                f"{figures['p50_ms']} / {figures['p99_ms']} / {figures['max_ms']} ms;"
                f" {figures['tail_mean_ms']} ms",
            )
        )
    return columns(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--store", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.seconds = 50, 2
    result = run(args)
    name = f"latency-{result['store']}-{args.endpoints}ep.json"
    publish(result, table(result), args.out, name, args.smoke)
    if result["deliveries_received"] != result["deliveries_expected"]:
        sys.exit(f"only {result['deliveries_received']} of {result['deliveries_expected']} arrived")


if __name__ == "__main__":
    main()
