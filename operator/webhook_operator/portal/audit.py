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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubernetes_asyncio import client

from webhook_operator.display_text import one_line
from webhook_operator.kube_events import MAX_MESSAGE, event_body

if TYPE_CHECKING:
    from webhook_operator.portal.context import Portal

log = logging.getLogger(__name__)
COMPONENT = "webhook-operator-portal"
# A slow apiserver must not hold the customer's answer for long.
TIMEOUT = 5.0


async def record(portal: Portal, endpoint_obj: dict[str, Any], reason: str, message: str) -> None:
    """Post a Normal Event `reason` on the endpoint. Never raises (but for cancellation)."""
    try:
        body = event_body(
            endpoint_obj,
            "Normal",
            reason,
            one_line(message, MAX_MESSAGE),
            component=COMPONENT,
            instance=os.environ.get("HOSTNAME", COMPONENT),
            now=datetime.fromtimestamp(portal.clock(), UTC),
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
