"""What every delivery benchmark sets up: the local control plane, a receiver process, a
delivery-service process and an app with N endpoints pointing at the receiver. All traffic
stays on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from webhook_operator.devcluster import LocalCluster, install_crds, resolve
from webhook_operator.devcluster.binaries import kubectl_binary
from webhook_operator.devcluster.cluster import free_port

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class Setup:
    ingest_url: str  # POST events here
    receiver: str  # the receiver's base URL
    token: str
    delivery_pid: int
    store: str


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> None:
    subprocess.run(
        [str(kubectl_binary()), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        text=True,
        check=True,
        capture_output=True,
    )


def _objects(endpoints: int, receiver: str) -> list[dict[str, object]]:
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def running(endpoints: int, store: str | None = None, settle: float = 2.0) -> Iterator[Setup]:
    work = Path(tempfile.mkdtemp(prefix="wo-bench-"))
    cluster = LocalCluster(workdir=work / "cluster", binaries=resolve())
    info = cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        install_crds(info.kubeconfig)
        rport, dport = free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, str(HERE / "receiver.py"), str(rport)]))
        store = store or f"sqlite:///{work / 'bench.db'}"
        with (work / "delivery.log").open("wb") as log:
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
        for obj in _objects(endpoints, receiver):
            _kubectl(info.kubeconfig, "apply", "-n", "default", "-f", "-", input=json.dumps(obj))
        base = f"http://127.0.0.1:{dport}"
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        time.sleep(settle)  # the service reads the user Secret on its refresh loop
        yield Setup(
            ingest_url=f"{base}/v1/namespaces/default/apps/bench/events",
            receiver=receiver,
            token=info.token,
            delivery_pid=delivery.pid,
            store="postgresql" if store.startswith("postgres") else "sqlite",
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.stop()
