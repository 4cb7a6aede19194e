"""What the portal tests share: an app with a catalog, a platform backend allowed to issue
tickets, and a customer's HTTP client holding a ticket."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from kubernetes import client

from tests.harness import Cluster, PortalProcess, Producer, eventually

GROUP, VERSION = "webhook-operator.dev", "v1alpha1"
CATALOG = (
    {"name": "invoice.paid", "category": "Billing", "description": "An invoice was paid."},
    {"name": "invoice.created", "category": "Billing"},
    {"name": "customer.deleted", "category": "Customers"},
)


def make_app(
    cluster: Cluster,
    namespace: str,
    name: str = "shop",
    portal: dict[str, Any] | None = None,
    event_types: tuple[dict[str, Any], ...] = CATALOG,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"eventTypes": list(event_types), **spec}
    if portal is not None:
        body["portal"] = portal
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookApp",
        "metadata": {"name": name},
        "spec": body,
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    return obj


def apply_endpoint(
    cluster: Cluster,
    namespace: str,
    name: str,
    url: str,
    app: str = "shop",
    events: tuple[str, ...] = ("invoice.*",),
    **spec: Any,
) -> None:
    """A WebhookEndpoint as Git would declare it (no portal label): plain http allowed, for
    the receivers on 127.0.0.1."""
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookEndpoint",
        "metadata": {"name": name},
        "spec": {
            "appRef": {"name": app},
            "url": url,
            "allowInsecureHttp": True,
            "events": list(events),
            **spec,
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "webhookendpoints", name
        )
        conditions = (obj.get("status") or {}).get("conditions") or []
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return obj if ok else None

    found: dict[str, Any] = eventually(check, what=f"endpoint {name} Ready")
    return found


def backend(cluster: Cluster, namespace: str, apps: list[str], name: str = "backend") -> Producer:
    """The platform's backend: a ServiceAccount allowed to issue tickets for `apps`."""
    return Producer(cluster, namespace, apps, name=name, verbs=("issue-tickets",))


def request_ticket(
    portal: PortalProcess,
    issuer: Producer,
    namespace: str,
    app: str,
    **body: Any,
) -> httpx.Response:
    """POST access-tickets, waiting (bounded) while the portal's watch has not yet seen a
    just-created app."""
    body.setdefault("subject", "acme-corp/alice@example.com")
    deadline = time.monotonic() + 15
    while True:
        response = httpx.post(
            f"{portal.url}/v1/namespaces/{namespace}/apps/{app}/access-tickets",
            json=body,
            headers=issuer.headers,
            timeout=10,
        )
        if response.status_code != 404 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def ticket(portal: PortalProcess, issuer: Producer, namespace: str, app: str, **body: Any) -> str:
    response = request_ticket(portal, issuer, namespace, app, **body)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


def customer(portal: PortalProcess, token: str) -> httpx.Client:
    """The customer's browser, as an HTTP client holding the ticket."""
    return httpx.Client(
        base_url=f"{portal.url}/v1/portal",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
