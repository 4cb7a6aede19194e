"""Start and stop a real local control plane: etcd, kube-apiserver and
kube-controller-manager as child processes on loopback, and on request (`node=True`) a
real node that runs Pods (see `node`).

Used by the pytest fixtures and by `webhook-operator cluster up` and `dev`. The
apiserver runs with secure serving, RBAC, a static admin token and ServiceAccount token
signing, so TokenReview, SubjectAccessReview and `kubectl create token` behave as in a
real cluster; the controller-manager adds garbage collection, namespace deletion and
default ServiceAccounts.

The pieces die with the process that started them, even when it is killed (see
`lifetime`): start a cluster from the main thread, or from a thread that outlives it.
"""

from __future__ import annotations

import secrets
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from webhook_operator.devcluster import pki as pki_mod
from webhook_operator.devcluster.binaries import ControlPlaneBinaries
from webhook_operator.devcluster.kubeconfig import write_kubeconfig
from webhook_operator.devcluster.lifetime import Child, spawn
from webhook_operator.devcluster.node import NODE_CONTROLLERS, NODE_NAME, Node

_CONTROLLERS = ",".join(
    [
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "clusterrole-aggregation-controller",
        "root-ca-certificate-publisher-controller",
    ]
)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ClusterStartError(RuntimeError):
    """A piece of the control plane failed to start; the message has its log's tail."""


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a running cluster."""

    kubeconfig: Path
    server: str
    token: str
    ca_cert: Path | None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalCluster:
    """A control plane rooted in `workdir` (data, keys, logs, kubeconfig)."""

    workdir: Path
    binaries: ControlPlaneBinaries
    children: list[Child] = field(default_factory=list)
    info: ClusterInfo | None = None
    # Opt-in: containerd + kubelet + kube-scheduler, so Deployments run real Pods.
    node: bool = False
    runtime: Node | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> ClusterInfo:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        keys = pki_mod.create(self.workdir / "pki")
        token = secrets.token_urlsafe(32)
        token_file = self.workdir / "tokens.csv"
        lines = [f"{token},admin,admin-uid,system:masters"]
        node_token = secrets.token_urlsafe(32)
        if self.node:
            # The Node authorizer knows a kubelet by this user name and group.
            lines.append(f"{node_token},system:node:{NODE_NAME},node-uid,system:nodes")
        token_file.write_text("\n".join(lines) + "\n")
        token_file.chmod(0o600)

        deadline = time.monotonic() + timeout
        try:
            etcd_url = self._start_etcd()
            self._wait_http(f"{etcd_url}/health", deadline, "etcd")
            port = free_port()
            server = f"https://127.0.0.1:{port}"
            self._start_apiserver(port, etcd_url, keys, token_file)
            self._wait_apiserver(server, token, keys.ca_cert, deadline)
            kubeconfig = write_kubeconfig(
                self.workdir / "kubeconfig", server=server, token=token, ca_cert=keys.ca_cert
            )
            self.info = ClusterInfo(
                kubeconfig=kubeconfig, server=server, token=token, ca_cert=keys.ca_cert
            )
            if self.binaries.controller_manager is not None:
                self._start_controller_manager(kubeconfig, keys)
                self._wait_default_service_account(deadline)
            if self.node:
                self._start_node(server, node_token, kubeconfig, keys, deadline)
        except BaseException:
            self.stop()
            raise
        return self.info

    def stop(self, grace: float = 10.0) -> None:
        if self.runtime is not None:
            self.runtime.stop(grace)
            self.runtime = None
        # One at a time, last started first: an apiserver whose etcd is already gone waits
        # out its whole grace period instead of shutting down in about a second.
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.log.close()
        self.children.clear()

    def __enter__(self) -> ClusterInfo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def dead_children(self) -> list[str]:
        """Names of pieces that exited; a healthy cluster has none."""
        dead = [c.name for c in self.children if c.process.poll() is not None]
        if self.runtime is not None:
            dead += self.runtime.dead()
        return dead

    # -- pieces ----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> Child:
        child = spawn(name, argv, self.workdir / "logs")
        self.children.append(child)
        return child

    def _start_etcd(self) -> str:
        client = f"http://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        self._spawn(
            "etcd",
            [
                *self.binaries.etcd,
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                # Throwaway clusters: skip fsync so each write is not a disk flush.
                "--unsafe-no-fsync",
            ],
        )
        return client

    def _start_apiserver(
        self, port: int, etcd_url: str, keys: pki_mod.Pki, token_file: Path
    ) -> None:
        self._spawn(
            "kube-apiserver",
            [
                *self.binaries.kube_apiserver,
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The endpoint reconciler refuses a loopback advertise address.
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                f"--tls-cert-file={keys.serving_cert}",
                f"--tls-private-key-file={keys.serving_key}",
                f"--client-ca-file={keys.ca_cert}",
                f"--token-auth-file={token_file}",
                *self._node_apiserver_flags(keys),
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={keys.sa_public_key}",
                f"--service-account-signing-key-file={keys.sa_private_key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--profiling=false",
            ],
        )

    def _start_controller_manager(self, kubeconfig: Path, keys: pki_mod.Pki) -> None:
        assert self.binaries.controller_manager is not None
        self._spawn(
            "kube-controller-manager",
            [
                *self.binaries.controller_manager,
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                f"--service-account-private-key-file={keys.sa_private_key}",
                f"--root-ca-file={keys.ca_cert}",
                f"--controllers={self._controllers()}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--profiling=false",
            ],
        )

    def _controllers(self) -> str:
        if self.node:
            return ",".join([_CONTROLLERS, *NODE_CONTROLLERS])
        return _CONTROLLERS

    def _node_apiserver_flags(self, keys: pki_mod.Pki) -> list[str]:
        if not self.node:
            return ["--authorization-mode=RBAC"]
        client = pki_mod.issue_client(
            keys, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
        )
        return [
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={client.cert}",
            f"--kubelet-client-key={client.key}",
            # The node is named and addressed 127.0.0.1: logs and exec stay on loopback.
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _start_node(
        self, server: str, node_token: str, kubeconfig: Path, keys: pki_mod.Pki, deadline: float
    ) -> None:
        if self.binaries.controlplane is None:
            raise ClusterStartError(
                "a node needs the controlplane binary's kubelet: unset KUBEBUILDER_ASSETS"
            )
        self.runtime = Node(scratch=self.workdir / "node", controlplane=self.binaries.controlplane)
        self.runtime.start(
            server=server,
            node_token=node_token,
            admin_kubeconfig=kubeconfig,
            keys=keys,
            kubelet_port=free_port(),
            healthz_port=free_port(),
            scheduler_port=free_port(),
            timeout=max(deadline - time.monotonic(), 10.0),
        )
        self._wait_node_ready(deadline)

    def _wait_node_ready(self, deadline: float) -> None:
        """Ready and untainted: the scheduler places Pods on it from then on."""
        assert self.info is not None
        headers = {"Authorization": f"Bearer {self.info.token}"}
        url = f"{self.info.server}/api/v1/nodes/{NODE_NAME}"
        verify = ssl.create_default_context(cafile=str(self.info.ca_cert))
        with httpx.Client(verify=verify, headers=headers, timeout=3.0) as client:
            while True:
                self._check_alive()
                try:
                    response = client.get(url)
                    if response.status_code == 200 and _node_schedulable(response.json()):
                        return
                except httpx.HTTPError:
                    pass
                self._sleep_or_fail(deadline, "the node")

    # -- readiness -------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.runtime is not None:
            for proc in self.runtime.procs:
                code = proc.process.poll()
                if code is not None:
                    proc.log.flush()
                    tail = proc.log_path.read_text(errors="replace")[-3000:]
                    raise ClusterStartError(
                        f"{proc.name} exited with code {code}; log {proc.log_path}:\n{tail}"
                    )
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise ClusterStartError(
                    f"{child.name} exited with code {code}; log {child.log_path}:\n"
                    f"{child.log_tail()}"
                )

    def _wait_http(self, url: str, deadline: float, what: str) -> None:
        while True:
            self._check_alive()
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            self._sleep_or_fail(deadline, what)

    def _wait_apiserver(self, server: str, token: str, ca: Path, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        verify = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=verify, headers=headers, timeout=3.0) as client:
            while True:
                self._check_alive()
                try:
                    if client.get(f"{server}/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                self._sleep_or_fail(deadline, "kube-apiserver")

    def _wait_default_service_account(self, deadline: float) -> None:
        """The controller-manager is working once it has made the default ServiceAccount."""
        assert self.info is not None
        headers = {"Authorization": f"Bearer {self.info.token}"}
        url = f"{self.info.server}/api/v1/namespaces/default/serviceaccounts/default"
        verify: ssl.SSLContext | bool = True
        if self.info.ca_cert:
            verify = ssl.create_default_context(cafile=str(self.info.ca_cert))
        with httpx.Client(verify=verify, headers=headers, timeout=3.0) as client:
            while True:
                self._check_alive()
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                self._sleep_or_fail(deadline, "kube-controller-manager")

    def _sleep_or_fail(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c.name}:\n{c.log_tail(1500)}" for c in self.children)
            if self.runtime is not None:
                for proc in self.runtime.procs:
                    proc.log.flush()
                    tail = proc.log_path.read_text(errors="replace")[-1500:]
                    logs += f"\n--- {proc.name}:\n{tail}"
            raise ClusterStartError(f"{what} did not become ready in time\n{logs}")
        time.sleep(0.2)


def _node_schedulable(node: dict[str, object]) -> bool:
    status = node.get("status")
    spec = node.get("spec")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    ready = any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    )
    taints = spec.get("taints", []) if isinstance(spec, dict) else []
    return ready and not taints
