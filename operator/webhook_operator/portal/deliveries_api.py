"""The tenant API for deliveries: an endpoint's delivery log, one delivery with its
attempts and payload (also as a file to save), resend, replay and ping.

Everything goes through the delivery service's API with the portal's own credentials; the
customer's ticket never leaves the portal. The namespace and the app always come from the
ticket, never from the request: an endpoint must be one of the ticket's app's (404 when
the namespace has none by that name, 403 when another app's, without naming it), and a
delivery must have been of an event of the ticket's app (403 otherwise). Resend, replay
and ping are changes: each is recorded as an Event on the endpoint naming the ticket's
subject."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from webhook_operator.api import delivery_wire as w
from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation, Param
from webhook_operator.http_api.wire import respond
from webhook_operator.portal import audit
from webhook_operator.portal.context import Portal
from webhook_operator.portal.endpoint_actions import owned_endpoint
from webhook_operator.portal.tenant import Tenant

M = TypeVar("M", bound=BaseModel)
MAX_PAGE = 500
DOWNLOAD_VALUES = {"1": True, "true": True, "0": False, "false": False, "": False}

PAGE_PARAMS = (
    Param(
        "status",
        "pending, failed, delivered, exhausted, held or cancelled; repeat or comma-separate",
        {"type": "array", "items": {"type": "string", "enum": [s.value for s in w.DeliveryStatus]}},
    ),
    Param(
        "eventType",
        "Exact event types such as invoice.paid; repeat or comma-separate",
        {"type": "array", "items": {"type": "string", "maxLength": w.MAX_EVENT_TYPE_LENGTH}},
    ),
    Param("cursor", "`next` of the previous page"),
    Param(
        "limit",
        "Deliveries per page",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
    ),
)
DOWNLOAD = Param(
    "download",
    "1: answer the payload alone, exactly as it was sent, as a JSON file to save",
    {"type": "string", "enum": ["1", "0", "true", "false"]},
)


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


def page_params(request: web.Request) -> list[tuple[str, str]]:
    """The list's query, checked here (each refusal with its reason) and passed on whole."""
    try:
        statuses = w.statuses(request.query.getall("status", []))
        event_types = w.event_types(request.query.getall("eventType", []))
    except w.BadQuery as exc:
        raise ApiError(400, exc.reason, exc.message) from None
    params = [("limit", str(inputs.limit(request, most=MAX_PAGE)))]
    cursor = inputs.cursor(request)
    if cursor is not None:
        params.append(("cursor", cursor))
    if statuses:
        params.append(("status", ",".join(statuses)))
    if event_types:
        params.append(("eventType", ",".join(event_types)))
    return params


def wants_download(request: web.Request) -> bool:
    raw = request.query.get("download", "").lower()
    if raw not in DOWNLOAD_VALUES:
        raise ApiError(400, "BadDownload", "download must be 1 or 0")
    return DOWNLOAD_VALUES[raw]


def payload_file(detail: w.DeliveryDetail) -> web.Response:
    """The payload as the receiver got it (the same bytes the signature covers), as a file."""
    filename = f"{detail.event_id or detail.id}.json"
    return web.Response(
        body=detail.payload.encode(),
        content_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


def operations(portal: Portal) -> list[Operation]:
    delivery = portal.delivery

    async def ticket_delivery(tenant: Tenant, request: web.Request) -> w.DeliveryDetail:
        """The delivery named in the path, if it is of the ticket's app's events."""
        delivery_id = inputs.path_name(request, "id")
        found = answer(w.DeliveryDetail, await delivery.delivery(tenant.namespace, delivery_id))
        if found.app != tenant.app_name:
            raise ApiError(
                403, "OutsideTicket", f"delivery {delivery_id} is not part of this ticket's app"
            )
        return found

    def ticket_endpoint(tenant: Tenant, request: web.Request) -> dict[str, Any]:
        return owned_endpoint(portal, tenant, inputs.path_name(request, "endpoint"))

    async def list_endpoint_deliveries(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        name = ticket_endpoint(tenant, request)["metadata"]["name"]
        params = page_params(request)
        # Passed on as the delivery service wrote it: the endpoint is the ticket's, and
        # parsing and writing a page again cost more than the rest of the request.
        page = await delivery.endpoint_deliveries(tenant.namespace, name, params)
        return web.Response(body=page, content_type="application/json")

    async def get_delivery(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        download = wants_download(request)
        found = await ticket_delivery(tenant, request)
        return payload_file(found) if download else respond(found)

    async def resend_delivery(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        found = await ticket_delivery(tenant, request)
        # The endpoint, too, must still be this app's: a name may since have been reused.
        endpoint = owned_endpoint(portal, tenant, found.endpoint)
        result = answer(w.ResendResult, await delivery.resend(tenant.namespace, found.id))
        await audit.record(
            portal,
            endpoint,
            "PortalResend",
            f"delivery {found.id} ({found.event_type}, event {found.event_id}) resent as"
            f" {result.delivery_id} by {tenant.subject} through the portal",
        )
        return respond(result, status=202)

    async def replay_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        endpoint = ticket_endpoint(tenant, request)
        name = endpoint["metadata"]["name"]
        settings = portal.settings
        raw = await inputs.read_body(request, settings.max_body, settings.body_timeout)
        window = inputs.parse_model(w.ReplayWindow, raw)
        body = window.model_dump(mode="json", exclude_none=True)
        result = answer(w.ReplayResult, await delivery.replay(tenant.namespace, name, body))
        until = f" until {body['until']}" if "until" in body else ""
        await audit.record(
            portal,
            endpoint,
            "PortalReplay",
            f"{result.replayed} failed or exhausted deliveries since {body['since']}{until}"
            f" replayed by {tenant.subject} through the portal",
        )
        return respond(result, status=202)

    async def ping_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        endpoint = ticket_endpoint(tenant, request)
        name = endpoint["metadata"]["name"]
        result = answer(w.PingResult, await delivery.ping(tenant.namespace, name))
        held = " (held: the endpoint is paused or disabled)" if result.held else ""
        await audit.record(
            portal,
            endpoint,
            "PortalPing",
            f"test ping {result.delivery_id}{held} sent by {tenant.subject} through the portal",
        )
        return respond(result, status=202)

    tag = "deliveries"
    unavailable = (502, 503)
    return [
        Operation(
            "GET",
            "/v1/portal/endpoints/{endpoint}/deliveries",
            list_endpoint_deliveries,
            "The endpoint's deliveries, newest first",
            response=w.DeliveryPage,
            params=PAGE_PARAMS,
            errors=(400, 401, 403, 404, 429, *unavailable),
            tag=tag,
        ),
        Operation(
            "GET",
            "/v1/portal/deliveries/{id}",
            get_delivery,
            "One delivery with its attempts and payload",
            description="With download=1, the payload alone: the exact JSON body the"
            " receiver got, as an attachment named after the event.",
            response=w.DeliveryDetail,
            params=(DOWNLOAD,),
            errors=(400, 401, 403, 404, 429, *unavailable),
            tag=tag,
        ),
        Operation(
            "POST",
            "/v1/portal/deliveries/{id}/resend",
            resend_delivery,
            "Deliver the same event to the same endpoint again (manage tickets)",
            response=w.ResendResult,
            status=202,
            errors=(400, 401, 403, 404, 429, *unavailable),
            tag=tag,
        ),
        Operation(
            "POST",
            "/v1/portal/endpoints/{endpoint}/replay",
            replay_endpoint,
            "Deliver again the endpoint's failed and exhausted deliveries created in a window"
            " (manage tickets)",
            request=w.ReplayWindow,
            response=w.ReplayResult,
            status=202,
            errors=(400, 401, 403, 404, 408, 413, 415, 422, 429, *unavailable),
            tag=tag,
        ),
        Operation(
            "POST",
            "/v1/portal/endpoints/{endpoint}/ping",
            ping_endpoint,
            "Send a webhook.ping event to the endpoint only (manage tickets)",
            response=w.PingResult,
            status=202,
            errors=(400, 401, 403, 404, 429, *unavailable),
            tag=tag,
        ),
    ]
