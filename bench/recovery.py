"""Recovery: deliveries held for a paused endpoint, drained after it is enabled again with
a rate limit, timed against the rate limit's ideal (deliveries / rate).

    .venv/bin/python -m bench.recovery --deliveries 10000 --rate 500
    .venv/bin/python -m bench.recovery --store postgresql://... (an empty database)
    .venv/bin/python -m bench.recovery --smoke          (tiny, for CI)
    .venv/bin/python -m bench.recovery --processes 3    (three replicas, PostgreSQL)

One endpoint is created with `active: false`; events posted through the real ingest API
are stored as held. Once the service reports them all held (and the receiver has seen
none), one patch sets `active: true` and `rateLimit: {perSecond: rate, burst: burst}`.
The clock runs from just before that patch is sent to the last arrival at the receiver,
so it includes the informer's propagation of the change and the release of the held rows.

The burst defaults to 1: the token bucket then allows at most one delivery at once and one
more every 1/rate seconds, so the fastest legal drain is (deliveries - 1) / rate, within
one slot of the ideal reported here (deliveries / rate). A larger burst lowers that floor
by (burst - 1) / rate. Finishing well under the ideal would mean the limit was not kept,
so `within_10_percent` is checked on both sides, and `max_in_any_second` (arrivals in the
busiest one-second span) should stay at or below rate + burst.

With --processes N, N delivery-service processes share one PostgreSQL database (a local
throwaway server unless --store names one) and the events are posted to them in turn, as
a Service spreads producers over replicas. The rate limit is the endpoint's, not each
process's: the drain is timed against the same ideal, so a limit enforced per replica
shows as a ratio near 1/N and a busiest second near N times the rate.

Traffic stays on 127.0.0.1; every wait is bounded by --timeout."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

from bench.delivery_throughput import post_events
from bench.harness import HERE, Setup, rss_mb, running
from bench.report import columns, publish
from webhook_operator.api.v1alpha1 import GROUP, VERSION
from webhook_operator.kube_client import connect

ENDPOINT = "ep-0"  # the harness names its endpoints ep-0..ep-N-1
HELD_GAUGE = "webhook_deliveries_held"


@dataclass
class Drain:
    received: int
    first: float  # epoch seconds of the first and last arrival; 0 when none arrived
    last: float
    peak_rss_mb: float


def gauge(metrics_text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def wait_held(setup: Setup, expected: int, timeout: float) -> int:
    """Wait until the service's held gauge shows every delivery held; it is refreshed every
    few seconds, so this also proves the rows are in the store, not just accepted."""
    deadline = time.time() + timeout
    held = 0
    while time.time() < deadline:
        text = httpx.get(setup.metrics_url, timeout=10).text
        held = int(gauge(text, HELD_GAUGE) or 0)
        if held >= expected:
            break
        time.sleep(0.5)
    return held


def receiver_stats(setup: Setup) -> dict[str, float]:
    stats: dict[str, float] = httpx.get(f"{setup.receiver}/stats", timeout=10).json()
    return stats


async def enable(kubeconfig: Path, rate: int, burst: int) -> float:
    """Patch the endpoint active with a rate limit; returns when the patch was sent.

    The client is built before the clock starts, so only the request itself is timed."""
    api = await connect(str(kubeconfig))
    custom: Any = client.CustomObjectsApi(api)
    patch = {"spec": {"active": True, "rateLimit": {"perSecond": rate, "burst": burst}}}
    try:
        started = time.time()
        await custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            "webhookendpoints",
            ENDPOINT,
            patch,
            _content_type="application/merge-patch+json",
        )
        return started
    finally:
        await api.close()


def max_rss(setup: Setup) -> float:
    """The largest delivery-service process (they share the work, so each is one share)."""
    return max(rss_mb(pid) for pid in setup.delivery_pids)


def wait_drained(setup: Setup, expected: int, deadline: float) -> Drain:
    stats: dict[str, float] = {"count": 0, "first": 0.0, "last": 0.0}
    peak = max_rss(setup)
    while time.time() < deadline:
        stats = receiver_stats(setup)
        peak = max(peak, max_rss(setup))
        if stats["count"] >= expected:
            break
        time.sleep(0.2)
    return Drain(int(stats["count"]), stats["first"], stats["last"], peak)


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most arrivals in any span of `width` seconds (two-pointer sweep)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def per_second(times: list[float], started: float) -> list[int]:
    """Arrivals in each whole second after `started`: shows where a drain bunched up."""
    counts: list[int] = []
    for at in times:
        second = max(0, int(at - started))
        counts.extend([0] * (second + 1 - len(counts)))
        counts[second] += 1
    return counts


def arrival_times(setup: Setup) -> list[float]:
    arrivals: dict[str, list[float]] = httpx.get(f"{setup.receiver}/arrivals", timeout=60).json()
    return [t for times in arrivals.values() for t in times]


def run(args: argparse.Namespace) -> dict[str, object]:
    with running(
        1, args.store, args.settle, spec={"active": False}, processes=args.processes
    ) as setup:
        idle_rss = max_rss(setup)
        post_seconds = asyncio.run(
            post_events(setup.ingest_urls, setup.token, args.deliveries, args.concurrency)
        )
        held = wait_held(setup, args.deliveries, timeout=60)
        early = int(receiver_stats(setup)["count"])  # must be 0: the endpoint is paused
        held_rss = max_rss(setup)
        started = asyncio.run(enable(setup.kubeconfig, args.rate, args.burst))
        drain = wait_drained(setup, args.deliveries, started + args.timeout)
        ideal = args.deliveries / args.rate
        seconds = (drain.last or time.time()) - started
        ratio = seconds / ideal
        times = arrival_times(setup)
        return {
            "store": setup.store,
            "processes": args.processes,
            "deliveries": args.deliveries,
            "held_before_enable": held,
            "delivered_while_paused": early,
            "deliveries_received": drain.received,
            "rate": args.rate,
            "burst": args.burst,
            "ideal_seconds": round(ideal, 3),
            "seconds": round(seconds, 3),
            "ratio_to_ideal": round(ratio, 3),
            "within_10_percent": 0.9 <= ratio <= 1.1,
            "achieved_per_second": round(drain.received / seconds, 1) if seconds > 0 else 0,
            "seconds_to_first_delivery": round(drain.first - started, 3) if drain.first else None,
            "max_in_any_second": max_in_window(times),
            "arrivals_per_second": per_second(times, started),
            "ingest_seconds": round(post_seconds, 3),
            "rss_mb_idle": round(idle_rss, 1),
            "rss_mb_held": round(held_rss, 1),
            "rss_mb_peak_drain": round(drain.peak_rss_mb, 1),
        }


def table(result: dict[str, object]) -> str:
    """Plain text, and free of braces: the smoke test reads the JSON from the first one."""
    rows = [
        ("store / processes", f"{result['store']} / {result['processes']}"),
        ("deliveries (held, then drained)", f"{result['deliveries']:,}"),
        ("rate limit", f"{result['rate']}/s, burst {result['burst']}"),
        ("ideal (deliveries / rate)", f"{result['ideal_seconds']} s"),
        ("measured (patch -> last arrival)", f"{result['seconds']} s"),
        (
            "ratio to ideal",
            f"{result['ratio_to_ideal']} (within 10 %: {result['within_10_percent']})",
        ),
        ("achieved rate", f"{result['achieved_per_second']}/s"),
        ("most arrivals in any 1 s", str(result["max_in_any_second"])),
        ("first delivery after patch", f"{result['seconds_to_first_delivery']} s"),
        (
            "delivery service RSS idle/held/peak (largest process)",
            f"{result['rss_mb_idle']} / {result['rss_mb_held']} / {result['rss_mb_peak_drain']} MB",
        ),
    ]
    return columns(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--store", default=None, help="a DSN, or postgres for a throwaway local server"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="delivery-service processes sharing the store (PostgreSQL when more than one)",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.smoke:
        args.deliveries, args.rate, args.timeout = 200, 100, 60
    if args.processes > 1 and args.store is None:
        args.store = "postgres"  # replicas share a database; SQLite is one process's
    result = run(args)
    # One process keeps the name the docs already cite.
    suffix = f"-{args.processes}p" if args.processes > 1 else ""
    name = f"recovery-{result['store']}{suffix}.json"
    publish(result, table(result), args.out, name, args.smoke)
    if result["deliveries_received"] != result["deliveries"]:
        sys.exit(f"only {result['deliveries_received']} of {result['deliveries']} arrived")
    if result["delivered_while_paused"]:
        sys.exit(f"{result['delivered_while_paused']} deliveries arrived while paused")


if __name__ == "__main__":
    main()
