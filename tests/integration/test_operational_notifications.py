"""Operational notifications end to end: an app names an operational endpoint, one of its
endpoints fails, is disabled and recovers, and the operational endpoint receives each
change once, as events signed with its own secret (checked with `standardwebhooks`)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.harness import Cluster, DeliveryProcess, Producer, Receiver, eventually
from tests.integration.test_delivery import (
    app,
    apply,
    deliveries,
    emit,
    endpoint,
    get,
    ready,
    secret_values,
)
from tests.integration.test_operator import events

pytestmark = pytest.mark.usefixtures("operator")

OPS = "webhook-operator.endpoint"


def ops_app(failing_after: int) -> dict[str, Any]:
    billing = app()
    billing["spec"]["operationalEndpointRef"] = {"name": "ops"}
    billing["spec"]["operationalFailingAfter"] = failing_after
    return billing


def platform() -> dict[str, Any]:
    # The platform team's own app, without a catalog: its endpoint may subscribe to
    # anything, and receives the operational events whatever it subscribes to.
    return {**app("platform", ()), "spec": {}}


def told(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in receiver.received("/ops")]


def test_failing_disabled_and_recovered_reach_the_operational_endpoint_once_each(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/orders", (503, {}, 0.0))
    apply(
        cluster,
        namespace,
        platform(),
        ops_app(failing_after=2),
        endpoint("ops", receiver.url("/ops"), events=("audit.*",), app_name="platform"),
        # Attempts 2 s apart: the operator reads results every second, and sees the streak.
        endpoint("orders", receiver.url("/orders"), retry={"schedule": ["2s", "2s", "2s"]}),
    )
    ready(cluster, namespace, "ops")
    ready(cluster, namespace, "orders")
    producer = Producer(cluster, namespace, ["billing", "platform"])
    assert emit(delivery_service, namespace, producer).status_code == 202

    eventually(
        lambda: [e["type"] for e in told(receiver)] == [f"{OPS}.failing", f"{OPS}.disabled"],
        timeout=40,
        what="failing, then disabled, at the operational endpoint",
    )
    failing, disabled = receiver.received("/ops")
    secret = secret_values(cluster, namespace, "ops")["secret"]
    for request in (failing, disabled):
        Webhook(secret).verify(request["body"], request["headers"])
    failing_data = json.loads(failing["body"])["data"]
    assert failing_data["namespace"] == namespace
    assert failing_data["app"] == "billing"
    assert failing_data["endpoint"] == "orders"
    assert failing_data["consecutiveFailures"] >= 2
    assert failing_data["lastHttpStatus"] == 503
    assert json.loads(disabled["body"])["data"]["reason"] == "RetriesExhausted"

    # The operational events are in the platform app's delivery log, as any event is.
    logged = deliveries(delivery_service, namespace, producer, "ops")["items"]
    assert sorted(d["eventType"] for d in logged) == [f"{OPS}.disabled", f"{OPS}.failing"]

    receiver.respond("/orders", (204, {}, 0.0))
    cluster.kubectl("annotate", "whe", "orders", "-n", namespace, "webhook-operator.dev/enable=1")
    eventually(
        lambda: (
            get(cluster, namespace, "webhookendpoints", "orders")
            .get("status", {})
            .get("disabledReason")
            is None
        ),
        timeout=20,
        what="orders enabled again",
    )
    assert (
        emit(delivery_service, namespace, producer, data={"invoiceId": "in_2"}).status_code == 202
    )
    eventually(
        lambda: [e["type"] for e in told(receiver)][-1:] == [f"{OPS}.recovered"],
        timeout=30,
        what="recovered at the operational endpoint",
    )
    recovered = receiver.received("/ops")[-1]
    Webhook(secret).verify(recovered["body"], recovered["headers"])
    assert json.loads(recovered["body"])["data"]["was"] == "disabled"

    # Each change once: the status is reconciled many times over, and still nothing more.
    time.sleep(3)
    assert [e["type"] for e in told(receiver)] == [
        f"{OPS}.failing",
        f"{OPS}.disabled",
        f"{OPS}.recovered",
    ]


def test_the_internal_route_refuses_what_is_not_a_notification(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    apply(
        cluster, namespace, platform(), endpoint("ops", receiver.url("/ops"), app_name="platform")
    )
    ready(cluster, namespace, "ops")
    producer = Producer(cluster, namespace, ["platform"], verbs=("get", "list"))
    url = f"{delivery_service.url}/internal/v1/namespaces/{namespace}/endpoints/ops/notifications"
    body = {"type": f"{OPS}.failing", "id": "k1", "data": {}}
    refused = httpx.post(url, json=body, headers=producer.headers, timeout=10)
    assert refused.status_code == 403, refused.text

    emitter = Producer(cluster, namespace, ["platform"], name="emitter", verbs=("emit",))
    wrong = httpx.post(
        url, json={**body, "type": "invoice.paid"}, headers=emitter.headers, timeout=10
    )
    assert wrong.status_code == 422, wrong.text
    assert "webhook-operator.endpoint.failing" in wrong.json()["error"]["message"]
    first = httpx.post(url, json=body, headers=emitter.headers, timeout=10)
    again = httpx.post(url, json=body, headers=emitter.headers, timeout=10)
    assert first.status_code == again.status_code == 202, again.text
    assert first.json()["duplicate"] is False
    assert again.json() == {**first.json(), "deliveryId": None, "duplicate": True}
    eventually(lambda: receiver.received("/ops"), what="the notification delivered")
    time.sleep(1)
    assert len(receiver.received("/ops")) == 1


def test_an_operational_endpoint_that_does_not_exist_is_a_warning_on_the_app(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/orders", (410, {}, 0.0))
    billing = app()
    billing["spec"]["operationalEndpointRef"] = {"name": "nobody"}
    apply(cluster, namespace, billing, endpoint("orders", receiver.url("/orders")))
    ready(cluster, namespace, "orders")
    producer = Producer(cluster, namespace, ["billing"])
    assert emit(delivery_service, namespace, producer).status_code == 202

    def warned() -> list[tuple[str, str, str]]:
        return [
            e
            for e in events(cluster, namespace, "billing")
            if e[1] == "OperationalEndpointNotFound"
        ]

    (warning,) = eventually(warned, timeout=30, what="a Warning Event on the app")  # type: ignore[misc]
    assert warning[0] == "Warning"
    assert "WebhookEndpoint nobody, which does not exist" in warning[2]
    assert "webhook-operator.endpoint.disabled was not sent" in warning[2]
