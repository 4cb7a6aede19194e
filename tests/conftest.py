"""Fixtures shared by every test layer.

The `cluster` fixture gives the integration and e2e tests a real control plane: by default
one started on this machine for the session (etcd, kube-apiserver, kube-controller-manager);
with WEBHOOK_OPERATOR_TEST_KUBECONFIG, the existing cluster that kubeconfig names. Either
way the CRDs are installed first, and each test gets its own namespace.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook_operator.devcluster import LocalCluster, install_crds, resolve
from webhook_operator.devcluster.binaries import kubectl_binary
from webhook_operator.devcluster.cluster import free_port
from webhook_operator.devcluster.install import api_client

REPO = Path(__file__).resolve().parents[1]


class Cluster:
    """A running cluster the tests may use: its kubeconfig and an API client."""

    def __init__(self, kubeconfig: Path, local: LocalCluster | None) -> None:
        self.kubeconfig = kubeconfig
        self.local = local
        self.api = api_client(kubeconfig)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(kubectl_binary()), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    existing = os.environ.get("WEBHOOK_OPERATOR_TEST_KUBECONFIG")
    if existing:
        kubeconfig = Path(existing)
        install_crds(kubeconfig)
        yield Cluster(kubeconfig, None)
        return
    local = LocalCluster(workdir=tmp_path_factory.mktemp("cluster"), binaries=resolve())
    info = local.start()
    try:
        install_crds(info.kubeconfig)
        c = Cluster(info.kubeconfig, local)
        yield c
        c.api.close()
    finally:
        local.stop()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the controller-manager empties it)."""
    name = f"t-{_slug(request.node.name)}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def kubectl(cluster: Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    return cluster.kubectl


class OperatorProcess:
    """`webhook-operator controller` as a subprocess against the test cluster."""

    def __init__(self, kubeconfig: Path, log_dir: Path, lease_name: str, *extra: str) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.lease_name = lease_name
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []
        self.log_path = log_dir / f"operator-{lease_name}.log"

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.args = [
            f"--kubeconfig={self.kubeconfig}",
            "--lease-namespace=default",
            f"--lease-name={self.lease_name}",
            "--lease-duration=4",
            "--probe-host=127.0.0.1",
            f"--probe-port={free_port()}",
            "--status-interval=0.5",
            *self.extra,
        ]
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "webhook-operator"), "controller", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class StatsServer:
    """A stand-in delivery service for the operator's results poller: a real HTTP server on
    loopback serving `/internal/v1/endpoint-stats` from what the tests put in."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[int, dict[str, object]]] = {}
        self.version = 0
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path != "/internal/v1/endpoint-stats":
                    self.send_error(404)
                    return
                since = int(parse_qs(url.query).get("since", ["0"])[0] or 0)
                with server.lock:
                    server.authorizations.append(self.headers.get("Authorization", ""))
                    changed = [
                        {"namespace": ns, "name": name, **record}
                        for (ns, name), (version, record) in server.records.items()
                        if version > since
                    ]
                    body = json.dumps({"cursor": str(server.version), "endpoints": changed})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def put(self, namespace: str, name: str, **record: object) -> None:
        with self.lock:
            self.version += 1
            self.records[(namespace, name)] = (self.version, record)

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="session")
def delivery_stats() -> Iterator[StatsServer]:
    server = StatsServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, delivery_stats: StatsServer
) -> Iterator[OperatorProcess]:
    """One operator for the session, watching every namespace."""
    proc = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator"),
        f"op-{secrets.token_hex(3)}",
        f"--delivery-url={delivery_stats.url}",
    ).start()
    yield proc
    proc.stop()


def eventually(
    check: Callable[[], object], timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> object:
    """Poll `check` until it returns a truthy value (returned) or raise with the last error."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = None
        except (AssertionError, ApiException, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not met within {timeout}s: {what} (last: {last!r})")
