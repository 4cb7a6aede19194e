"""A customer holding a read ticket looks at their app before changing anything: the event
catalog (whose example payloads the delivery service accepts as they are) and the app's
analytics once deliveries have happened. An app with the portal turned off gets no ticket."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.harness import Cluster, DeliveryProcess, PortalProcess, Producer, Receiver, eventually
from tests.integration.portal_support import (
    apply_endpoint,
    backend,
    customer,
    make_app,
    ready,
    request_ticket,
    ticket,
)

PAID_SCHEMA = {
    "type": "object",
    "required": ["invoiceId", "amount", "paidAt"],
    "properties": {
        "invoiceId": {"type": "string", "minLength": 3},
        "amount": {"type": "integer", "minimum": 1},
        "paidAt": {"type": "string", "format": "date-time"},
        "payer": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
    },
}
CATALOG = (
    {
        "name": "invoice.paid",
        "category": "Billing",
        "description": "An invoice was paid.",
        "schema": PAID_SCHEMA,
    },
    {"name": "invoice.voided", "category": "Billing", "deprecated": True},
    {"name": "customer.deleted", "category": "Customers"},
)


def test_catalog_and_summary_of_an_app_with_two_endpoints(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
) -> None:
    make_app(cluster, namespace, portal={"eventTypes": ["invoice.*"]}, event_types=CATALOG)
    apply_endpoint(cluster, namespace, "orders", receiver.url("/orders"))
    apply_endpoint(cluster, namespace, "paused", receiver.url("/paused"), active=False)
    token = ticket(portal, backend(cluster, namespace, ["shop"]), namespace, "shop", scope="read")

    with customer(portal, token) as browser:
        response = browser.get("/catalog")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["categories"] == ["Billing", "Customers"]
        types = {t["name"]: t for t in answer["eventTypes"]}
        assert list(types) == ["invoice.paid", "invoice.voided", "customer.deleted"]
        paid = types["invoice.paid"]
        assert paid["schema"] == PAID_SCHEMA
        assert paid["description"] == "An invoice was paid."
        assert types["invoice.voided"]["deprecated"] is True
        assert {n: t["subscribable"] for n, t in types.items()} == {
            "invoice.paid": True,
            "invoice.voided": True,
            "customer.deleted": False,
        }
        assert paid["example"]["type"] == "invoice.paid"
        assert set(paid["example"]) == {"id", "type", "timestamp", "data"}

        # The example's data is what the producer may really send: the schema check at
        # ingest takes it, and the receiver gets a body of the example's shape.
        producer = Producer(cluster, namespace, ["shop"])
        emitted = httpx.post(
            f"{delivery_service.url}/v1/namespaces/{namespace}/apps/shop/events",
            json={"type": "invoice.paid", "data": paid["example"]["data"]},
            headers=producer.headers,
            timeout=10,
        )
        assert emitted.status_code == 202, emitted.text
        (arrived,) = eventually(lambda: receiver.received("/orders"), what="delivery arrives")  # type: ignore[misc]
        body = json.loads(arrived["body"])
        assert set(body) == set(paid["example"])
        assert body["data"] == paid["example"]["data"]

        def analytics() -> dict[str, Any]:
            got = browser.get("/summary")
            assert got.status_code == 200, got.text
            summary: dict[str, Any] = got.json()
            assert summary["endpoints"]["healthy"] == summary["endpoints"]["disabled"] == 1
            assert summary["deliveries"]["delivered"] >= 1, summary
            return summary

        summary = eventually(analytics, timeout=30, what="summary shows the delivery")
        assert isinstance(summary, dict)
        assert summary["app"] == "shop"
        assert summary["endpoints"] == {
            "total": 2,
            "pending": 0,
            "healthy": 1,
            "failing": 0,
            "disabled": 1,
            "maxEndpoints": 20,
        }
        assert summary["deliveries"]["window"]
        assert summary["deliveries"]["failed"] == 0
        assert summary["lastDeliveryTime"]
        assert summary["lastSuccessTime"]
        assert summary["lastFailureTime"] is None

    # Without a ticket there is nothing to read.
    assert httpx.get(f"{portal.url}/v1/portal/catalog", timeout=10).status_code == 401


def test_activity_of_the_tickets_app_per_hour(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
) -> None:
    receiver.respond("/broken", (500, {}, 0.0))
    make_app(cluster, namespace)
    apply_endpoint(cluster, namespace, "orders", receiver.url("/orders"))
    # Retried long after the test: its failures stay failures while the test looks.
    apply_endpoint(
        cluster, namespace, "broken", receiver.url("/broken"), retry={"schedule": ["1h"]}
    )
    ready(cluster, namespace, "orders")
    ready(cluster, namespace, "broken")
    token = ticket(portal, backend(cluster, namespace, ["shop"]), namespace, "shop", scope="read")
    producer = Producer(cluster, namespace, ["shop"])
    for _ in range(2):
        emitted = httpx.post(
            f"{delivery_service.url}/v1/namespaces/{namespace}/apps/shop/events",
            json={"type": "invoice.paid", "data": {}},
            headers=producer.headers,
            timeout=10,
        )
        assert emitted.status_code == 202, emitted.text

    with customer(portal, token) as browser:

        def counted() -> dict[str, Any] | None:
            got = browser.get("/activity")
            assert got.status_code == 200, got.text
            answer: dict[str, Any] = got.json()
            totals = [sum(b[k] for b in answer["buckets"]) for k in ("delivered", "failed")]
            return answer if totals == [2, 2] else None

        answer = eventually(counted, timeout=30, what="2 delivered and 2 failed")
        assert isinstance(answer, dict)
        assert answer["bucketSeconds"] == 3600
        assert len(answer["buckets"]) == 24
        assert answer["since"] == answer["buckets"][0]["start"]
        assert len(browser.get("/activity", params={"hours": 3}).json()["buckets"]) == 3
        refused = browser.get("/activity", params={"hours": 169})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["reason"] == "BadHours"

    assert httpx.get(f"{portal.url}/v1/portal/activity", timeout=10).status_code == 401


def test_no_ticket_for_an_app_with_the_portal_turned_off(
    cluster: Cluster, namespace: str, portal: PortalProcess
) -> None:
    make_app(cluster, namespace, name="internal", portal={"enabled": False})
    response = request_ticket(
        portal, backend(cluster, namespace, ["internal"]), namespace, "internal"
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["reason"] == "PortalDisabled"
