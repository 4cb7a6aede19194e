"""Operator scale: N WebhookEndpoints applied to the real local apiserver; time until all
are Ready with their signing Secret, against the time a bare async client needs for the
same API writes (one Secret create and one status patch per endpoint), and the operator's
resident memory at rest afterwards.

Then API writes at steady state with deliveries flowing: a delivery service and a receiver
are started, a second app with a few live endpoints (pointing at the receiver) gets events
at a modest fixed rate, and for a window the apiserver's own request counters
(`apiserver_request_total`, scraped from /metrics before and after) give the writes it
served, by verb and resource. A watch on the namespace's WebhookEndpoints over the same
window (fenced by etcd revisions read right after each scrape) gives which endpoints
changed and when: the N endpoints of the first app get no traffic and should see no write
at all, a live endpoint at most one status write per 10 s, and every write should change
something (served endpoint writes minus changes seen by the watch).

    .venv/bin/python -m bench.operator_scale --endpoints 1000
    .venv/bin/python -m bench.operator_scale --endpoints 5000
    .venv/bin/python -m bench.operator_scale --endpoints 1000 --window 60 --live 5 --event-rate 10
    .venv/bin/python -m bench.operator_scale --smoke

Traffic stays on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import BIN, HERE, rss_mb, start_delivery, wait_ready
from bench.recovery import max_in_window
from bench.report import columns, publish
from webhook_operator.devcluster import LocalCluster, install_crds, resolve
from webhook_operator.devcluster.cluster import free_port
from webhook_operator.kube_client import connect

GROUP, VERSION = "webhook-operator.dev", "v1alpha1"


def endpoint(n: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookEndpoint",
        "metadata": {"name": f"ep-{n}", "namespace": namespace},
        "spec": {
            "appRef": {"name": "bench"},
            "url": f"https://hooks.example.com/{n}",
            "events": ["*"],
        },
    }


async def create_all(custom: Any, namespace: str, count: int, concurrency: int = 16) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with sem:
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "webhookendpoints", endpoint(n, namespace)
            )

    await asyncio.gather(*(one(n) for n in range(count)))


async def count_ready(custom: Any, namespace: str) -> int:
    listing = await custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "webhookendpoints"
    )
    ready = 0
    for item in listing["items"]:
        for cond in (item.get("status") or {}).get("conditions") or []:
            if (
                cond["type"] == "Ready"
                and cond["status"] == "True"
                and (item["status"].get("secret") or {}).get("secretName")
            ):
                ready += 1
    return ready


async def bare_writes(
    api: client.ApiClient, namespace: str, count: int, concurrency: int = 16
) -> float:
    """What the operator must write, done by a bare client: Secret create + status patch."""
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    sem = asyncio.Semaphore(concurrency)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    async def one(n: int) -> None:
        async with sem:
            secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
            await core.create_namespaced_secret(
                namespace,
                {"metadata": {"name": f"ep-{n}-bare-secret"}, "stringData": {"secret": secret}},
            )
            status = {
                "status": {
                    "observedGeneration": 1,
                    "health": "Pending",
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Reconciled",
                            "message": "",
                            "lastTransitionTime": now,
                        }
                    ],
                }
            }
            await custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                "webhookendpoints",
                f"ep-{n}",
                status,
                _content_type="application/merge-patch+json",
            )

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(count)))
    return time.monotonic() - started


async def measure(
    kubeconfig: Path, count: int, limit: float, operator_pid: int
) -> dict[str, object]:
    api = await connect(str(kubeconfig))
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    try:
        for ns in ("scale", "baseline"):
            await core.create_namespace({"metadata": {"name": ns}})
            await custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                "webhookapps",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "WebhookApp",
                    "metadata": {"name": "bench"},
                    "spec": {},
                },
            )
        started = time.monotonic()
        await create_all(custom, "scale", count)
        created = time.monotonic() - started
        ready = 0
        while time.monotonic() - started < limit:
            ready = await count_ready(custom, "scale")
            if ready >= count:
                break
            await asyncio.sleep(0.5)
        operator_seconds = time.monotonic() - started
        await asyncio.sleep(5)  # at rest
        rss = rss_mb(operator_pid)
        # The baseline namespace is outside the operator's --namespace, so nothing reacts
        # to the bare client's writes there.
        await create_all(custom, "baseline", count)
        return {
            "endpoints": count,
            "ready": ready,
            "create_seconds": round(created, 2),
            "operator_seconds_to_all_ready": round(operator_seconds, 2),
            "operator_rss_mb_at_rest": round(rss, 1),
        }
    finally:
        await api.close()


# --- steady state: API writes with deliveries flowing -------------------------------------

LIVE_APP = "live"
# apiserver_request_total's verb label for requests that change something.
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
# Watch events reach us a little after the write; two writes a full interval apart may
# look this much closer.
WATCH_JITTER = 0.25
STATUS_SPAN = 10.0  # the target: at most one status write per endpoint per this span
WriteKey = tuple[str, str, str]  # verb, resource, subresource


@dataclass
class SteadySettings:
    window: float  # seconds counted
    live: int  # endpoints that get deliveries
    event_rate: float  # events per second, each delivered to every live endpoint


@dataclass
class Change:
    name: str
    revision: int
    at: float  # monotonic arrival time


@dataclass
class Cluster:
    """How the steady-state phase reaches the apiserver (admin credentials)."""

    server: str
    token: str
    verify: str | bool
    kubeconfig: Path


def live_endpoint(n: int, namespace: str, receiver: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookEndpoint",
        "metadata": {"name": f"live-{n}", "namespace": namespace},
        "spec": {
            "appRef": {"name": LIVE_APP},
            "url": f"{receiver}/live-{n}",
            "allowInsecureHttp": True,
            "events": ["*"],
        },
    }


def app_object(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookApp",
        "metadata": {"name": name},
        "spec": {},
    }


class Receiver:
    """A receiver in this process: at tens of deliveries a second it needs no process of
    its own, and counting here avoids depending on any receiver implementation."""

    def __init__(self) -> None:
        self.count = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        async def hook(request: web.Request) -> web.Response:
            await request.read()
            self.count += 1
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def flow(url: str, token: str, rate: float, stop: asyncio.Event) -> tuple[int, int]:
    """Post events on a fixed schedule until `stop`; returns (accepted, refused)."""
    body = json.dumps({"type": "bench.steady", "data": {"x": "y" * 200}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    counts = [0, 0]
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                counts[0 if response.status == 202 else 1] += 1

        start, n = time.monotonic(), 0
        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            # open loop: a slow answer does not delay the next event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), start + n / rate - time.monotonic())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    return counts[0], counts[1]


def write_counts(metrics_text: str) -> tuple[Counter[WriteKey], int]:
    """Successful write requests served so far by (verb, resource, subresource), and the
    refused ones (conflicts and the like) in total."""
    wanted = "\n".join(
        line for line in metrics_text.splitlines() if line.startswith("apiserver_request_total")
    )
    served: Counter[WriteKey] = Counter()
    refused = 0
    for family in text_string_to_metric_families(wanted):
        for sample in family.samples:
            labels = sample.labels
            if sample.name != "apiserver_request_total" or labels.get("verb") not in WRITE_VERBS:
                continue
            if labels.get("code", "").startswith("2"):
                key = (labels["verb"], labels.get("resource", ""), labels.get("subresource", ""))
                served[key] += int(sample.value)
            else:
                refused += int(sample.value)
    return served, refused


async def scrape(http: httpx.AsyncClient) -> tuple[Counter[WriteKey], int]:
    response = await http.get("/metrics")
    response.raise_for_status()
    return write_counts(response.text)


async def revision(http: httpx.AsyncClient, namespace: str) -> int:
    """etcd's current revision: a list without resourceVersion is a consistent read and
    answers with it."""
    response = await http.get(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/webhookendpoints", params={"limit": 1}
    )
    response.raise_for_status()
    return int(response.json()["metadata"]["resourceVersion"])


async def watch_changes(
    http: httpx.AsyncClient, namespace: str, since: int, seen: list[Change]
) -> None:
    """Append every change to the namespace's endpoints after revision `since`."""
    params = {"watch": "1", "resourceVersion": str(since), "timeoutSeconds": "3600"}
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/webhookendpoints"
    async with http.stream("GET", path, params=params, timeout=None) as response:
        async for line in response.aiter_lines():
            if not line:
                continue
            event = json.loads(line)
            meta = event["object"].get("metadata") or {}
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                seen.append(Change(meta["name"], int(meta["resourceVersion"]), time.monotonic()))


async def wait_live_delivered(custom: Any, namespace: str, names: list[str], within: float) -> bool:
    """Until every live endpoint's status shows a successful delivery: the operator polls
    delivery results with a backoff that grew while no delivery service ran, so this is
    where the steady state begins."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        listing = await custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "webhookendpoints"
        )
        done = {
            item["metadata"]["name"]
            for item in listing["items"]
            if (item.get("status") or {}).get("lastSuccessTime")
        }
        if done.issuperset(names):
            return True
        await asyncio.sleep(1)
    return False


async def create_live(custom: Any, namespace: str, live: int, receiver: str) -> list[str]:
    await custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "webhookapps", app_object(LIVE_APP)
    )
    for n in range(live):
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "webhookendpoints", live_endpoint(n, namespace, receiver)
        )
    return [f"live-{n}" for n in range(live)]


def per_minute(count: float, seconds: float) -> float:
    return round(count * 60 / seconds, 1)


def summarize(
    served: Counter[WriteKey],
    refused: int,
    changes: list[Change],
    live_names: list[str],
    seconds: float,
) -> dict[str, object]:
    endpoint_writes = sum(n for (_, res, _), n in served.items() if res == "webhookendpoints")
    status_writes = sum(
        n for (_, res, sub), n in served.items() if res == "webhookendpoints" and sub == "status"
    )
    by_endpoint: dict[str, list[float]] = defaultdict(list)
    for change in changes:
        by_endpoint[change.name].append(change.at)
    live = [by_endpoint.get(name, []) for name in live_names]
    idle_written = sorted(name for name in by_endpoint if name not in live_names)
    by_resource = {
        f"{verb} {res}{'/' + sub if sub else ''}": per_minute(n, seconds)
        for (verb, res, sub), n in sorted(served.items(), key=lambda kv: -kv[1])
        if n
    }
    spans = seconds / STATUS_SPAN
    most = max((max_in_window(t, STATUS_SPAN - WATCH_JITTER) for t in live), default=0)
    # A write the apiserver served that the watch never saw changed nothing (the apiserver
    # skips storing an unchanged object). Fencing can be off by a write at either edge.
    unchanged = max(0, endpoint_writes - len(changes))
    return {
        "steady_api_writes_per_minute": per_minute(sum(served.values()), seconds),
        "steady_api_writes_per_minute_by_resource": by_resource,
        "steady_api_writes_refused": refused,
        "steady_endpoint_status_writes_per_minute": per_minute(status_writes, seconds),
        "steady_status_writes_per_live_endpoint_per_10s": round(
            sum(len(t) for t in live) / max(1, len(live)) / spans, 2
        ),
        "steady_status_writes_most_in_10s": most,
        "steady_idle_endpoints_written": len(idle_written),
        "steady_idle_endpoints_written_names": idle_written[:10],
        "steady_endpoint_writes_without_change": unchanged,
        "steady_target_met": most <= 1 and not idle_written and unchanged == 0,
    }


async def steady_window(
    cluster: Cluster, namespace: str, live_names: list[str], receiver: Receiver, window: float
) -> dict[str, object]:
    """Count the writes served during `window` seconds, with the watch fenced by the etcd
    revisions read right after each scrape."""
    auth = {"Authorization": f"Bearer {cluster.token}"}
    async with httpx.AsyncClient(
        base_url=cluster.server, headers=auth, verify=cluster.verify, timeout=60
    ) as http:
        changes: list[Change] = []
        watcher = asyncio.create_task(
            watch_changes(http, namespace, await revision(http, namespace), changes)
        )
        try:
            before, refused_before = await scrape(http)
            fence_start, started = await revision(http, namespace), time.monotonic()
            delivered_before = receiver.count
            await asyncio.sleep(window)
            after, refused_after = await scrape(http)
            fence_end, seconds = await revision(http, namespace), time.monotonic() - started
            delivered = receiver.count - delivered_before
            await asyncio.sleep(1)  # let the watch catch up to fence_end
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    fenced = [c for c in changes if fence_start < c.revision <= fence_end]
    result = summarize(after - before, refused_after - refused_before, fenced, live_names, seconds)
    result["steady_window_seconds"] = round(seconds, 1)
    result["steady_deliveries_per_second"] = round(delivered / seconds, 1)
    return result


async def steady_state(
    cluster: Cluster, delivery_base: str, idle: int, settings: SteadySettings
) -> dict[str, object]:
    namespace = "scale"
    api = await connect(str(cluster.kubeconfig))
    custom: Any = client.CustomObjectsApi(api)
    receiver = Receiver()
    stop = asyncio.Event()
    try:
        names = await create_live(custom, namespace, settings.live, await receiver.start())
        events = asyncio.create_task(
            flow(
                f"{delivery_base}/v1/namespaces/{namespace}/apps/{LIVE_APP}/events",
                cluster.token,
                settings.event_rate,
                stop,
            )
        )
        warmed = await wait_live_delivered(custom, namespace, names, within=120)
        await asyncio.sleep(3)  # let the first Pending -> Healthy status writes land
        result = await steady_window(cluster, namespace, names, receiver, settings.window)
        stop.set()
        accepted, refused = await events
    finally:
        stop.set()
        await receiver.stop()
        await api.close()
    return {
        "steady_live_endpoints": settings.live,
        "steady_idle_endpoints": idle,
        "steady_events_per_second": settings.event_rate,
        "steady_warm": warmed,
        "steady_events_refused": refused,
        "steady_events_accepted": accepted,
        **result,
    }


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run(count: int, limit: float, steady: SteadySettings) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="wo-scale-"))
    cluster = LocalCluster(workdir=work / "cluster", binaries=resolve())
    info = cluster.start()
    operator = delivery = None
    # The operator knows the delivery service's address from the start, as when deployed;
    # the service itself starts only after the scale figures, so it does not compete with
    # them for the two cores.
    dport = free_port()
    delivery_base = f"http://127.0.0.1:{dport}"
    try:
        install_crds(info.kubeconfig)
        with (work / "operator.log").open("wb") as log:
            operator = subprocess.Popen(
                [
                    str(BIN / "webhook-operator"),
                    "controller",
                    f"--kubeconfig={info.kubeconfig}",
                    "--probe-host=127.0.0.1",
                    f"--probe-port={free_port()}",
                    "--namespace=scale",
                    f"--delivery-url={delivery_base}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        time.sleep(3)
        result = asyncio.run(measure(info.kubeconfig, count, limit, operator.pid))

        async def baseline() -> float:
            api = await connect(str(info.kubeconfig))
            try:
                return await bare_writes(api, "baseline", count)
            finally:
                await api.close()

        bare = asyncio.run(baseline())
        result["bare_client_seconds"] = round(bare, 2)
        result["ratio_to_bare_client"] = round(
            float(str(result["operator_seconds_to_all_ready"])) / bare, 2
        )
        delivery = start_delivery(
            info.kubeconfig, f"sqlite:///{work / 'delivery.db'}", dport, work / "delivery.log"
        )
        wait_ready(delivery_base)
        ca = str(info.ca_cert) if info.ca_cert else True
        access = Cluster(info.server, info.token, ca, info.kubeconfig)
        result.update(asyncio.run(steady_state(access, delivery_base, count, steady)))
        if not result["steady_warm"]:
            # Without deliveries reaching status the window means little; show why.
            for name in ("delivery.log", "operator.log"):
                tail = (work / name).read_text(errors="replace")[-3000:]
                print(f"--- end of {name} ---\n{tail}", file=sys.stderr)
        return result
    finally:
        stop_process(delivery)
        stop_process(operator)
        cluster.stop()


def table(result: dict[str, object]) -> str:
    """Plain text, and free of braces: the smoke test reads the JSON from the first one."""
    rows = [
        ("endpoints all Ready", f"{result['operator_seconds_to_all_ready']} s"),
        (
            "bare client / ratio",
            f"{result['bare_client_seconds']} s / {result['ratio_to_bare_client']}",
        ),
        ("operator RSS at rest", f"{result['operator_rss_mb_at_rest']} MB"),
        (
            "steady window",
            f"{result['steady_window_seconds']} s, {result['steady_live_endpoints']} live"
            f" endpoints at {result['steady_deliveries_per_second']} deliveries/s,"
            f" {result['steady_idle_endpoints']} idle",
        ),
        ("API writes/min", str(result["steady_api_writes_per_minute"])),
        ("endpoint status writes/min", str(result["steady_endpoint_status_writes_per_minute"])),
        (
            "status writes per live endpoint",
            f"{result['steady_status_writes_per_live_endpoint_per_10s']} per 10 s on average,"
            f" at most {result['steady_status_writes_most_in_10s']} in any 10 s",
        ),
        ("idle endpoints written", str(result["steady_idle_endpoints_written"])),
        ("endpoint writes without change", str(result["steady_endpoint_writes_without_change"])),
        ("steady-state target met", str(result["steady_target_met"])),
    ]
    return columns(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--window", type=float, default=60, help="steady-state seconds counted")
    parser.add_argument("--live", type=int, default=5, help="endpoints getting deliveries")
    parser.add_argument("--event-rate", type=float, default=10, help="events/s to the live app")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.smoke:
        args.endpoints, args.timeout, args.window, args.live = 20, 120, 10, 2
    steady = SteadySettings(window=args.window, live=args.live, event_rate=args.event_rate)
    result = run(args.endpoints, args.timeout, steady)
    name = f"operator-scale-{args.endpoints}.json"
    publish(result, table(result), args.out, name, args.smoke)
    if result["ready"] != args.endpoints:
        sys.exit(f"only {result['ready']} of {args.endpoints} Ready")
    if not result["steady_warm"]:
        sys.exit("no live endpoint showed a delivery in its status within 120 s")


if __name__ == "__main__":
    main()
