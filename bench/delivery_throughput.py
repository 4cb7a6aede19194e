"""Delivery throughput of one delivery-service process: events posted through the real
ingest API (with a real token, checked by TokenReview/SubjectAccessReview), delivered to a
local receiver, on the real local control plane.

    .venv/bin/python -m bench.delivery_throughput --events 5000 --endpoints 1
    .venv/bin/python -m bench.delivery_throughput --events 1000 --endpoints 10
    .venv/bin/python -m bench.delivery_throughput --store postgresql://... (an empty database)
    .venv/bin/python -m bench.delivery_throughput --smoke          (tiny, for CI)

Traffic stays on 127.0.0.1; the loop is bounded by --events and --timeout."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import httpx

from bench.harness import HERE, rss_mb, running


async def post_events(url: str, token: str, events: int, concurrency: int) -> float:
    body = json.dumps({"type": "bench.event", "data": {"x": "y" * 900}}).encode()  # ~1 KB
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sem = asyncio.Semaphore(concurrency)
    started = time.time()
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with sem, session.post(url, data=body, headers=headers) as response:
                if response.status != 202:
                    raise RuntimeError(
                        f"ingest answered {response.status}: {await response.text()}"
                    )

        await asyncio.gather(*(one() for _ in range(events)))
    return time.time() - started


def run(args: argparse.Namespace) -> dict[str, object]:
    with running(args.endpoints, args.store, args.settle) as setup:
        idle_rss = rss_mb(setup.delivery_pid)
        expected = args.events * args.endpoints
        started = time.time()
        post_seconds = asyncio.run(
            post_events(setup.ingest_url, setup.token, args.events, args.concurrency)
        )
        peak_rss = rss_mb(setup.delivery_pid)
        deadline = started + args.timeout
        stats: dict[str, float] = {"count": 0}
        while time.time() < deadline:
            stats = httpx.get(f"{setup.receiver}/stats", timeout=5).json()
            peak_rss = max(peak_rss, rss_mb(setup.delivery_pid))
            if stats["count"] >= expected:
                break
            time.sleep(0.2)
        elapsed = (stats.get("last") or time.time()) - started
        return {
            "store": setup.store,
            "events": args.events,
            "endpoints": args.endpoints,
            "deliveries_expected": expected,
            "deliveries_received": int(stats["count"]),
            "seconds": round(elapsed, 3),
            "deliveries_per_second": round(stats["count"] / elapsed, 1) if elapsed > 0 else 0,
            "ingest_seconds": round(post_seconds, 3),
            "events_per_second_ingest": round(args.events / post_seconds, 1),
            "rss_mb_idle": round(idle_rss, 1),
            "rss_mb_peak": round(peak_rss, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--store", default=None)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.timeout = 50, 60
    result = run(args)
    print(json.dumps(result, indent=2))
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        name = f"throughput-{result['store']}-{args.endpoints}ep.json"
        (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    if result["deliveries_received"] != result["deliveries_expected"]:
        sys.exit(f"only {result['deliveries_received']} of {result['deliveries_expected']} arrived")


if __name__ == "__main__":
    main()
