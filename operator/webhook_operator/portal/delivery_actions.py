"""What a customer can do with the ticket's app's deliveries, once, for every way in: the
tenant API (deliveries_api.py) and the web page call these and only translate requests
and answers.

Everything goes through the delivery service's API with the portal's own credentials; the
customer's ticket never leaves the portal. The namespace and the app always come from the
ticket: an endpoint must be one of the ticket's app's (404 when the namespace has none by
that name, 403 when another app's, without naming it), and a delivery must have been of an
event of the ticket's app (403 otherwise). Resend, replay and ping are changes: each is
recorded as an Event on the endpoint naming the ticket's subject."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from webhook_operator.api import delivery_wire as w
from webhook_operator.http_api.errors import ApiError
from webhook_operator.portal import audit
from webhook_operator.portal.context import Portal
from webhook_operator.portal.endpoint_actions import owned_endpoint
from webhook_operator.portal.tenant import Tenant

M = TypeVar("M", bound=BaseModel)


def answer(model: type[M], data: Any) -> M:
    """The delivery service's answer as the model it documents; 502 when it is not."""
    try:
        return model.model_validate(data)
    except ValidationError:
        raise ApiError(
            502,
            "DeliveryServiceAnswer",
            "the delivery service answered in a shape the portal does not know; the two may"
            " be at different versions",
        ) from None


async def endpoint_deliveries(
    portal: Portal, tenant: Tenant, name: str, params: list[tuple[str, str]]
) -> bytes:
    """A page of the endpoint's deliveries as the delivery service wrote it (a
    DeliveryPage): the endpoint is the ticket's, and parsing and writing a page again
    cost more than the rest of the request."""
    owned_endpoint(portal, tenant, name)
    page: bytes = await portal.delivery.endpoint_deliveries(tenant.namespace, name, params)
    return page


async def delivery(portal: Portal, tenant: Tenant, delivery_id: str) -> w.DeliveryDetail:
    """One delivery, if it is of the ticket's app's events."""
    found = answer(w.DeliveryDetail, await portal.delivery.delivery(tenant.namespace, delivery_id))
    if found.app != tenant.app_name:
        raise ApiError(
            403, "OutsideTicket", f"delivery {delivery_id} is not part of this ticket's app"
        )
    return found


async def resend(portal: Portal, tenant: Tenant, delivery_id: str) -> w.ResendResult:
    found = await delivery(portal, tenant, delivery_id)
    # The endpoint, too, must still be this app's: a name may since have been reused.
    endpoint = owned_endpoint(portal, tenant, found.endpoint)
    result = answer(w.ResendResult, await portal.delivery.resend(tenant.namespace, found.id))
    await audit.record(
        portal,
        endpoint,
        "PortalResend",
        f"delivery {found.id} ({found.event_type}, event {found.event_id}) resent as"
        f" {result.delivery_id} by {tenant.subject} through the portal",
    )
    return result


async def replay(
    portal: Portal, tenant: Tenant, name: str, window: w.ReplayRequest
) -> w.ReplayResult:
    """Deliver again the endpoint's deliveries created in `window` whose status is one of
    its statuses (failed and exhausted when it names none)."""
    endpoint = owned_endpoint(portal, tenant, name)
    body = window.model_dump(mode="json", exclude_none=True)
    result = answer(w.ReplayResult, await portal.delivery.replay(tenant.namespace, name, body))
    until = f" until {body['until']}" if "until" in body else ""
    which = " or ".join(body.get("statuses") or ("failed", "exhausted"))
    await audit.record(
        portal,
        endpoint,
        "PortalReplay",
        f"{result.replayed} {which} deliveries since {body['since']}{until}"
        f" replayed by {tenant.subject} through the portal",
    )
    return result


async def ping(portal: Portal, tenant: Tenant, name: str) -> w.PingResult:
    """Send a webhook.ping event to the endpoint only."""
    endpoint = owned_endpoint(portal, tenant, name)
    result = answer(w.PingResult, await portal.delivery.ping(tenant.namespace, name))
    held = " (held: the endpoint is paused or disabled)" if result.held else ""
    await audit.record(
        portal,
        endpoint,
        "PortalPing",
        f"test ping {result.delivery_id}{held} sent by {tenant.subject} through the portal",
    )
    return result
