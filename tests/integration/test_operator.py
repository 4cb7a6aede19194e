"""The operator as a user meets it: apply an app and endpoints, and within seconds get a
signing secret, a truthful status and readable reasons. The operator runs as a real
subprocess against the real apiserver."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.harness import Cluster, OperatorProcess, eventually
from webhook_operator.signing import decode_secret

GROUP, VERSION = "webhook-operator.dev", "v1alpha1"


def app(
    name: str = "billing", types: tuple[str, ...] = ("invoice.paid", "invoice.created"), **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookApp",
        "metadata": {"name": name},
        "spec": {"eventTypes": [{"name": t, "category": "Billing"} for t in types], **spec},
    }


def endpoint(
    name: str = "ep",
    app_name: str = "billing",
    events: tuple[str, ...] = ("invoice.*",),
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookEndpoint",
        "metadata": meta,
        "spec": {
            "appRef": {"name": app_name},
            "url": "https://example.com/hook",
            "events": list(events),
            **spec,
        },
    }


def apply(cluster: Cluster, namespace: str, *objs: dict[str, Any]) -> None:
    for obj in objs:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def get(cluster: Cluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(cluster.api)
    obj: dict[str, Any] = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


def wait_ready(
    cluster: Cluster,
    namespace: str,
    name: str,
    status: str = "True",
    reason: str | None = None,
    plural: str = "webhookendpoints",
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, namespace, plural, name)
        ready = condition(obj, "Ready")
        if ready.get("status") == status and (reason is None or ready.get("reason") == reason):
            return obj
        return None

    result = eventually(check, what=f"{plural}/{name} Ready={status} {reason or ''}")
    assert isinstance(result, dict)
    return result


def secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def events(cluster: Cluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    items = client.CoreV1Api(cluster.api).list_namespaced_event(namespace).items
    return [(e.type, e.reason, e.message) for e in items if e.involved_object.name == name]


@pytest.fixture(autouse=True)
def _running(operator: OperatorProcess) -> None:
    assert operator.process is not None
    assert operator.process.poll() is None, operator.log()


def test_endpoint_gets_a_generated_secret_and_turns_ready(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, app(), endpoint())
    obj = wait_ready(cluster, namespace, "ep")
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["health"] == "Pending"
    assert obj["status"]["secret"]["secretName"] == "ep-signing-secret"

    secret = client.CoreV1Api(cluster.api).read_namespaced_secret("ep-signing-secret", namespace)
    value = base64.b64decode(secret.data["secret"]).decode()
    assert value.startswith("whsec_")
    assert len(decode_secret(value)) >= 24
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("WebhookEndpoint", "ep", obj["metadata"]["uid"])
    assert secret.metadata.labels["webhook-operator.dev/endpoint"] == "ep"
    assert secret.metadata.labels["webhook-operator.dev/app"] == "billing"
    # The secret never leaks into status or Events.
    assert value not in json.dumps(obj)
    assert all(value not in m for _, _, m in events(cluster, namespace, "ep"))
    assert ("Normal", "SecretCreated") in [(t, r) for t, r, _ in events(cluster, namespace, "ep")]

    row = cluster.kubectl("get", "whe", "ep", "-n", namespace, "-o", "wide").stdout.splitlines()[1]
    assert "Pending" in row
    assert "True" in row


def test_app_status_summarises_endpoints_and_catalog(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, app(), endpoint("a"), endpoint("b"))

    def summarised() -> bool:
        status = get(cluster, namespace, "webhookapps", "billing").get("status", {})
        return status.get("endpoints") == 2 and status.get("pendingEndpoints") == 2

    eventually(summarised, what="app counts its endpoints")
    obj = wait_ready(cluster, namespace, "billing", plural="webhookapps")
    assert obj["status"]["eventTypes"] == ["invoice.paid", "invoice.created"]
    assert obj["status"]["categories"] == ["Billing"]
    _header, row = cluster.kubectl("get", "wha", "-n", namespace).stdout.splitlines()[:2]
    assert row.split()[1:3] == ["2", "0"]


def test_invalid_event_schema_makes_the_app_not_ready(cluster: Cluster, namespace: str) -> None:
    bad = app()
    bad["spec"]["eventTypes"][0]["schema"] = {"type": "no-such-type"}
    apply(cluster, namespace, bad)
    obj = wait_ready(
        cluster, namespace, "billing", "False", "InvalidEventSchema", plural="webhookapps"
    )
    assert "invoice.paid" in condition(obj, "Ready")["message"]


def test_user_secret_is_used_and_never_modified(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="mine"),
            string_data={"signing": "whsec_" + base64.b64encode(b"k" * 32).decode()},
        ),
    )
    before = core.read_namespaced_secret("mine", namespace)
    apply(cluster, namespace, app(), endpoint(secretRef={"name": "mine", "key": "signing"}))
    obj = wait_ready(cluster, namespace, "ep")
    assert condition(obj, "SecretReady")["reason"] == "SecretFromRef"
    after = core.read_namespaced_secret("mine", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert not after.metadata.owner_references
    names = [s.metadata.name for s in core.list_namespaced_secret(namespace).items]
    assert "ep-signing-secret" not in names


def test_user_secret_problems_show_and_recover(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    apply(cluster, namespace, app(), endpoint(secretRef={"name": "mine"}))
    obj = wait_ready(cluster, namespace, "ep", "False", "SecretNotFound")
    assert "create it" in condition(obj, "Ready")["message"]

    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="mine"), string_data={"other": "x"}),
    )
    wait_ready(cluster, namespace, "ep", "False", "SecretKeyMissing")

    core.patch_namespaced_secret("mine", namespace, {"stringData": {"secret": "whsec_short"}})
    obj = wait_ready(cluster, namespace, "ep", "False", "SecretInvalid")
    assert "whsec_short" not in json.dumps(obj)  # even a bad secret is not echoed

    good = "whsec_" + base64.b64encode(b"s" * 24).decode()
    core.patch_namespaced_secret("mine", namespace, {"stringData": {"secret": good}})
    wait_ready(cluster, namespace, "ep")
    assert ("Warning", "SecretNotFound") in [(t, r) for t, r, _ in events(cluster, namespace, "ep")]


def test_missing_app_then_created(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, endpoint())
    obj = wait_ready(cluster, namespace, "ep", "False", "AppNotFound")
    assert "WebhookApp billing does not exist" in condition(obj, "Ready")["message"]
    apply(cluster, namespace, app())
    wait_ready(cluster, namespace, "ep")  # without touching the endpoint


def test_unknown_event_type_then_catalog_extended(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, app(), endpoint(events=("invoice.paid", "refund.issued")))
    obj = wait_ready(cluster, namespace, "ep", "False", "UnknownEventTypes")
    assert "refund.issued" in condition(obj, "Ready")["message"]
    apply(cluster, namespace, app(types=("invoice.paid", "refund.issued")))
    wait_ready(cluster, namespace, "ep")


def test_deleting_the_app_leaves_endpoints_not_ready(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, app(), endpoint())
    wait_ready(cluster, namespace, "ep")
    cluster.kubectl("delete", "webhookapp", "billing", "-n", namespace)
    wait_ready(cluster, namespace, "ep", "False", "AppNotFound")
    get(cluster, namespace, "webhookendpoints", "ep")  # still there: no cascade


def test_deleting_the_endpoint_deletes_its_secret(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, app(), endpoint())
    wait_ready(cluster, namespace, "ep")
    cluster.kubectl("delete", "webhookendpoint", "ep", "-n", namespace)
    core = client.CoreV1Api(cluster.api)
    eventually(
        lambda: (
            "ep-signing-secret"
            not in [s.metadata.name for s in core.list_namespaced_secret(namespace).items]
        ),
        timeout=90,
        what="generated secret garbage-collected",
    )


def test_spec_change_updates_observed_generation(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, app(), endpoint())
    wait_ready(cluster, namespace, "ep")
    apply(cluster, namespace, endpoint(events=("invoice.paid",)))
    eventually(
        lambda: (
            get(cluster, namespace, "webhookendpoints", "ep")["status"]["observedGeneration"] == 2
        ),
        what="observedGeneration follows the spec",
    )


def test_pausing_shows_disabled(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, app(), endpoint(active=False))
    obj = wait_ready(cluster, namespace, "ep")
    eventually(
        lambda: get(cluster, namespace, "webhookendpoints", "ep")["status"]["health"] == "Disabled"
    )
    obj = get(cluster, namespace, "webhookendpoints", "ep")
    assert obj["status"]["disabledReason"] == "Paused"


def rotate(cluster: Cluster, namespace: str, value: str) -> None:
    cluster.kubectl(
        "annotate",
        "webhookendpoint",
        "ep",
        "-n",
        namespace,
        "--overwrite",
        f"webhook-operator.dev/rotate-secret={value}",
    )


def test_rotation_keeps_the_old_secret_for_the_grace_period(
    cluster: Cluster, namespace: str
) -> None:
    apply(cluster, namespace, app(), endpoint(secretRotation={"gracePeriod": "4s"}))
    wait_ready(cluster, namespace, "ep")
    original = secret_data(cluster, namespace, "ep-signing-secret")["secret"]
    rotate(cluster, namespace, "one")

    data = eventually(
        lambda: (d := secret_data(cluster, namespace, "ep-signing-secret")).get("previous") and d
    )
    assert isinstance(data, dict)
    assert data["previous"] == original
    assert data["secret"] != original
    eventually(
        lambda: get(cluster, namespace, "webhookendpoints", "ep")["status"]["secret"].get(
            "previousExpiresAt"
        )
    )
    assert ("Normal", "SecretRotated") in [(t, r) for t, r, _ in events(cluster, namespace, "ep")]

    # After the grace period the previous key goes, with nobody touching anything.
    eventually(
        lambda: "previous" not in secret_data(cluster, namespace, "ep-signing-secret"),
        timeout=20,
        what="previous secret removed after grace",
    )
    eventually(
        lambda: (
            not get(cluster, namespace, "webhookendpoints", "ep")["status"]["secret"].get(
                "previousExpiresAt"
            )
        )
    )


def test_rotation_with_zero_grace_drops_the_old_secret_at_once(
    cluster: Cluster, namespace: str
) -> None:
    apply(cluster, namespace, app(), endpoint(secretRotation={"gracePeriod": "0s"}))
    wait_ready(cluster, namespace, "ep")
    original = secret_data(cluster, namespace, "ep-signing-secret")["secret"]
    rotate(cluster, namespace, "now")
    data = eventually(
        lambda: (
            (d := secret_data(cluster, namespace, "ep-signing-secret"))["secret"] != original and d
        )
    )
    assert isinstance(data, dict)
    assert "previous" not in data


def test_same_annotation_value_rotates_once_even_across_restarts(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(
        cluster,
        namespace,
        app(),
        endpoint(annotations={"webhook-operator.dev/rotate-secret": "v1"}),
    )
    wait_ready(cluster, namespace, "ep")
    # Created with the annotation already set: creating is not a rotation.
    first = secret_data(cluster, namespace, "ep-signing-secret")
    assert "previous" not in first

    rotate(cluster, namespace, "v2")
    second = eventually(
        lambda: (
            (d := secret_data(cluster, namespace, "ep-signing-secret"))["secret"] != first["secret"]
            and d
        )
    )
    assert isinstance(second, dict)

    operator.restart()
    rotate(cluster, namespace, "v2")  # same value again: nothing to do
    cluster.kubectl("label", "webhookendpoint", "ep", "-n", namespace, "touched=yes")
    wait_ready(cluster, namespace, "ep")
    time.sleep(3)
    assert secret_data(cluster, namespace, "ep-signing-secret")["secret"] == second["secret"]


def test_second_replica_waits_as_standby_and_takes_over(
    cluster: Cluster, namespace: str, operator: OperatorProcess, tmp_path: Any
) -> None:
    operator.stop()  # the two replicas under test are the only operators
    try:
        with leader_and_standby(cluster, tmp_path, f"ha-{namespace}", namespace) as (first, second):
            apply(cluster, namespace, app(), endpoint())
            wait_ready(cluster, namespace, "ep")
            assert "leading as" not in second.log()

            first.stop(signal.SIGKILL)  # no clean hand-over: the lease must expire
            eventually(lambda: "leading as" in second.log(), timeout=30, what="standby takes over")
            apply(cluster, namespace, endpoint("after"))
            wait_ready(cluster, namespace, "after")
    finally:
        operator.start()


@contextlib.contextmanager
def leader_and_standby(
    cluster: Cluster, tmp_path: Any, lease: str, namespace: str, *args: str
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """Two operator replicas on one Lease: the first leading, the second waiting."""
    extra = ("--namespace", namespace, *args)
    first = OperatorProcess(cluster.kubeconfig, tmp_path, lease[:60], *extra)
    second = OperatorProcess(cluster.kubeconfig, tmp_path, lease[:60], *extra)
    second.log_path = tmp_path / "second.log"
    try:
        first.start()
        eventually(lambda: "leading as" in first.log(), what="first replica leads")
        second.start()
        eventually(lambda: "standby" in second.log(), what="second replica waits")
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_a_standby_takes_a_lease_handed_back_at_once(
    cluster: Cluster, namespace: str, tmp_path: Any
) -> None:
    """A leader that stops cleanly hands the Lease back; the standby, watching it, leads at
    once instead of at its next poll (every 50 s with a 300 s Lease), so it is not beaten by
    the Pod a Deployment starts in the old leader's place."""
    lease = f"handover-{namespace}"
    with leader_and_standby(cluster, tmp_path, lease, namespace, "--lease-duration=300") as (
        first,
        second,
    ):
        time.sleep(1)  # the standby's first poll is behind it
        first.stop()
        eventually(lambda: "leading as" in second.log(), timeout=10, what="standby takes over")


def test_scheduled_rotation(cluster: Cluster, namespace: str) -> None:
    apply(
        cluster, namespace, app(), endpoint(secretRotation={"gracePeriod": "1h", "interval": "3s"})
    )
    wait_ready(cluster, namespace, "ep")
    original = secret_data(cluster, namespace, "ep-signing-secret")["secret"]
    data = eventually(
        lambda: (
            (d := secret_data(cluster, namespace, "ep-signing-secret"))["secret"] != original and d
        ),
        timeout=20,
        what="secret rotated on schedule",
    )
    assert isinstance(data, dict)
    assert data["previous"] == original


SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def test_samples_apply_and_become_ready(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(SAMPLES))
    wait_ready(cluster, namespace, "billing", plural="webhookapps")
    for name in ("slack-notifier", "erp-sync"):
        wait_ready(cluster, namespace, name)
    assert "whsec_" in secret_data(cluster, namespace, "slack-notifier-signing-secret")["secret"]
    out = cluster.kubectl("get", "webhookendpoints", "-n", namespace).stdout
    assert "Pending" in out


def test_probes_answer(operator: OperatorProcess) -> None:
    port = next(a.split("=", 1)[1] for a in operator.args if a.startswith("--probe-port="))
    for path in ("/healthz", "/readyz"):
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        assert response.status_code == 200
        assert response.json()["role"] == "leader"
