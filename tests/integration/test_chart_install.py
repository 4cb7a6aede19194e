"""The chart and the plain manifests against a real apiserver: accepted by server-side
validation (admission, RBAC escalation checks, CRD schemas), installable and uninstallable
with helm, and granting in practice what the unit tests read off the rules.

There is no kubelet or scheduler here, so nothing waits for pods (`helm install` without
--wait); the Deployments are accepted and their pods stay Pending.

Cluster-scoped objects (ClusterRoles, ClusterRoleBindings, CRDs) are shared by every test
in the session: each install gets a release name of its own, and each test removes what it
created."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import REPO, Cluster, eventually
from webhook_operator.devcluster import chart

GROUP = "webhook-operator.dev"
CRDS = [f"webhookapps.{GROUP}", f"webhookendpoints.{GROUP}"]
MONITORING_GROUP = "monitoring.coreos.com"
MONITORING_KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}
PG_VALUES = {
    "delivery": {
        "replicas": 3,
        "store": {"type": "postgresql", "postgresql": {"existingSecret": "webhook-db"}},
    }
}
MONITORING_VALUES = {
    "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
}


def release_name() -> str:
    return f"wo-{secrets.token_hex(3)}"


def identities(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs}


@pytest.fixture
def helm_env(cluster: Cluster, tmp_path: Path) -> dict[str, str]:
    """helm against the test cluster, its cache and config in the test's own directory."""
    env = dict(os.environ)
    env["KUBECONFIG"] = str(cluster.kubeconfig)
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        path = tmp_path / name.lower()
        path.mkdir()
        env[name] = str(path)
    return env


def can_i(
    cluster: Cluster,
    who: str,
    verb: str,
    resource: str,
    namespace: str | None,
    subresource: str | None = None,
) -> bool:
    """`kubectl auth can-i` as `who`; namespace None asks at cluster scope."""
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    extra = [f"--subresource={subresource}"] if subresource else []
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, *scope, *extra, f"--as={who}", check=False
    )
    return result.stdout.strip() == "yes"


def sa(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def restrict(cluster: Cluster, namespace: str) -> None:
    """The restricted Pod Security Standard on the namespace: enforced for pods, and
    warned about for the Deployments whose pods would violate it."""
    cluster.kubectl(
        "label", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip


def dry_run(cluster: Cluster, stream: str) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=stream, check=False)
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr
    objects = len(chart.documents(stream))
    assert result.stdout.count("(server dry run)") == objects, result.stdout


def pods_of(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """A Pod per Deployment, as its ReplicaSet would create it (there is no controller here
    to do so), for the Pod Security admission to judge."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{d['metadata']['name']}-probe", "namespace": namespace},
            "spec": d["spec"]["template"]["spec"],
        }
        for d in docs
        if d["kind"] == "Deployment"
    ]


def test_default_chart_passes_server_side_dry_run(cluster: Cluster, namespace: str) -> None:
    restrict(cluster, namespace)
    stream = chart.render(release=release_name(), namespace=namespace, include_crds=True)
    kinds = {d["kind"] for d in chart.documents(stream)}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "Role"} <= kinds
    dry_run(cluster, stream)


@pytest.fixture(scope="module")
def monitoring_crds(cluster: Cluster) -> Iterator[None]:
    """The Prometheus Operator's two kinds, as schemaless stand-ins, unless the cluster
    already has the real ones (then they are used and left alone). The chart's objects
    are checked against the real schema nowhere here; the unit tests read them."""
    created = []
    for kind, plural in MONITORING_KINDS.items():
        name = f"{plural}.{MONITORING_GROUP}"
        if cluster.kubectl("get", "crd", name, check=False).returncode == 0:
            continue
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": MONITORING_GROUP,
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        cluster.kubectl("create", "-f", "-", input=json.dumps(crd))
        created.append(name)
    try:
        for name in created:
            cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")

        def served() -> bool:
            out = cluster.kubectl("api-resources", f"--api-group={MONITORING_GROUP}", "-o", "name")
            return all(f"{p}.{MONITORING_GROUP}" in out.stdout for p in MONITORING_KINDS.values())

        eventually(served, timeout=60, what="monitoring.coreos.com in discovery")
        yield
    finally:
        for name in created:
            # Waits for the deletion: a CRD still Terminating looks present to whoever
            # checks next, then vanishes under it.
            cluster.kubectl("delete", "crd", name, "--ignore-not-found", "--timeout=60s")


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(PG_VALUES, id="postgresql-3-replicas"),
        pytest.param(MONITORING_VALUES, id="monitoring"),
        pytest.param({"operator": {"replicas": 2}}, id="operator-standby"),
    ],
)
@pytest.mark.usefixtures("monitoring_crds")
def test_variants_pass_server_side_dry_run(
    cluster: Cluster, namespace: str, values: dict[str, Any]
) -> None:
    restrict(cluster, namespace)
    stream = chart.render(values, release=release_name(), namespace=namespace)
    kinds = {d["kind"] for d in chart.documents(stream)}
    if values is PG_VALUES:
        assert "PodDisruptionBudget" in kinds
        assert "PersistentVolumeClaim" not in kinds
    if values is MONITORING_VALUES:
        assert set(MONITORING_KINDS) <= kinds
    dry_run(cluster, stream)


def test_helm_install_then_uninstall_keeps_the_crds(
    cluster: Cluster, namespace: str, helm_env: dict[str, str]
) -> None:
    release = release_name()
    restrict(cluster, namespace)
    installed = chart.helm(
        "install", release, str(chart.chart_dir()), "--namespace", namespace, env=helm_env
    )
    assert "PodSecurity" not in installed.stderr, installed.stderr
    # NOTES.txt rendered and tells how to let a producer emit.
    assert f"--clusterrole={release}-webhook-operator-emitter" in installed.stdout
    try:
        manifest = chart.helm("get", "manifest", release, "-n", namespace, env=helm_env).stdout
        docs = chart.documents(manifest)
        # Helm installs crds/ before the templates and never tracks (or deletes) them.
        assert "CustomResourceDefinition" not in {d["kind"] for d in docs}
        expected = identities(docs)
        kinds = {kind for kind, _, _ in expected}
        assert kinds >= {
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "PersistentVolumeClaim",
        }
        listed = json.loads(cluster.kubectl("get", "-f", "-", "-o", "json", input=manifest).stdout)
        items = listed["items"] if listed.get("kind") == "List" else [listed]
        assert identities(items) == expected
        cluster.kubectl("get", "crd", *CRDS)
        check_pod_security(cluster, namespace, docs)
        check_permissions(cluster, namespace, release)
    finally:
        chart.helm("uninstall", release, "-n", namespace, env=helm_env)

    cluster_scoped = [(k, n) for k, ns, n in expected if not ns]
    assert cluster_scoped
    for kind, name in cluster_scoped:
        result = cluster.kubectl("get", kind, name, "--ignore-not-found", "-o", "name")
        assert result.stdout.strip() == "", f"{kind} {name} survived helm uninstall"
    cluster.kubectl("get", "crd", *CRDS)


def check_pod_security(cluster: Cluster, namespace: str, docs: list[dict[str, Any]]) -> None:
    """The pods the Deployments would run pass the restricted standard's admission (their
    ServiceAccounts exist now, which a dry run of the Pods needs)."""
    pods = pods_of(docs, namespace)
    assert len(pods) == 3
    for pod in pods:
        result = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
        )
        assert result.returncode == 0, result.stderr
    # The admission is really on: the same pod keeping its capabilities is refused.
    bad = json.loads(json.dumps(pods[0]))
    del bad["spec"]["containers"][0]["securityContext"]["capabilities"]
    refused = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert refused.returncode != 0
    assert "PodSecurity" in refused.stderr, refused.stderr


def check_permissions(cluster: Cluster, namespace: str, release: str) -> None:
    """What the installed RBAC allows, asked of the apiserver's own authorizer."""
    fullname = f"{release}-webhook-operator"
    operator = sa(namespace, f"{fullname}-operator")
    delivery = sa(namespace, f"{fullname}-delivery")
    endpoints, apps = f"webhookendpoints.{GROUP}", f"webhookapps.{GROUP}"

    assert can_i(cluster, operator, "patch", endpoints, "elsewhere", subresource="status")
    assert can_i(cluster, operator, "create", "secrets", "elsewhere")
    assert can_i(cluster, operator, "list", endpoints, None)
    assert not can_i(cluster, operator, "update", endpoints, "elsewhere"), "spec is GitOps'"
    assert can_i(cluster, operator, "create", "leases.coordination.k8s.io", namespace)
    assert can_i(
        cluster, operator, "update", f"leases.coordination.k8s.io/{fullname}-operator", namespace
    )
    assert not can_i(cluster, operator, "update", "leases.coordination.k8s.io/other", namespace)
    assert not can_i(cluster, operator, "create", "leases.coordination.k8s.io", "default")

    assert can_i(cluster, delivery, "watch", apps, None)
    assert can_i(cluster, delivery, "get", "secrets", "elsewhere")
    assert can_i(cluster, delivery, "create", "tokenreviews.authentication.k8s.io", None)
    assert can_i(cluster, delivery, "create", "subjectaccessreviews.authorization.k8s.io", None)
    for verb in ("create", "update", "patch", "delete"):
        assert not can_i(cluster, delivery, verb, "secrets", "elsewhere")
        assert not can_i(cluster, delivery, verb, endpoints, "elsewhere")

    portal = sa(namespace, f"{fullname}-portal")
    key = f"secrets/{fullname}-portal-ticket-key"
    assert can_i(cluster, portal, "create", endpoints, "elsewhere")
    assert can_i(cluster, portal, "delete", endpoints, "elsewhere")
    assert can_i(cluster, portal, "update", apps, "elsewhere"), "ping, resend, replay"
    assert not can_i(cluster, portal, "patch", endpoints, "elsewhere", subresource="status")
    assert can_i(cluster, portal, "get", "secrets", "elsewhere")
    for verb in ("list", "watch", "create", "update", "patch", "delete"):
        assert not can_i(cluster, portal, verb, "secrets", "elsewhere"), verb
    assert can_i(cluster, portal, "create", "secrets", namespace)
    assert can_i(cluster, portal, "update", key, namespace)
    assert not can_i(cluster, portal, "update", "secrets/other", namespace)
    assert not can_i(cluster, portal, "delete", key, namespace)
    assert can_i(cluster, portal, "create", "events", "elsewhere")
    assert can_i(cluster, portal, "create", "subjectaccessreviews.authorization.k8s.io", None)
    assert not can_i(cluster, portal, "issue-tickets", apps, "elsewhere")

    # The built-in roles pick up the chart's rules through the controller-manager's
    # ClusterRole aggregation; the emitter role is bound explicitly.
    for name, role in (("viewer", "view"), ("editor", "edit"), ("owner", "admin")):
        cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
        cluster.kubectl(
            "create", "rolebinding", name, "-n", namespace,
            f"--clusterrole={role}", f"--serviceaccount={namespace}:{name}",
        )  # fmt: skip
    cluster.kubectl("create", "serviceaccount", "producer", "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "producer", "-n", namespace,
        f"--clusterrole={fullname}-emitter", f"--serviceaccount={namespace}:producer",
    )  # fmt: skip
    viewer, editor, owner = (sa(namespace, n) for n in ("viewer", "editor", "owner"))
    producer = sa(namespace, "producer")

    def aggregated() -> bool:
        return (
            can_i(cluster, viewer, "list", endpoints, namespace)
            and can_i(cluster, editor, "create", endpoints, namespace)
            and can_i(cluster, owner, "delete", apps, namespace)
        )

    eventually(aggregated, timeout=60, interval=0.5, what="ClusterRole aggregation")
    assert can_i(cluster, viewer, "get", apps, namespace)
    assert not can_i(cluster, viewer, "create", endpoints, namespace)
    assert not can_i(cluster, viewer, "update", apps, namespace), "replay needs edit"
    assert can_i(cluster, editor, "update", apps, namespace)
    assert not can_i(cluster, editor, "patch", endpoints, namespace, subresource="status")
    assert can_i(cluster, producer, "emit", apps, namespace)
    assert not can_i(cluster, producer, "emit", apps, "elsewhere")
    assert not can_i(cluster, producer, "list", endpoints, namespace)
    # Issuing tickets is bound explicitly too, never inherited from admin or edit.
    assert not can_i(cluster, owner, "issue-tickets", apps, namespace)
    cluster.kubectl("create", "serviceaccount", "backend", "-n", namespace)
    cluster.kubectl(
        "create", "rolebinding", "backend", "-n", namespace,
        f"--clusterrole={fullname}-ticket-issuer", f"--serviceaccount={namespace}:backend",
    )  # fmt: skip
    backend = sa(namespace, "backend")
    assert can_i(cluster, backend, "issue-tickets", apps, namespace)
    assert not can_i(cluster, backend, "issue-tickets", apps, "elsewhere")
    assert not can_i(cluster, backend, "get", apps, namespace)


def _namespace_gone(cluster: Cluster, name: str) -> bool:
    result = cluster.kubectl("get", "namespace", name, "--ignore-not-found", "-o", "name")
    return result.stdout.strip() == ""


def test_plain_manifests_then_samples_apply(cluster: Cluster, namespace: str) -> None:
    path = chart.manifest_path()
    docs = chart.documents(path.read_text())
    target = docs[0]["metadata"]["name"]
    existing = cluster.kubectl("get", "namespace", target, "--ignore-not-found", "-o", "json")
    if existing.stdout.strip():
        phase = json.loads(existing.stdout)["status"]["phase"]
        if phase != "Terminating":
            pytest.skip(f"namespace {target} exists: not touching a real installation")
        eventually(lambda: _namespace_gone(cluster, target), timeout=120, what="old namespace")

    # Removed afterwards: everything but the CRDs, which the rest of the session uses.
    leftovers = yaml.safe_dump_all([d for d in docs if d["kind"] != "CustomResourceDefinition"])
    try:
        applied = cluster.kubectl("apply", "-f", str(path))
        assert "PodSecurity" not in applied.stderr, applied.stderr
        for deployment in ("webhook-operator-operator", "webhook-operator-delivery"):
            cluster.kubectl("get", "deployment", deployment, "-n", target)
        cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "manifests" / "samples"))
        cluster.kubectl("get", "webhookapp", "billing", "-n", namespace)
        cluster.kubectl("get", "webhookendpoint", "slack-notifier", "erp-sync", "-n", namespace)
        producer = sa(namespace, "billing-service")
        apps = f"webhookapps.{GROUP}"
        # The sample's subject has no namespace: RBAC reads it as the binding's own.
        eventually(
            lambda: can_i(cluster, producer, "emit", apps, namespace),
            timeout=30,
            what="billing-service may emit",
        )
        assert not can_i(cluster, producer, "emit", apps, "default")
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=leftovers)
    gone = cluster.kubectl("get", "clusterrole", "webhook-operator-emitter", "--ignore-not-found")
    assert gone.stdout.strip() == ""
