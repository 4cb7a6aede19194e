"""What callers see while the Kubernetes API is unavailable, against a real control plane
of this module's own whose kube-apiserver is paused (it hangs), stopped and started again
while etcd keeps the data: the delivery service answers 503 JSON with Retry-After in a few
seconds instead of hanging, callers it already knows keep working, a correctly bound
caller is never told 403 while the restarted apiserver is warming up, and a leading
operator steps down before its lease runs out.

The shared session cluster is never touched: other tests use it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import BIN, Cluster, DeliveryProcess, OperatorProcess, Producer, eventually
from webhook_operator.devcluster import ClusterInfo, LocalCluster, install_crds, resolve

GROUP, VERSION = "webhook-operator.dev", "v1alpha1"
NAMESPACE = "shop"


class Apiserver:
    """The module cluster's kube-apiserver, to pause, stop and start again on the same
    port, certificates and etcd, so every client reconnects unchanged."""

    def __init__(self, local: LocalCluster, info: ClusterInfo) -> None:
        self.local, self.info = local, info
        self.argv: list[str] = []

    def _child(self) -> Any:
        return next(c for c in self.local.children if c.name == "kube-apiserver")

    def pause(self) -> None:
        os.kill(self._child().process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._child().process.pid, signal.SIGCONT)

    def stop(self) -> None:
        child = self._child()
        self.argv = [str(a) for a in child.process.args]
        child.process.terminate()
        try:
            child.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        child.log.close()
        self.index = self.local.children.index(child)
        self.local.children.remove(child)

    def start(self) -> None:
        # Back in its place, so the cluster still stops it before etcd.
        child = self.local._spawn("kube-apiserver", self.argv)
        self.local.children.remove(child)
        self.local.children.insert(self.index, child)

    def ready(self) -> bool:
        assert self.info.ca_cert is not None
        try:
            response = httpx.get(
                f"{self.info.server}/readyz",
                headers={"Authorization": f"Bearer {self.info.token}"},
                verify=ssl.create_default_context(cafile=str(self.info.ca_cert)),
                timeout=1.0,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200


@dataclass
class Setup:
    cluster: Cluster
    apiserver: Apiserver
    delivery: DeliveryProcess
    workdir: Path


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("unavailable")
    local = LocalCluster(workdir=workdir / "cluster", binaries=resolve())
    info = local.start()
    apiserver = Apiserver(local, info)
    delivery: DeliveryProcess | None = None
    try:
        install_crds(info.kubeconfig)
        cluster = Cluster(info.kubeconfig, local)
        cluster.kubectl("create", "namespace", NAMESPACE)
        app = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WebhookApp",
            "metadata": {"name": "billing", "namespace": NAMESPACE},
            "spec": {"eventTypes": [{"name": "invoice.paid"}]},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(app))
        delivery = DeliveryProcess(
            info.kubeconfig, workdir, f"sqlite:///{workdir / 'delivery.db'}"
        ).start()
        yield Setup(cluster, apiserver, delivery, workdir)
    finally:
        if delivery is not None:
            delivery.stop()
        # Never leave it paused: a stopped process would not see the SIGTERM.
        if any(c.name == "kube-apiserver" for c in local.children):
            apiserver.resume()
        local.stop()


def emit(own: Setup, producer: Producer, event_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"type": "invoice.paid", "data": {"invoiceId": "in_1"}}
    if event_id:
        body["id"] = event_id
    return httpx.post(
        f"{own.delivery.url}/v1/namespaces/{NAMESPACE}/apps/billing/events",
        json=body,
        headers=producer.headers,
        timeout=30,
    )


def timed_emit(own: Setup, producer: Producer) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = emit(own, producer)
    return response, time.monotonic() - started


def reason(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return str(response.json()["error"]["reason"])


def assert_retry_later(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert reason(response) == "KubernetesUnavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert "retry" in response.json()["error"]["message"]


def test_delivery_service_without_kubernetes(own: Setup) -> None:
    known = Producer(own.cluster, NAMESPACE, ["billing"], name="known", verbs=("emit",))
    fresh = Producer(own.cluster, NAMESPACE, ["billing"], name="fresh", verbs=("emit",))
    stranger = Producer(own.cluster, NAMESPACE, ["payroll"], name="stranger", verbs=("emit",))
    # The service caches answers for 30 s: everything up to the restart fits in that.
    assert emit(own, known).status_code == 202

    # Paused: connections open but nothing answers. Before, this hung for good.
    own.apiserver.pause()
    try:
        response, took = timed_emit(own, fresh)
        assert_retry_later(response)
        assert took < 5.0, f"a caller waited {took:.1f}s on a hung apiserver"
        response, took = timed_emit(own, known)
        assert response.status_code == 202, response.text
        assert took < 1.0
    finally:
        own.apiserver.resume()

    # Stopped: nothing listens. Before, a 500 in text/plain.
    own.apiserver.stop()
    response, took = timed_emit(own, fresh)
    assert_retry_later(response)
    assert took < 2.0
    assert emit(own, known, event_id="while-down").status_code == 202

    # Started again: it answers before its RBAC and ServiceAccount caches are filled, and
    # then refuses callers it would allow. The bound caller must see 503 (retry), then
    # 202, never a 403, and within seconds of the apiserver being ready.
    own.apiserver.start()
    seen: list[tuple[float, int, str]] = []
    ready_at: float | None = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ready_at is None and own.apiserver.ready():
            ready_at = time.monotonic()
        response = emit(own, fresh)
        seen.append((time.monotonic(), response.status_code, response.text[:200]))
        if response.status_code == 202:
            break
        assert_retry_later(response)
        time.sleep(0.2)
    assert seen[-1][1] == 202, f"the bound caller never got in: {seen[-5:]}"
    late = seen[-1][0] - (ready_at or seen[-1][0])
    assert late < 5.0, f"202 only {late:.1f}s after the apiserver was ready: {seen}"
    for _ in range(5):
        assert emit(own, fresh).status_code == 202
        time.sleep(0.5)

    # A caller that is not allowed is refused again once the apiserver can tell.
    eventually(own.apiserver.ready, timeout=60, what="apiserver ready")
    refused = emit(own, stranger)
    assert refused.status_code == 403, refused.text
    assert reason(refused) == "Forbidden"
    # An event sent twice with the same id while retrying creates no second delivery.
    again = emit(own, known, event_id="while-down")
    assert again.status_code == 202, again.text
    assert again.json()["duplicate"] is True


def test_leader_steps_down_before_its_lease_runs_out(own: Setup) -> None:
    eventually(own.apiserver.ready, timeout=60, what="apiserver ready")
    lease_duration = 4  # OperatorProcess's --lease-duration
    operator = OperatorProcess(
        own.cluster.kubeconfig, own.workdir, f"op-{secrets.token_hex(3)}"
    ).start()
    try:
        eventually(lambda: "leading as" in operator.log(), timeout=60, what="operator leads")
        own.apiserver.pause()
        paused = time.monotonic()
        try:
            eventually(
                lambda: "could not renew lease" in operator.log(),
                timeout=30,
                interval=0.05,
                what="leader gives up",
            )
            gave_up = time.monotonic() - paused
            process = operator.process
            assert process is not None
            eventually(lambda: process.poll() is not None, timeout=30, what="operator exits")
        finally:
            own.apiserver.resume()
        # Before, a renewal against a hung apiserver never returned: a leader for good.
        assert gave_up < lease_duration, f"still leading {gave_up:.1f}s into a 4 s lease"
        assert process.returncode == 1, operator.log()[-2000:]
    finally:
        operator.stop()


def test_plugin_without_kubernetes(own: Setup, tmp_path: Path) -> None:
    """`kubectl webhooks pause` against a hung apiserver ends in seconds with exit code 3
    and one line saying what is wrong, not after minutes of silent retries."""
    eventually(own.apiserver.ready, timeout=60, what="apiserver ready")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "WEBHOOK_"))}
    env.update(HOME=str(tmp_path), WEBHOOK_OPERATOR_CACHE=str(tmp_path / "cache"), NO_COLOR="1")
    argv = [str(BIN / "kubectl-webhooks"), "pause", "ep", "-n", NAMESPACE]
    own.apiserver.pause()
    try:
        started = time.monotonic()
        result = subprocess.run(
            [*argv, f"--kubeconfig={own.cluster.kubeconfig}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        took = time.monotonic() - started
    finally:
        own.apiserver.resume()
    assert result.returncode == 3, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line
    assert "Traceback" not in line
    assert line.startswith("error: "), line
    assert "Kubernetes API" in line, line
    assert "did not answer" in line, line
    assert "object at 0x" not in line  # no urllib3 reprs
    assert took < 20, f"the plugin took {took:.0f}s"
