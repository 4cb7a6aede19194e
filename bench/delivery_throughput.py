"""Delivery throughput of one delivery-service process: events posted through the real
ingest API (with a real token, checked by TokenReview/SubjectAccessReview), delivered to a
local receiver, on the real local control plane.

    .venv/bin/python bench/delivery_throughput.py --events 5000 --endpoints 1
    .venv/bin/python bench/delivery_throughput.py --events 2000 --endpoints 10
    .venv/bin/python bench/delivery_throughput.py --store postgresql://... (an empty database)
    .venv/bin/python bench/delivery_throughput.py --smoke          (tiny, for CI)

Traffic stays on 127.0.0.1; the loop is bounded by --events and --timeout."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from webhook_operator.devcluster import LocalCluster, install_crds, resolve
from webhook_operator.devcluster.binaries import kubectl_binary
from webhook_operator.devcluster.cluster import free_port

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> None:
    subprocess.run(
        [str(kubectl_binary()), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        text=True,
        check=True,
        capture_output=True,
    )


def objects(endpoints: int, receiver: str) -> list[dict[str, object]]:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    objs: list[dict[str, object]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bench-secret"},
            "stringData": {"secret": secret},
        },
        {
            "apiVersion": "webhook-operator.dev/v1alpha1",
            "kind": "WebhookApp",
            "metadata": {"name": "bench"},
            "spec": {},
        },
    ]
    for n in range(endpoints):
        objs.append(
            {
                "apiVersion": "webhook-operator.dev/v1alpha1",
                "kind": "WebhookEndpoint",
                "metadata": {"name": f"ep-{n}"},
                "spec": {
                    "appRef": {"name": "bench"},
                    "url": f"{receiver}/ep-{n}",
                    "allowInsecureHttp": True,
                    "events": ["*"],
                    "maxConcurrency": 100,
                    "secretRef": {"name": "bench-secret"},
                },
            }
        )
    return objs


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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="wo-bench-"))
    cluster = LocalCluster(workdir=work / "cluster", binaries=resolve())
    info = cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        install_crds(info.kubeconfig)
        rport, dport = free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, str(HERE / "receiver.py"), str(rport)]))
        store = args.store or f"sqlite:///{work / 'bench.db'}"
        log = (work / "delivery.log").open("wb")
        delivery = subprocess.Popen(
            [
                str(BIN / "webhook-operator"),
                "delivery",
                f"--kubeconfig={info.kubeconfig}",
                f"--store={store}",
                f"--listen=127.0.0.1:{dport}",
                "--allow-cidr=127.0.0.1/32",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(delivery)
        receiver = f"http://127.0.0.1:{rport}"
        for obj in objects(args.endpoints, receiver):
            kubectl(info.kubeconfig, "apply", "-n", "default", "-f", "-", input=json.dumps(obj))
        base = f"http://127.0.0.1:{dport}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        time.sleep(args.settle)  # the service reads the user Secret on its refresh loop
        idle_rss = rss_mb(delivery.pid)
        expected = args.events * args.endpoints
        started = time.time()
        post_seconds = asyncio.run(
            post_events(
                f"{base}/v1/namespaces/default/apps/bench/events",
                info.token,
                args.events,
                args.concurrency,
            )
        )
        peak_rss = rss_mb(delivery.pid)
        deadline = started + args.timeout
        stats: dict[str, float] = {"count": 0}
        while time.time() < deadline:
            stats = httpx.get(f"{receiver}/stats", timeout=5).json()
            peak_rss = max(peak_rss, rss_mb(delivery.pid))
            if stats["count"] >= expected:
                break
            time.sleep(0.2)
        elapsed = (stats.get("last") or time.time()) - started
        return {
            "store": "postgresql" if store.startswith("postgres") else "sqlite",
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
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.stop()


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
