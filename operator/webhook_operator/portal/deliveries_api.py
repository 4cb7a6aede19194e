"""The tenant API for deliveries: an endpoint's delivery log, one delivery with its
attempts and payload (also as a file to save), resend, replay and ping. HTTP only: each
handler reads the request, calls the action in delivery_actions.py and writes the answer."""

from __future__ import annotations

from aiohttp import web

from webhook_operator.api import delivery_wire as w
from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation, Param
from webhook_operator.http_api.wire import respond
from webhook_operator.portal import delivery_actions as actions
from webhook_operator.portal.context import Portal
from webhook_operator.portal.endpoint_actions import owned_endpoint

MAX_PAGE = 500
DOWNLOAD_VALUES = {"1": True, "true": True, "0": False, "false": False, "": False}

PAGE_PARAMS = (
    Param(
        "status",
        "pending, failed, delivered, exhausted, held, cancelled or expired; repeat or"
        " comma-separate",
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
    async def list_endpoint_deliveries(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        name = inputs.path_name(request, "endpoint")
        page = await actions.endpoint_deliveries(portal, tenant, name, page_params(request))
        return web.Response(body=page, content_type="application/json")

    async def get_delivery(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        download = wants_download(request)
        found = await actions.delivery(portal, tenant, inputs.path_name(request, "id"))
        return payload_file(found) if download else respond(found)

    async def resend_delivery(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        result = await actions.resend(portal, tenant, inputs.path_name(request, "id"))
        return respond(result, status=202)

    async def replay_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        name = inputs.path_name(request, "endpoint")
        owned_endpoint(portal, tenant, name)  # 404/403 before reading the body
        settings = portal.settings
        raw = await inputs.read_body(request, settings.max_body, settings.body_timeout)
        window = inputs.parse_model(w.ReplayRequest, raw)
        return respond(await actions.replay(portal, tenant, name, window), status=202)

    async def ping_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        result = await actions.ping(portal, tenant, inputs.path_name(request, "endpoint"))
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
            "Deliver again the endpoint's deliveries created in a window: failed and"
            " exhausted ones, or those of `statuses` such as expired (manage tickets)",
            request=w.ReplayRequest,
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
