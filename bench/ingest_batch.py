"""Delivery throughput with the batch ingest route: the run of bench.delivery_throughput
(same setup, receiver, ceiling and report), with the events posted `--batch` at a time to
POST .../events:batch instead of one per request. What a producer that emits many gains:
one request, one token check and one answer per batch instead of per event.

    .venv/bin/python -m bench.ingest_batch --events 10000 --endpoints 1 --batch 100
    .venv/bin/python -m bench.ingest_batch --store postgres --processes 2
    .venv/bin/python -m bench.ingest_batch --smoke          (tiny, for CI)

Traffic stays on 127.0.0.1; the loop is bounded by --events and --timeout."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time

import aiohttp

from bench import delivery_throughput
from bench.report import publish

EVENT = {"type": "bench.event", "data": {"x": "y" * 900}}  # as delivery_throughput's ~1 KB


async def post_batches(
    url: str | list[str], token: str, events: int, concurrency: int, batch: int
) -> float:
    """POST `events` ~1 KB events in batches of `batch`, `concurrency` batches in flight, to
    one ingest URL or to several in turn; returns the seconds taken."""
    urls = itertools.cycle([f"{u}:batch" for u in ([url] if isinstance(url, str) else url)])
    sizes = [batch] * (events // batch) + ([events % batch] if events % batch else [])
    bodies = {size: json.dumps({"events": [EVENT] * size}).encode() for size in set(sizes)}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sem = asyncio.Semaphore(concurrency)
    started = time.time()
    async with aiohttp.ClientSession() as session:

        async def one(target: str, size: int) -> None:
            async with sem, session.post(target, data=bodies[size], headers=headers) as response:
                answer = await response.json()
                if response.status != 200 or answer.get("accepted") != size:
                    raise RuntimeError(f"batch ingest answered {response.status}: {answer}")

        await asyncio.gather(*(one(next(urls), size) for size in sizes))
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    delivery_throughput.add_run_arguments(parser)
    parser.add_argument("--batch", type=int, default=100, help="events per request, 1 to 100")
    parser.add_argument("--concurrency", type=int, default=4, help="batches in flight")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.timeout = 50, 60

    async def batched(url: str | list[str], token: str, events: int, concurrency: int) -> float:
        return await post_batches(url, token, events, concurrency, args.batch)

    # The whole run is delivery_throughput's; only the way events are posted differs.
    delivery_throughput.post_events = batched
    result = {**delivery_throughput.run(args), "batch": args.batch}
    limit = f"-cpu{args.cpu_limit:g}" if args.cpu_limit else ""
    name = (
        f"throughput-batch{args.batch}-{result['store']}-{args.processes}p-{args.endpoints}ep"
        f"{limit}.json"
    )
    table = delivery_throughput.table(result) + f"\n(events posted {args.batch} per request)"
    publish(result, table, args.out, name, args.smoke)
    if result["deliveries_received"] != result["deliveries_expected"]:
        sys.exit(f"only {result['deliveries_received']} of {result['deliveries_expected']} arrived")


if __name__ == "__main__":
    main()
