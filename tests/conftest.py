"""Fixtures shared by every test layer.

The `cluster` fixture gives the integration and e2e tests a real control plane: by default
one started on this machine for the session (etcd, kube-apiserver, kube-controller-manager);
with WEBHOOK_OPERATOR_TEST_KUBECONFIG, the existing cluster that kubeconfig names. Either
way the CRDs are installed first, and each test gets its own namespace.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, PortalProcess, slug
from webhook_operator.devcluster import LocalCluster, install_crds, resolve


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


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the controller-manager empties it)."""
    name = f"t-{slug(request.node.name)}-{secrets.token_hex(3)}"
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


@pytest.fixture(scope="session")
def delivery_service(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeliveryProcess]:
    """The delivery service (SQLite) for the session. Deliveries may reach 127.0.0.1 only:
    the rest of the loopback range stands in for the addresses the SSRF guard refuses."""
    workdir = tmp_path_factory.mktemp("delivery")
    proc = DeliveryProcess(cluster.kubeconfig, workdir, f"sqlite:///{workdir / 'delivery.db'}")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, delivery_service: DeliveryProcess
) -> Iterator[OperatorProcess]:
    """One operator for the session, watching every namespace, fed by the delivery service."""
    proc = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator"),
        f"op-{secrets.token_hex(3)}",
        f"--delivery-url={delivery_service.url}",
        # A leader that cannot renew gives up (and exits, for its Deployment to restart
        # it). The harness's 4 s lease is for the failover tests; with it, a loop starved
        # for 2.7 s on a busy machine ended the session's only operator, and every later
        # test waited for a Ready that never came.
        "--lease-duration=15",
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def portal(
    cluster: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
    delivery_service: DeliveryProcess,
    operator: OperatorProcess,
) -> Iterator[PortalProcess]:
    """The portal for the session, in front of the session's delivery service and operator.
    Tests make requests faster than people do: the per-ticket limit is raised (its own test
    starts a portal with a low one)."""
    proc = PortalProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("portal"),
        delivery_service.url,
        "--ticket-rate=200",
    ).start()
    yield proc
    proc.stop()
