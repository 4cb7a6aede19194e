"""`helm install --wait` of the chart with default values on a real node: the image built
from the Dockerfile runs every Pod Ready under the chart's restricted security context; the
samples become Ready through the in-cluster operator; an event emitted with a
ServiceAccount token to the in-Pod delivery service reaches a local receiver signed
(verified with the public `standardwebhooks` library) and `kubectl get webhookendpoints`
shows Healthy. Only the host network and loopback ports differ from a user's install
(tests/node/hostnet.py says why)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from tests.harness import REPO, Receiver, eventually
from tests.node.conftest import RELEASE, Node
from webhook_operator.devcluster import chart

NAMESPACE = "webhook-system"
APPS = "billing-team"
GROUP = "webhook-operator.dev"


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def kubectl_json(node: Node, *args: str) -> Any:
    return json.loads(node.cluster.kubectl(*args, "-o", "json").stdout)


def condition(obj: dict[str, Any], kind: str) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def test_helm_install_runs_ready_pods_that_deliver_signed_events(
    node: Node, tmp_path: Path, receiver: Receiver
) -> None:
    kubectl = node.cluster.kubectl
    node.host_path_volume()
    plan = node.plan()
    values = {**node.image_values(), "delivery": {"allowCIDRs": ["127.0.0.1/32"]}}
    chart.helm(
        "install", RELEASE, str(chart.chart_dir(REPO)),
        "--namespace", NAMESPACE, "--create-namespace",
        "--wait", "--timeout=180s",
        "--post-renderer", str(node.post_renderer(tmp_path)),
        *chart.value_args(values),
        input=yaml.safe_dump(values),
        env=node.helm_env(tmp_path, plan),
        timeout=240,
    )  # fmt: skip

    pods = kubectl_json(node, "get", "pods", "-n", NAMESPACE)["items"]
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}
    assert components == {"operator", "delivery", "portal"}
    for pod in pods:
        assert condition(pod, "Ready"), pod["status"]
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["image"] == node.image
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["runAsUser"] == 65532
            assert context["capabilities"]["drop"] == ["ALL"]

    # The samples, applied as a user would, become Ready through the in-cluster operator.
    kubectl("create", "namespace", APPS)
    for sample in ("app.yaml", "endpoint.yaml", "emitter-rolebinding.yaml"):
        kubectl("apply", "-n", APPS, "-f", str(REPO / "manifests" / "samples" / sample))

    def samples_ready() -> bool:
        app = kubectl_json(node, "get", "webhookapp", "billing", "-n", APPS)
        ep = kubectl_json(node, "get", "webhookendpoint", "slack-notifier", "-n", APPS)
        return condition(app, "Ready") and condition(ep, "Ready")

    eventually(samples_ready, timeout=60, what="samples Ready")

    local = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "WebhookEndpoint",
        "metadata": {"name": "local-receiver"},
        "spec": {
            "appRef": {"name": "billing"},
            "url": receiver.url("/hook"),
            "allowInsecureHttp": True,
            "events": ["subscription.updated"],
        },
    }
    kubectl("apply", "-n", APPS, "-f", "-", input=json.dumps(local))
    eventually(
        lambda: condition(
            kubectl_json(node, "get", "webhookendpoint", "local-receiver", "-n", APPS), "Ready"
        ),
        timeout=60,
        what="local endpoint Ready",
    )

    token = kubectl("create", "token", "billing-service", "-n", APPS).stdout.strip()
    delivery = f"http://127.0.0.1:{plan['ports']['delivery']['http']}"

    def emitted() -> httpx.Response | None:
        # The delivery service sees the new endpoint through its watch: until then the
        # event reaches no endpoint.
        response = httpx.post(
            f"{delivery}/v1/namespaces/{APPS}/apps/billing/events",
            json={"type": "subscription.updated", "data": {"plan": "pro"}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response if response.json()["deliveries"] >= 1 else None

    response = eventually(emitted, timeout=30, interval=1.0, what="event accepted for delivery")
    assert response is not None
    requests = eventually(lambda: receiver.received("/hook"), timeout=30, what="delivery")
    secret_data = kubectl_json(node, "get", "secret", "local-receiver-signing-secret", "-n", APPS)[
        "data"
    ]
    secret = base64.b64decode(secret_data["secret"]).decode()
    payload = Webhook(secret).verify(requests[-1]["body"], requests[-1]["headers"])
    assert payload["type"] == "subscription.updated"
    assert payload["data"] == {"plan": "pro"}

    def healthy() -> bool:
        row = kubectl("get", "webhookendpoints", "local-receiver", "-n", APPS).stdout
        return "Healthy" in row

    eventually(healthy, timeout=60, what="kubectl get webhookendpoints shows Healthy")
