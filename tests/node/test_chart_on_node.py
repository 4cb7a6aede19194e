"""The chart on a real node, as a user meets it, in the order a user lives it.

`helm install --wait` with default values: the image built from the Dockerfile runs every
Pod Ready under the chart's restricted security context; the samples become Ready through
the in-cluster operator; an event emitted with a ServiceAccount token to the in-Pod
delivery service reaches a local receiver signed (verified with the public
`standardwebhooks` library) and `kubectl get webhookendpoints` shows Healthy. Then the
delivery Pod is deleted with deliveries in flight, the release is upgraded to a new image
tag, the logs are read, the release is uninstalled and the plain manifests are applied.

One release serves the module (two operators would reconcile the same objects), so the
tests run in file order, each starting from where the previous one left the release. Only
the host network and loopback ports differ from a user's install (hostnet.py says why).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from tests.harness import REPO, Receiver, eventually
from tests.node import hostnet
from tests.node.conftest import RELEASE, Node
from webhook_operator.devcluster import chart

NAMESPACE = "webhook-system"
APPS = "billing-team"
GROUP = "webhook-operator.dev"
COMPONENT = "app.kubernetes.io/component"


@dataclass
class Release:
    node: Node
    directory: Path
    plan: dict[str, Any]
    receiver: Receiver
    tokens: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    @property
    def delivery(self) -> str:
        return f"http://127.0.0.1:{self.plan['ports']['delivery']['http']}"

    def helm(self, *args: str, values: dict[str, Any], timeout: float = 240) -> None:
        chart.helm(
            *args,
            "--post-renderer", str(self.node.post_renderer(self.directory)),
            *chart.value_args(values),
            input=yaml.safe_dump(values),
            env=self.node.helm_env(self.directory, self.plan),
            timeout=timeout,
        )  # fmt: skip

    def values(self, tag: str | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {
            **self.node.image_values(),
            "delivery": {"allowCIDRs": ["127.0.0.1/32"]},
        }
        if tag:
            values["image"]["tag"] = tag
        return values


@pytest.fixture(scope="module")
def release(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    receiver = Receiver()
    node.host_path_volume()
    yield Release(node, tmp_path_factory.mktemp("release"), node.plan(), receiver)
    receiver.close()


def kubectl_json(node: Node, *args: str) -> Any:
    return json.loads(node.cluster.kubectl(*args, "-o", "json").stdout)


def condition(obj: dict[str, Any], kind: str) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def pods(node: Node, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(node, "get", "pods", "-n", namespace)["items"]
    return items


def running_pods(node: Node, namespace: str) -> list[dict[str, Any]]:
    return [p for p in pods(node, namespace) if "deletionTimestamp" not in p["metadata"]]


def all_ready(node: Node, namespace: str, components: set[str]) -> bool:
    current = running_pods(node, namespace)
    found = {p["metadata"]["labels"][COMPONENT] for p in current}
    return found == components and all(condition(p, "Ready") for p in current)


def endpoint(name: str, url: str, events: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "WebhookEndpoint",
            "metadata": {"name": name},
            "spec": {
                "appRef": {"name": "billing"},
                "url": url,
                "allowInsecureHttp": True,
                "events": events,
            },
        }
    )


def wait_ready(node: Node, kind: str, name: str) -> None:
    eventually(
        lambda: condition(kubectl_json(node, "get", kind, name, "-n", APPS), "Ready"),
        timeout=60,
        what=f"{kind} {name} Ready",
    )


def emit(release: Release, token: str, type_: str, data: Any) -> httpx.Response:
    return httpx.post(
        f"{release.delivery}/v1/namespaces/{APPS}/apps/billing/events",
        json={"type": type_, "data": data},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def delivery_statuses(release: Release, endpoint_name: str) -> dict[str, str]:
    """Event id -> delivery status, from the delivery service's API (as the admin)."""
    info = release.node.local.info
    assert info is not None
    response = httpx.get(
        f"{release.delivery}/v1/namespaces/{APPS}/endpoints/{endpoint_name}/deliveries",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {info.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    return {d.get("eventId", d.get("event_id")): d["status"] for d in items}


def signing_secret(node: Node, name: str) -> str:
    data = kubectl_json(node, "get", "secret", f"{name}-signing-secret", "-n", APPS)["data"]
    return base64.b64decode(data["secret"]).decode()


def test_helm_install_runs_ready_pods_that_deliver_signed_events(release: Release) -> None:
    node, receiver = release.node, release.receiver
    kubectl = node.cluster.kubectl
    release.helm(
        "install", RELEASE, str(chart.chart_dir(REPO)),
        "--namespace", NAMESPACE, "--create-namespace", "--wait", "--timeout=180s",
        values=release.values(),
    )  # fmt: skip

    current = pods(node, NAMESPACE)
    assert {p["metadata"]["labels"][COMPONENT] for p in current} == {
        "operator",
        "delivery",
        "portal",
    }
    for pod in current:
        assert condition(pod, "Ready"), pod["status"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in pod["spec"]["containers"]:
            assert container["image"] == node.image
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["runAsUser"] == 65532
            assert context["capabilities"]["drop"] == ["ALL"]

    # The samples, applied as a user would, become Ready through the in-cluster operator.
    kubectl("create", "namespace", APPS)
    for sample in ("app.yaml", "endpoint.yaml", "emitter-rolebinding.yaml"):
        kubectl("apply", "-n", APPS, "-f", str(REPO / "manifests" / "samples" / sample))
    wait_ready(node, "webhookapp", "billing")
    wait_ready(node, "webhookendpoint", "slack-notifier")
    # Its URL is public: tests send traffic to loopback only, so it goes before any event
    # is emitted, and no test emits a type it subscribes to (invoice.*).
    kubectl("delete", "webhookendpoint", "slack-notifier", "-n", APPS)

    kubectl(
        "apply", "-n", APPS, "-f", "-",
        input=endpoint("local-receiver", receiver.url("/hook"), ["subscription.updated"]),
    )  # fmt: skip
    wait_ready(node, "webhookendpoint", "local-receiver")
    token = kubectl("create", "token", "billing-service", "-n", APPS).stdout.strip()
    release.tokens.append(token)

    def accepted() -> httpx.Response | None:
        # The delivery service learns of the new endpoint through its watch; until then
        # the event reaches no endpoint.
        response = emit(release, token, "subscription.updated", {"plan": "pro"})
        assert response.status_code == 202, response.text
        return response if response.json()["deliveries"] >= 1 else None

    eventually(accepted, timeout=30, interval=1.0, what="event accepted for delivery")
    requests = eventually(lambda: receiver.received("/hook"), timeout=30, what="delivery")
    assert isinstance(requests, list)
    payload = Webhook(signing_secret(node, "local-receiver")).verify(
        requests[-1]["body"], requests[-1]["headers"]
    )
    assert payload["type"] == "subscription.updated"
    assert payload["data"] == {"plan": "pro"}
    eventually(
        lambda: (
            "Healthy" in kubectl("get", "webhookendpoints", "local-receiver", "-n", APPS).stdout
        ),
        timeout=60,
        what="kubectl get webhookendpoints shows Healthy",
    )


def test_deleting_the_delivery_pod_mid_flight_loses_nothing(release: Release) -> None:
    node, receiver = release.node, release.receiver
    kubectl = node.cluster.kubectl
    # The first answers take 5 seconds: every delivery is in flight when the Pod goes.
    receiver.respond("/slow", *[(204, {}, 5.0)] * 9, (204, {}, 0.0))
    kubectl(
        "apply", "-n", APPS, "-f", "-",
        input=endpoint("slow-receiver", receiver.url("/slow"), ["subscription.updated"]),
    )  # fmt: skip
    wait_ready(node, "webhookendpoint", "slow-receiver")
    token = release.tokens[0]
    eventually(
        lambda: emit(release, token, "subscription.updated", {"n": -1}).json()["deliveries"] >= 2,
        timeout=30,
        interval=1.0,
        what="the delivery service knows the slow endpoint",
    )
    ids = []
    for n in range(8):
        response = emit(release, token, "subscription.updated", {"n": n})
        assert response.status_code == 202, response.text
        ids.append(response.json()["eventId"])
    release.event_ids = ids
    eventually(lambda: receiver.received("/slow"), timeout=30, what="first slow delivery")
    (old,) = [
        p["metadata"]["name"]
        for p in running_pods(node, NAMESPACE)
        if p["metadata"]["labels"][COMPONENT] == "delivery"
    ]
    kubectl("delete", "pod", old, "-n", NAMESPACE, "--wait=false")

    def replaced() -> bool:
        names = {p["metadata"]["name"] for p in running_pods(node, NAMESPACE)}
        return old not in names and all_ready(node, NAMESPACE, {"operator", "delivery", "portal"})

    eventually(replaced, timeout=120, interval=1.0, what="a new delivery Pod Ready")

    def all_delivered() -> bool:
        seen = {r["headers"]["webhook-id"] for r in receiver.received("/slow")}
        statuses = delivery_statuses(release, "slow-receiver")
        return set(ids) <= seen and all(statuses.get(i) == "delivered" for i in ids)

    eventually(all_delivered, timeout=120, interval=1.0, what="every in-flight event delivered")


def test_helm_upgrade_keeps_sqlite_data_and_moves_the_lease(release: Release) -> None:
    node = release.node
    assert node.local.runtime is not None
    new_tag = "upgrade"
    repository = node.image.rsplit(":", 1)[0]
    subprocess.run(
        ["ctr", f"--address={node.local.runtime.containerd_socket}", "-n", "k8s.io",
         "images", "tag", "--force", node.image, f"{repository}:{new_tag}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    before = {p["metadata"]["uid"] for p in running_pods(node, NAMESPACE)}
    release.helm(
        "upgrade", RELEASE, str(chart.chart_dir(REPO)),
        "--namespace", NAMESPACE, "--wait", "--timeout=180s",
        values=release.values(tag=new_tag),
    )  # fmt: skip
    eventually(
        lambda: (
            all_ready(node, NAMESPACE, {"operator", "delivery", "portal"})
            and not before & {p["metadata"]["uid"] for p in running_pods(node, NAMESPACE)}
        ),
        timeout=120,
        interval=1.0,
        what="every Pod replaced and Ready",
    )
    current = running_pods(node, NAMESPACE)
    for pod in current:
        assert pod["spec"]["containers"][0]["image"] == f"{repository}:{new_tag}"

    # Earlier deliveries are still listed: the SQLite file on the claim survived.
    assert set(release.event_ids) <= set(delivery_statuses(release, "slow-receiver"))

    # The Lease is held by the new operator Pod, by name, and renewed since it started.
    (operator,) = [p for p in current if p["metadata"]["labels"][COMPONENT] == "operator"]
    started = operator["status"]["startTime"]

    def held_by_new_pod() -> bool:
        spec = lease(node)
        return bool(
            spec.get("holderIdentity") == operator["metadata"]["name"]
            and spec.get("renewTime", "") > started
        )

    eventually(held_by_new_pod, timeout=60, interval=1.0, what="Lease held by the new Pod")


def lease(node: Node) -> dict[str, Any]:
    spec: dict[str, Any] = kubectl_json(
        node, "get", "lease", f"{RELEASE}-operator", "-n", NAMESPACE
    )["spec"]
    return spec


def operator_pods(node: Node) -> list[dict[str, Any]]:
    return [
        p for p in running_pods(node, NAMESPACE) if p["metadata"]["labels"][COMPONENT] == "operator"
    ]


def test_two_operator_replicas_the_standby_takes_over_from_a_deleted_leader(
    release: Release,
) -> None:
    node = release.node
    values = release.values(tag="upgrade")
    values["operator"] = {"replicas": 2, "leaseDuration": 6}
    release.helm(
        "upgrade", RELEASE, str(chart.chart_dir(REPO)),
        "--namespace", NAMESPACE, "--wait", "--timeout=180s",
        values=values,
    )  # fmt: skip
    eventually(
        lambda: (
            len(operator_pods(node)) == 2
            and all(condition(p, "Ready") for p in operator_pods(node))
        ),
        timeout=120,
        interval=1.0,
        what="two operator Pods Ready",
    )
    names = {p["metadata"]["name"] for p in operator_pods(node)}
    eventually(lambda: lease(node).get("holderIdentity") in names, timeout=60, what="a leader")
    leader = lease(node)["holderIdentity"]
    (standby,) = names - {leader}

    node.cluster.kubectl("delete", "pod", leader, "-n", NAMESPACE, "--wait=false")
    # The leader hands the Lease back as it stops; the standby polls for it, and so does the
    # Pod the Deployment starts in the leader's place: whichever asks first leads.
    survivors: set[str] = set()

    def led_by_another_pod() -> bool:
        survivors.clear()
        survivors.update(p["metadata"]["name"] for p in operator_pods(node))
        return lease(node).get("holderIdentity") in survivors - {leader}

    eventually(led_by_another_pod, timeout=60, interval=0.5, what="the Lease held by a survivor")
    new_leader = lease(node)["holderIdentity"]
    print(f"leader {leader} deleted; {new_leader} leads (the standby was {standby})")
    # The new leader reconciles: an endpoint created now becomes Ready.
    manifest = endpoint(
        "after-failover", release.receiver.url("/failover"), ["subscription.updated"]
    )
    node.cluster.kubectl("apply", "-n", APPS, "-f", "-", input=manifest)
    wait_ready(node, "webhookendpoint", "after-failover")
    # The Deployment keeps two replicas without the deleted Pod; the leader stays.
    eventually(
        lambda: (
            len(operator_pods(node)) == 2
            and leader not in {p["metadata"]["name"] for p in operator_pods(node)}
        ),
        timeout=120,
        interval=1.0,
        what="two operator Pods without the deleted one",
    )
    assert lease(node)["holderIdentity"] == new_leader


def test_logs_show_no_secret_no_token_no_traceback(release: Release) -> None:
    node = release.node
    for pod in running_pods(node, NAMESPACE):
        name = pod["metadata"]["name"]
        logs = node.cluster.kubectl("logs", name, "-n", NAMESPACE, "--all-containers").stdout
        assert "whsec_" not in logs, name
        assert "Traceback" not in logs, f"{name}:\n{logs[-3000:]}"
        for token in release.tokens:
            assert token not in logs, name
            assert token.split(".")[-1] not in logs, name


def test_helm_uninstall_removes_pods_and_keeps_crds_and_resources(release: Release) -> None:
    node = release.node
    chart.helm(
        "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=120s",
        env=node.helm_env(release.directory, release.plan),
        timeout=180,
    )  # fmt: skip
    eventually(lambda: not pods(node, NAMESPACE), timeout=60, what="Pods gone")
    for crd in (f"webhookapps.{GROUP}", f"webhookendpoints.{GROUP}"):
        node.cluster.kubectl("get", "crd", crd)
    kubectl_json(node, "get", "webhookapp", "billing", "-n", APPS)
    kubectl_json(node, "get", "webhookendpoint", "local-receiver", "-n", APPS)


def test_kubectl_apply_of_the_manifests_runs_the_same_pods(release: Release) -> None:
    node = release.node
    node.host_path_volume()
    plan = release.node.plan()
    docs = chart.documents((REPO / "manifests" / "webhook-operator.yaml").read_text())
    rewritten = []
    for doc in docs:
        doc = hostnet.rewrite(doc, plan)
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["image"] = node.image
                container["imagePullPolicy"] = "Never"
        rewritten.append(doc)
    namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    stream = yaml.safe_dump_all(rewritten)
    node.cluster.kubectl("apply", "-f", "-", input=stream)
    try:
        eventually(
            lambda: all_ready(node, namespace, {"operator", "delivery", "portal"}),
            timeout=180,
            interval=1.0,
            what="the manifests' Pods Ready",
        )
    finally:
        non_crds = [d for d in rewritten if d["kind"] != "CustomResourceDefinition"]
        node.cluster.kubectl(
            "delete", "--wait=true", "--ignore-not-found", "-f", "-",
            input=yaml.safe_dump_all(non_crds), check=False,
        )  # fmt: skip
