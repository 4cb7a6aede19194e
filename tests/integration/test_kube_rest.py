"""The small Kubernetes client against the real apiserver, with each way of finding it:
a kubeconfig with a token, tokenFile or an exec credential plugin, and in-cluster
credentials found as client-go finds them (KUBERNETES_SERVICE_HOST/PORT, the mounted
ServiceAccount token and CA)."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import Cluster
from webhook_operator.kube_rest import KubeApiError, KubeRest, from_kubeconfig, in_cluster

APPS = "/apis/webhook-operator.dev/v1alpha1/namespaces/{}/webhookapps"


def admin(cluster: Cluster) -> tuple[dict[str, Any], str, bytes]:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    return config, token, ca


def listed(rest: KubeRest, namespace: str) -> list[str]:
    async def go() -> list[str]:
        try:
            found = await rest.get(APPS.format(namespace))
            return [i["metadata"]["name"] for i in found["items"]]
        finally:
            await rest.close()

    return asyncio.run(go())


@pytest.fixture
def an_app(cluster: Cluster, namespace: str) -> str:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "webhook-operator.dev/v1alpha1",
                "kind": "WebhookApp",
                "metadata": {"name": "billing"},
                "spec": {},
            }
        ),
    )
    return "billing"


def test_in_cluster_credentials(
    cluster: Cluster, namespace: str, an_app: str, tmp_path: Path
) -> None:
    config, token, ca = admin(cluster)
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_bytes(ca)
    server = config["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    assert listed(KubeRest(in_cluster(env, tmp_path)), namespace) == [an_app]


def test_in_cluster_without_a_mounted_token_says_so(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    with pytest.raises(Exception, match="token is not mounted"):
        in_cluster(env, tmp_path)


def test_kubeconfig_with_a_token_file(
    cluster: Cluster, namespace: str, an_app: str, tmp_path: Path
) -> None:
    config, token, _ = admin(cluster)
    (tmp_path / "token").write_text(token)
    config["users"][0]["user"] = {"tokenFile": "token"}  # relative to the kubeconfig
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    assert listed(KubeRest(from_kubeconfig(str(tmp_path / "config"), {})), namespace) == [an_app]


def test_kubeconfig_with_an_exec_plugin(
    cluster: Cluster, namespace: str, an_app: str, tmp_path: Path
) -> None:
    config, token, _ = admin(cluster)
    plugin = tmp_path / "plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"},
    }
    plugin.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(credential))})\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    assert listed(KubeRest(from_kubeconfig(str(tmp_path / "config"), {})), namespace) == [an_app]


def test_a_refusal_carries_the_apiservers_status(cluster: Cluster, tmp_path: Path) -> None:
    config, _, _ = admin(cluster)
    config["users"][0]["user"] = {"token": "not-a-token"}
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    with pytest.raises(KubeApiError) as info:
        listed(KubeRest(from_kubeconfig(str(tmp_path / "config"), {})), "default")
    assert info.value.status == 401
