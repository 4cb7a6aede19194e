"""Operator scale: N WebhookEndpoints applied to the real local apiserver; time until all
are Ready with their signing Secret, against the time a bare async client needs for the
same API writes (one Secret create and one status patch per endpoint), and the operator's
resident memory at rest afterwards.

    .venv/bin/python -m bench.operator_scale --endpoints 1000
    .venv/bin/python -m bench.operator_scale --endpoints 5000
    .venv/bin/python -m bench.operator_scale --smoke
"""

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
from typing import Any

from kubernetes_asyncio import client

from bench.harness import BIN, HERE, rss_mb
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


def run(count: int, limit: float) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="wo-scale-"))
    cluster = LocalCluster(workdir=work / "cluster", binaries=resolve())
    info = cluster.start()
    operator = None
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
            float(result["operator_seconds_to_all_ready"]) / bare, 2
        )
        return result
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.smoke:
        args.endpoints, args.timeout = 20, 120
    result = run(args.endpoints, args.timeout)
    print(json.dumps(result, indent=2))
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"operator-scale-{args.endpoints}.json").write_text(
            json.dumps(result, indent=2) + "\n"
        )
    if result["ready"] != args.endpoints:
        sys.exit(f"only {result['ready']} of {args.endpoints} Ready")


if __name__ == "__main__":
    main()
