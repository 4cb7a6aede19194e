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

from bench import go_receiver
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
    receiver_pid: int
    kubeconfig: Path  # admin kubeconfig of the local cluster, to change objects mid-run
    ingest_urls: list[str]  # one per delivery-service process
    delivery_pids: list[int]
    metrics_url: str  # /metrics of the first delivery-service process
    store_url: str  # the store the delivery processes share (per-stage times are read there)


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> None:
    subprocess.run(
        [str(kubectl_binary()), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        text=True,
        check=True,
        capture_output=True,
    )


def _objects(
    endpoints: int, receiver: str, spec: dict[str, object] | None = None
) -> list[dict[str, object]]:
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
                    **(spec or {}),
                },
            }
        )
    return objs


def start_delivery(
    kubeconfig: Path, store: str, port: int, log_path: Path, metrics_port: int | None = None
) -> subprocess.Popen[bytes]:
    """The delivery service on 127.0.0.1:`port`, allowed to deliver to 127.0.0.1, with
    /metrics on 127.0.0.1:`metrics_port` (not served when None)."""
    metrics = f"127.0.0.1:{metrics_port}" if metrics_port else "off"
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                str(BIN / "webhook-operator"),
                "delivery",
                f"--kubeconfig={kubeconfig}",
                f"--store={store}",
                f"--listen=127.0.0.1:{port}",
                f"--metrics-listen={metrics}",
                "--allow-cidr=127.0.0.1/32",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def local_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server (the test suite's: fsync and synchronous_commit off)
    with an empty database; yields its DSN."""
    from tests import pg

    server = pg.start_server()
    try:
        yield pg.create_database(server.dsn, "bench")
    finally:
        server.stop()


def wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the delivery service at {base} was not ready within {timeout:g}s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def running(
    endpoints: int,
    store: str | None = None,
    settle: float = 2.0,
    spec: dict[str, object] | None = None,  # merged into every endpoint's spec
    processes: int = 1,  # delivery-service processes sharing the store (PostgreSQL)
) -> Iterator[Setup]:
    work = Path(tempfile.mkdtemp(prefix="wo-bench-"))
    cluster = LocalCluster(workdir=work / "cluster", binaries=resolve())
    info = cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    stack = contextlib.ExitStack()
    try:
        install_crds(info.kubeconfig)
        rport = free_port()
        receiver_proc = go_receiver.start(rport)
        procs.append(receiver_proc)
        if store == "postgres":
            store = stack.enter_context(local_postgres())
        elif store in (None, "sqlite"):
            store = f"sqlite:///{work / 'bench.db'}"
        elif not store.startswith(("sqlite:", "postgresql://", "postgres://")) and "=" not in store:
            # A bare word would be taken as a file name in the service's directory.
            raise ValueError(f"--store {store!r}: use sqlite, postgres or a store URL")
        if processes > 1 and store.startswith("sqlite:"):
            raise ValueError("several delivery processes need a PostgreSQL store")
        bases: list[str] = []
        metrics_port = free_port()
        deliveries: list[subprocess.Popen[bytes]] = []
        for n in range(processes):
            dport = free_port()
            deliveries.append(
                start_delivery(
                    info.kubeconfig,
                    store,
                    dport,
                    work / f"delivery-{n}.log",
                    metrics_port if n == 0 else None,
                )
            )
            bases.append(f"http://127.0.0.1:{dport}")
        procs.extend(deliveries)
        receiver = f"http://127.0.0.1:{rport}"
        for obj in _objects(endpoints, receiver, spec):
            _kubectl(info.kubeconfig, "apply", "-n", "default", "-f", "-", input=json.dumps(obj))
        for base in bases:
            wait_ready(base)
        time.sleep(settle)  # the service reads the user Secret on its refresh loop
        urls = [f"{base}/v1/namespaces/default/apps/bench/events" for base in bases]
        yield Setup(
            ingest_url=urls[0],
            receiver=receiver,
            token=info.token,
            delivery_pid=deliveries[0].pid,
            receiver_pid=receiver_proc.pid,
            kubeconfig=info.kubeconfig,
            store="sqlite" if store.startswith("sqlite:") else "postgresql",
            ingest_urls=urls,
            delivery_pids=[d.pid for d in deliveries],
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            store_url=store,
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
        stack.close()
