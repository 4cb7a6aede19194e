"""Fixtures shared by every test layer.

The `cluster` fixture gives the integration and e2e tests a real control plane: by default
one started on this machine for the session (etcd, kube-apiserver, kube-controller-manager);
with WEBHOOK_OPERATOR_TEST_KUBECONFIG, the existing cluster that kubeconfig names. Either
way the CRDs are installed first, and each test gets its own namespace.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook_operator.devcluster import LocalCluster, install_crds, resolve
from webhook_operator.devcluster.binaries import kubectl_binary
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
