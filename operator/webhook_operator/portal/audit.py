"""What a customer changed through the portal, told where the platform team already looks:
a Kubernetes Event on the WebhookEndpoint (`kubectl describe`, `kubectl get events`).

Recording is a courtesy, not part of the change: a change that was made is answered as
made even when its Event cannot be posted (a warning is logged instead). The message names
the ticket's subject (who the platform's backend said the customer is), never the ticket.
It is posted before the answer goes out, so whoever reads Events right after a change
finds it there."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio import client

from webhook_operator.display_text import one_line

if TYPE_CHECKING:
    from webhook_operator.portal.context import Portal

log = logging.getLogger(__name__)
COMPONENT = "webhook-operator-portal"
# An Event's message is capped by the apiserver at 1 KiB of text; keep within it.
MAX_MESSAGE = 1024
# A slow apiserver must not hold the customer's answer for long.
TIMEOUT = 5.0


def event_body(obj: dict[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about `obj` (a WebhookEndpoint as the apiserver serves it)."""
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {
            "name": f"{meta.get('name', 'object')}.{secrets.token_hex(8)}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": "Normal",
        "reason": reason,
        "message": one_line(message, MAX_MESSAGE),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME", COMPONENT),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def record(portal: Portal, endpoint_obj: dict[str, Any], reason: str, message: str) -> None:
    """Post a Normal Event `reason` on the endpoint. Never raises (but for cancellation)."""
    try:
        body = event_body(
            endpoint_obj, reason, message, datetime.fromtimestamp(portal.clock(), UTC)
        )
        core: Any = client.CoreV1Api(portal.api)
        await asyncio.wait_for(
            core.create_namespaced_event(body["metadata"]["namespace"], body), TIMEOUT
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        name = (endpoint_obj.get("metadata") or {}).get("name")
        log.warning("could not record %s on WebhookEndpoint %s: %r", reason, name, exc)
