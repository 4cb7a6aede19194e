"""The ceiling: a bare loop in one Python process on uvloop, the same receiver, the same
body and the same signing, no storage, no queue. Three clients: aiohttp (the fastest
general-purpose client measured on these machines), httpx (so the choice stays visible),
and the delivery service's own HTTP/1.1 client (`webhook_operator.delivery.http1`), now
the fastest; the throughput benchmark reports its ratio to the fastest of them.

    .venv/bin/python -m bench.ceiling --receiver http://127.0.0.1:PORT --deliveries 10000
    .venv/bin/python -m bench.ceiling --client httpx --deliveries 2000 --concurrency 50
    .venv/bin/python -m bench.ceiling --client http1 --deliveries 10000
    .venv/bin/python -m bench.ceiling --smoke      (own receiver, every client, 200 each)

Without --receiver it starts its own (the compiled one, bench/receiver_go/). Each request is
signed afresh as the delivery service's dispatcher signs it: a new event id, the current
timestamp, the Standard Webhooks headers under one 32-byte key, plus the Content-Type; the
body is the ~1 KB event delivery_throughput posts, in the envelope the service delivers.
`concurrency` requests are in flight at once on one keep-alive client. Prints one JSON
object; `measure()` runs it in a fresh process and returns that object. Traffic stays on
127.0.0.1; the loop is bounded by --deliveries."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Literal

import aiohttp
import httpx
import uvloop

from bench import go_receiver
from webhook_operator import __version__, ids
from webhook_operator.delivery import http1, ingest
from webhook_operator.devcluster.cluster import free_port
from webhook_operator.signing import webhook_headers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIENTS = ("aiohttp", "httpx", "http1")
USER_AGENT = f"webhook-operator/{__version__}"
TIME_LIMIT = 30.0  # per request: a bound, never reached against a local receiver
READ_LIMIT = 64 * 1024  # what the service's sender reads of a response at most

# What delivery_throughput posts to the ingest API (~1 KB).
BENCH_EVENT = json.dumps({"type": "bench.event", "data": {"x": "y" * 900}}).encode()

Client = Literal["aiohttp", "httpx", "http1"]


def delivery_payload(now: float | None = None) -> str:
    """The body the delivery service sends for delivery_throughput's event: its data in the
    Standard Webhooks envelope, built by the service's own ingest code."""
    at = time.time() if now is None else now
    return ingest.payload(ids.event_id(at), ingest.parse_body(BENCH_EVENT), at)


def signed_headers(keys: list[bytes], body: bytes) -> dict[str, str]:
    """What the dispatcher's `headers()` builds: the endpoint's headers (none here), the
    Content-Type, then the three Standard Webhooks headers for a new message."""
    headers: dict[str, str] = {}
    headers["Content-Type"] = "application/json"
    headers.update(webhook_headers(keys, ids.event_id(), int(time.time()), body))
    return headers


async def bare_loop(url: str, deliveries: int, concurrency: int, client: Client) -> float:
    """POST `deliveries` signed deliveries to `url` with `concurrency` in flight on one
    keep-alive client; raises on any non-2xx answer. Returns the wall seconds taken."""
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
    if deliveries < 0 or concurrency < 1:
        raise ValueError("deliveries must be >= 0 and concurrency >= 1")
    keys = [os.urandom(32)]
    payload = delivery_payload()
    remaining = deliveries

    def take() -> bool:
        nonlocal remaining
        if remaining <= 0:
            return False
        remaining -= 1
        return True

    def check(status: int, text: bytes) -> None:
        if not 200 <= status < 300:
            raise RuntimeError(f"the receiver answered {status}: {text[:200]!r}")

    workers = min(concurrency, max(deliveries, 1))
    if client == "aiohttp":
        # The same session settings as the service's sender (webhook_operator.delivery.sender).
        connector = aiohttp.TCPConnector(limit=max(1000, concurrency), limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=TIME_LIMIT)
        async with aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT}, auto_decompress=False
        ) as session:

            async def worker_aiohttp() -> None:
                while take():
                    body = payload.encode()
                    async with session.post(
                        url,
                        data=body,
                        headers=signed_headers(keys, body),
                        allow_redirects=False,
                        timeout=timeout,
                    ) as response:
                        data = await response.content.read(READ_LIMIT)
                        check(response.status, data)

            started = time.perf_counter()
            await asyncio.gather(*(worker_aiohttp() for _ in range(workers)))
            return time.perf_counter() - started

    if client == "http1":
        # The delivery service's own client (webhook_operator.delivery.http1), with the
        # address check left out: this loop only ever talks to the loopback receiver.
        async def loopback(host: str, port: int) -> list[str]:
            return [host]

        pool = http1.ConnectionPool(loopback, USER_AGENT)

        async def worker_http1() -> None:
            while take():
                body = payload.encode()
                answer = await pool.post(url, signed_headers(keys, body), body, TIME_LIMIT)
                check(answer.status, answer.body)

        started = time.perf_counter()
        try:
            await asyncio.gather(*(worker_http1() for _ in range(workers)))
        finally:
            await pool.close()
        return time.perf_counter() - started

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        limits=limits,
        timeout=httpx.Timeout(TIME_LIMIT),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    ) as http:

        async def worker_httpx() -> None:
            while take():
                body = payload.encode()
                response = await http.post(url, content=body, headers=signed_headers(keys, body))
                check(response.status_code, response.content)

        started = time.perf_counter()
        await asyncio.gather(*(worker_httpx() for _ in range(workers)))
        return time.perf_counter() - started


def run_loop(
    url: str, deliveries: int, concurrency: int, client: Client, use_uvloop: bool
) -> dict[str, object]:
    """Run the bare loop in this process and return the result object the CLI prints."""
    runner = uvloop.run if use_uvloop else asyncio.run
    cpu_started = time.process_time()
    seconds = runner(bare_loop(url, deliveries, concurrency, client))
    cpu_seconds = time.process_time() - cpu_started
    return {
        "client": client,
        "uvloop": use_uvloop,
        "deliveries": deliveries,
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "deliveries_per_second": round(deliveries / seconds, 1) if seconds > 0 else 0.0,
        "cpu_seconds": round(cpu_seconds, 3),
    }


def measure(
    receiver: str,
    deliveries: int,
    concurrency: int,
    client: str,
    uvloop: bool = True,
    timeout: float | None = 900,
) -> dict[str, object]:
    """The ceiling measured in a fresh Python process (so nothing of the caller's event
    loop, imports or heap weighs on it): runs `python -m bench.ceiling` and returns the
    JSON object it prints."""
    command = [
        sys.executable,
        "-m",
        "bench.ceiling",
        f"--receiver={receiver}",
        f"--deliveries={deliveries}",
        f"--concurrency={concurrency}",
        f"--client={client}",
        "--uvloop" if uvloop else "--no-uvloop",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"bench.ceiling ({client}) exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def receiver_stats(receiver: str) -> dict[str, float]:
    stats: dict[str, float] = httpx.get(f"{receiver}/stats", timeout=10).json()
    return stats


@contextlib.contextmanager
def own_receiver(startup: float = 15.0) -> Iterator[str]:
    """The compiled benchmark receiver on a free loopback port, for as long as the block
    runs; yields its base URL once it answers."""
    port = free_port()
    proc = go_receiver.start(port)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the receiver exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/stats", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the receiver did not answer on {url} in {startup:g}s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def smoke(deliveries: int, concurrency: int) -> dict[str, object]:
    """Both clients against an own receiver, each in its own process; checks that every
    delivery arrived."""
    results: dict[str, object] = {}
    with own_receiver() as url:
        for client in CLIENTS:
            results[client] = measure(url, deliveries, concurrency, client)
        received = int(receiver_stats(url)["count"])
    expected = deliveries * len(CLIENTS)
    if received != expected:
        raise RuntimeError(f"the receiver counted {received} deliveries, {expected} were sent")
    return {"receiver": "go", "received": received, **results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receiver", default=None, help="base URL; default: start one")
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--client", choices=CLIENTS, default="aiohttp")
    parser.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the loop on uvloop (default) or on asyncio's own loop",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, both clients, for CI")
    args = parser.parse_args()
    if args.smoke:
        print(json.dumps(smoke(200, min(args.concurrency, 50)), indent=2))
        return
    with contextlib.ExitStack() as stack:
        url = args.receiver or stack.enter_context(own_receiver())
        result = run_loop(url, args.deliveries, args.concurrency, args.client, args.uvloop)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
