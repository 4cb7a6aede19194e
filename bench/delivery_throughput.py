"""Delivery throughput, saturated: events posted through the real ingest API (with a real
ServiceAccount token, checked by TokenReview/SubjectAccessReview), delivered signed to the
compiled local receiver, on the real local control plane. In the same run, the ceiling:
bare client loops (no storage, no queue) against the same receiver, and the receiver's
own capacity; `ratio_to_ceiling` is the pipeline's rate over the fastest bare loop.

    .venv/bin/python -m bench.delivery_throughput --events 10000 --endpoints 1
    .venv/bin/python -m bench.delivery_throughput --events 2000 --endpoints 10
    .venv/bin/python -m bench.delivery_throughput --store postgres --processes 2
    .venv/bin/python -m bench.delivery_throughput --store postgres --processes 2 --cpu-limit 0.4
    .venv/bin/python -m bench.delivery_throughput --smoke          (tiny, for CI)

`--store postgres` starts a throwaway local PostgreSQL server (or pass a DSN to an empty
database). With several processes (PostgreSQL only) the events are posted to them in turn.
`--cpu-limit CORES` holds each delivery process to that many CPUs, as a Pod's CPU limit
would (`bench/cpu_quota.py` says why: it shows how replicas scale where each has its own
cores, which two shared cores cannot show otherwise). Traffic stays on 127.0.0.1; the loop
is bounded by --events and --timeout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import ceiling, go_receiver
from bench.cpu_quota import cpu_limited, throttled_seconds
from bench.harness import HERE, rss_mb, running
from bench.report import columns, publish

# What each ceiling loop sends in a full run (httpx is slow at this concurrency; fewer
# requests keep its run short without changing its rate).
CEILING_DELIVERIES = {"http1": 10_000, "aiohttp": 10_000, "httpx": 2_000}
CEILING_CONCURRENCY = 50


async def post_events(url: str | list[str], token: str, events: int, concurrency: int) -> float:
    """POST `events` ~1 KB events, `concurrency` in flight, to one ingest URL or to several
    in turn; returns the seconds taken."""
    urls = itertools.cycle([url] if isinstance(url, str) else url)
    body = json.dumps({"type": "bench.event", "data": {"x": "y" * 900}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sem = asyncio.Semaphore(concurrency)
    started = time.time()
    async with aiohttp.ClientSession() as session:

        async def one(target: str) -> None:
            async with sem, session.post(target, data=body, headers=headers) as response:
                if response.status != 202:
                    raise RuntimeError(
                        f"ingest answered {response.status}: {await response.text()}"
                    )

        await asyncio.gather(*(one(next(urls)) for _ in range(events)))
    return time.time() - started


@dataclass(frozen=True)
class MachineCpu:
    """The machine's CPU time so far (/proc/stat, every core), busy and in all."""

    busy: int
    total: int

    def busy_since(self, before: MachineCpu) -> float:
        """The share of every core's time spent busy since `before`."""
        total = self.total - before.total
        return (self.busy - before.busy) / total if total else 0.0


def machine_cpu() -> MachineCpu:
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return MachineCpu(sum(fields) - idle, sum(fields))


def measure_ceilings(receiver: str, scale: float) -> dict[str, dict[str, object]]:
    return {
        client: ceiling.measure(receiver, max(int(count * scale), 50), CEILING_CONCURRENCY, client)
        for client, count in CEILING_DELIVERIES.items()
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    with contextlib.ExitStack() as stack:
        setup = stack.enter_context(
            running(args.endpoints, args.store, args.settle, processes=args.processes)
        )
        pids = setup.delivery_pids
        groups = stack.enter_context(cpu_limited(pids, args.cpu_limit)) if args.cpu_limit else []
        idle_rss = max(rss_mb(pid) for pid in pids)
        expected = args.events * args.endpoints
        receiver_cpu = go_receiver.cpu_seconds(setup.receiver_pid)
        delivery_cpu = sum(go_receiver.cpu_seconds(pid) for pid in pids)
        machine = machine_cpu()
        started = time.time()
        post_seconds = asyncio.run(
            post_events(setup.ingest_urls, setup.token, args.events, args.concurrency)
        )
        peak_rss = max(rss_mb(pid) for pid in pids)
        deadline = started + args.timeout
        stats: dict[str, float] = {"count": 0}
        while time.time() < deadline:
            stats = httpx.get(f"{setup.receiver}/stats", timeout=5).json()
            peak_rss = max(peak_rss, *(rss_mb(pid) for pid in pids))
            if stats["count"] >= expected:
                break
            time.sleep(0.1)
        elapsed = (stats.get("last") or time.time()) - started
        receiver_cpu = go_receiver.cpu_seconds(setup.receiver_pid) - receiver_cpu
        delivery_cpu = sum(go_receiver.cpu_seconds(pid) for pid in pids) - delivery_cpu
        machine_busy = machine_cpu().busy_since(machine)
        throttled = sum(throttled_seconds(group) for group in groups)
        rate = stats["count"] / elapsed if elapsed > 0 else 0.0
        batches = batch_rows(setup.metrics_url)
        # The ceiling in the same run: same machine state, same receiver process.
        ceilings = measure_ceilings(setup.receiver, 0.02 if args.smoke else 1.0)
    fastest = max(float(str(c["deliveries_per_second"])) for c in ceilings.values())
    capacity = go_receiver.selftest(2_000 if args.smoke else 50_000)
    return {
        "store": setup.store,
        "processes": args.processes,
        "cpu_limit_per_process": args.cpu_limit,
        "producer_concurrency": args.concurrency,
        "throttled_seconds": round(throttled, 2),
        "events": args.events,
        "endpoints": args.endpoints,
        "deliveries_expected": expected,
        "deliveries_received": int(stats["count"]),
        "seconds": round(elapsed, 3),
        "deliveries_per_second": round(rate, 1),
        "ingest_seconds": round(post_seconds, 3),
        "events_per_second_ingest": round(args.events / post_seconds, 1),
        "rss_mb_idle": round(idle_rss, 1),
        "rss_mb_peak": round(peak_rss, 1),
        "ceiling": ceilings,
        "ratio_to_ceiling": round(rate / fastest, 3) if fastest else 0.0,
        "receiver_cpu_share": round(receiver_cpu / elapsed, 3) if elapsed > 0 else 0.0,
        # What the delivery processes spent per delivery, and how busy the whole machine
        # was: where it is near 1, more processes cannot deliver more on these cores.
        "delivery_cpu_ms_per_delivery": (
            round(1000 * delivery_cpu / stats["count"], 3) if stats["count"] else 0.0
        ),
        "machine_cpu_busy": round(machine_busy, 3),
        # Mean rows per store batch in the first process: fewer rows per batch, more CPU
        # per delivery.
        "batch_rows_mean": batches,
        "receiver_capacity_per_second": round(capacity["requests_per_sec"], 1),
        "date": time.strftime("%Y-%m-%d"),
    }


def table(result: dict[str, object]) -> str:
    ceilings = result["ceiling"]
    assert isinstance(ceilings, dict)
    batches = result["batch_rows_mean"]
    assert isinstance(batches, dict)
    rows = [
        ("store / processes", f"{result['store']} / {result['processes']}"),
        ("CPU limit per process", str(result["cpu_limit_per_process"] or "none")),
        ("requests in flight (producer)", str(result["producer_concurrency"])),
        ("endpoints per event", str(result["endpoints"])),
        ("deliveries", f"{result['deliveries_received']:,} of {result['deliveries_expected']:,}"),
        ("deliveries/s", f"{result['deliveries_per_second']:,}"),
        ("ingest events/s", f"{result['events_per_second_ingest']:,}"),
        *(
            (f"ceiling {name} (bare loop)", f"{c['deliveries_per_second']:,}/s")
            for name, c in ceilings.items()
        ),
        ("ratio to the fastest ceiling", str(result["ratio_to_ceiling"])),
        ("receiver capacity (self-test)", f"{result['receiver_capacity_per_second']:,}/s"),
        ("receiver CPU during the run", f"{100 * float(str(result['receiver_cpu_share'])):.0f}%"),
        ("delivery RSS idle / peak", f"{result['rss_mb_idle']} / {result['rss_mb_peak']} MB"),
        ("delivery CPU per delivery", f"{result['delivery_cpu_ms_per_delivery']} ms"),
        ("machine CPU busy in the run", f"{100 * float(str(result['machine_cpu_busy'])):.0f}%"),
        ("rows per batch, first process", ", ".join(f"{op} {n}" for op, n in batches.items())),
    ]
    return columns(rows)


def batch_rows(metrics_url: str) -> dict[str, float]:
    """Mean rows per ingest commit, claim and result batch (`webhook_store_batch_rows`)."""
    text = httpx.get(metrics_url, timeout=5).text
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "webhook_store_batch_rows":
            continue
        for sample in family.samples:
            op = sample.labels["operation"]
            if sample.name.endswith("_sum"):
                sums[op] = sample.value
            elif sample.name.endswith("_count"):
                counts[op] = sample.value
    return {op: round(sums.get(op, 0) / n, 1) for op, n in counts.items() if n}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a run (store, processes, sizes, limits), shared with bench.ingest_batch,
    which makes the same run with events posted in batches."""
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (a fresh file), postgres (a throwaway local server) or a store URL",
    )
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument(
        "--cpu-limit",
        type=float,
        default=None,
        metavar="CORES",
        help="hold each delivery process to this many CPUs (a Pod's CPU limit)",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--out", type=Path, default=HERE / "results")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.smoke:
        args.events, args.timeout = 50, 60
    result = run(args)
    limit = f"-cpu{args.cpu_limit:g}" if args.cpu_limit else ""
    name = f"throughput-{result['store']}-{args.processes}p-{args.endpoints}ep{limit}.json"
    publish(result, table(result), args.out, name, args.smoke)
    if result["deliveries_received"] != result["deliveries_expected"]:
        sys.exit(f"only {result['deliveries_received']} of {result['deliveries_expected']} arrived")


if __name__ == "__main__":
    main()
