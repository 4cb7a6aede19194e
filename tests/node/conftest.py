"""Fixtures for the tests that run the chart's Pods under a real kubelet.

One node per session (its name, 127.0.0.1, and its cgroups are the machine's only ones):
a control plane of its own with containerd, kubelet and kube-scheduler (see
webhook_operator.devcluster.node), the image built from the Dockerfile (cached by source
hash) loaded into it. Every test in this folder is marked `node`; they need root and
`bash .ci/install-node`.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Cluster
from webhook_operator.devcluster import LocalCluster, images, resolve
from webhook_operator.devcluster.cluster import free_port

HOSTNET = Path(__file__).with_name("hostnet.py")
RELEASE = "webhook-operator"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.fspath):
            item.add_marker(pytest.mark.node)


class Node:
    """The node's cluster, the image name loaded into it, and helpers to install on it."""

    def __init__(self, cluster: Cluster, local: LocalCluster, image: str, workdir: Path):
        self.cluster = cluster
        self.local = local
        self.image = image
        self.workdir = workdir
        self.apiserver_port = int(cluster_server(local).rsplit(":", 1)[1])
        self.volumes = 0

    def host_path_volume(self, size: str = "1Gi") -> str:
        """A PersistentVolume on a folder of the node's scratch space, for one claim."""
        self.volumes += 1
        name = f"node-volume-{self.volumes}"
        path = self.workdir / "volumes" / name
        path.mkdir(parents=True)
        # hostPath ignores fsGroup: the chart's user must own the folder itself.
        os.chown(path, 65532, 65532)
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path), "type": "Directory"},
            },
        }
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(volume))
        return name

    def plan(self) -> dict[str, Any]:
        """Free loopback ports for each component's named ports (see hostnet.py)."""
        return {
            "apiserver_port": self.apiserver_port,
            "ports": {
                "delivery": {"http": free_port(), "metrics": free_port()},
                "operator": {"probes": free_port()},
                "portal": {"http": free_port()},
            },
        }

    def helm_env(self, directory: Path, plan: dict[str, Any]) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.cluster.kubeconfig)
        env["NODE_TEST_PLAN"] = json.dumps(plan)
        for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            path = directory / name.lower()
            path.mkdir(parents=True, exist_ok=True)
            env[name] = str(path)
        return env

    def post_renderer(self, directory: Path) -> Path:
        script = directory / "hostnet"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HOSTNET}" "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return script

    def image_values(self) -> dict[str, Any]:
        repository, tag = self.image.rsplit(":", 1)
        return {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}}


def cluster_server(local: LocalCluster) -> str:
    assert local.info is not None
    return local.info.server


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    archive = images.build_image()
    image = images.archive_image(archive)
    workdir = tmp_path_factory.mktemp("node")
    local = LocalCluster(workdir=workdir / "cluster", binaries=resolve(), node=True)
    info = local.start(timeout=180)
    try:
        assert local.runtime is not None
        local.runtime.import_image(archive)
        cluster = Cluster(info.kubeconfig, local)
        yield Node(cluster, local, image, workdir)
        cluster.api.close()
    finally:
        local.stop()
