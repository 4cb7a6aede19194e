"""What the portal's browser tests share: opening the portal with a ticket link, emitting
events as a producer, and reading what the receiver got (signatures verified with the
public Standard Webhooks library)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page
from standardwebhooks import Webhook

from tests.harness import DeliveryProcess, PortalProcess, Producer, Receiver, eventually
from tests.integration.portal_support import request_ticket

SUBJECT = "acme-corp/alice@example.com"


def open_portal(
    page: Page,
    portal: PortalProcess,
    issuer: Producer,
    namespace: str,
    app: str = "shop",
    **body: Any,
) -> None:
    """Open the portal as a customer would: the ticket link, which lands on the endpoints."""
    body.setdefault("subject", SUBJECT)
    link = request_ticket(portal, issuer, namespace, app, **body)
    assert link.status_code == 201, link.text
    page.goto(link.json()["portalUrl"])
    page.wait_for_url(re.compile(r"/endpoints$"))


UNLABELLED = """
() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(c => c.type !== 'hidden' && !c.hidden)
  .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
               && !c.getAttribute('aria-labelledby')
               && !(c.tagName === 'BUTTON' && c.textContent.trim()))
  .map(c => c.outerHTML)
"""


def unlabelled(page: Page) -> list[str]:
    """The page's controls a screen reader could not name."""
    found: list[str] = page.evaluate(UNLABELLED)
    return found


def emit(
    svc: DeliveryProcess, namespace: str, producer: Producer, app: str, refs: list[str]
) -> list[str]:
    """Emit one invoice.paid event per ref, in order; their event ids."""
    ids = []
    with httpx.Client(headers=producer.headers, timeout=10) as http:
        for ref in refs:
            response = http.post(
                f"{svc.url}/v1/namespaces/{namespace}/apps/{app}/events",
                json={"type": "invoice.paid", "data": {"ref": ref, "items": [1, 2]}},
            )
            assert response.status_code == 202, response.text
            ids.append(str(response.json()["eventId"]))
    return ids


def arrived(receiver: Receiver, path: str, event_id: str) -> list[dict[str, Any]]:
    return [r for r in receiver.received(path) if r["headers"].get("webhook-id") == event_id]


def listed(
    svc: DeliveryProcess, namespace: str, producer: Producer, endpoint: str, status: str
) -> list[dict[str, Any]]:
    """The endpoint's deliveries of a status, as the delivery service has them."""
    answer = httpx.get(
        f"{svc.url}/v1/namespaces/{namespace}/endpoints/{endpoint}/deliveries",
        params={"status": status, "limit": 200},
        headers=producer.headers,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def headers_of(request: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in request["headers"].items()}


def verified(secret: str, request: dict[str, Any]) -> Any:
    """The body, once the signature checks out with `secret` (raises otherwise)."""
    headers = headers_of(request)
    return Webhook(secret).verify(
        request["body"],
        {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")},
    )


def pinged(receiver: Receiver, path: str, after: int) -> dict[str, Any]:
    """The first ping `path` received after its first `after` requests."""

    def ping() -> dict[str, Any] | None:
        got = [r for r in receiver.received(path)[after:] if b'"webhook.ping"' in r["body"]]
        return got[0] if got else None

    found: dict[str, Any] = eventually(ping, what=f"a ping at {path}")
    return found
