"""The tenant API for endpoints: list, create, read, change, delete and rotate the secret
of the ticket's app's WebhookEndpoints. HTTP only: each handler reads the request, calls
the action in endpoint_actions.py and writes the answer."""

from __future__ import annotations

import orjson
from aiohttp import web

from webhook_operator.http_api import inputs
from webhook_operator.http_api.openapi import Operation, Param
from webhook_operator.http_api.wire import respond
from webhook_operator.portal import endpoint_actions as actions
from webhook_operator.portal.context import Portal
from webhook_operator.portal.wire import Endpoint, EndpointCreate, EndpointList, EndpointUpdate

MAX_PAGE = 500


def operations(portal: Portal) -> list[Operation]:
    async def list_endpoints(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        limit = inputs.limit(request, default=100, most=MAX_PAGE)
        page = actions.list_page(portal, tenant, limit, request.query.get("cursor") or "")
        # EndpointList, with items already serialized.
        body = {
            "items": page.items,
            "maxEndpoints": tenant.portal.max_endpoints,
            "next": page.next,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def get_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        return respond(await actions.read(portal, tenant, inputs.path_name(request, "endpoint")))

    async def create_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        asked = inputs.parse_model(EndpointCreate, await _body(portal, request))
        return respond(await actions.create(portal, tenant, asked), status=201)

    async def update_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        name = inputs.path_name(request, "endpoint")
        actions.owned_endpoint(portal, tenant, name)  # 404/403 before reading the body
        asked = inputs.parse_model(EndpointUpdate, await _body(portal, request))
        return respond(await actions.update(portal, tenant, name, asked))

    async def delete_endpoint(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        await actions.delete(portal, tenant, inputs.path_name(request, "endpoint"))
        return web.Response(status=204)

    async def rotate_secret(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request, write=True)
        return respond(await actions.rotate(portal, tenant, inputs.path_name(request, "endpoint")))

    item = "/v1/portal/endpoints/{endpoint}"
    tag = "endpoints"
    return [
        Operation(
            "GET",
            "/v1/portal/endpoints",
            list_endpoints,
            "List the app's endpoints (Git-managed ones included, read-only), by name",
            response=EndpointList,
            params=(
                Param("cursor", "`next` of the previous page"),
                Param(
                    "limit",
                    "Endpoints per page",
                    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
                ),
            ),
            tag=tag,
            errors=(401, 403, 404, 429),
        ),
        Operation(
            "POST",
            "/v1/portal/endpoints",
            create_endpoint,
            "Create an endpoint; the answer shows its signing secret, once",
            request=EndpointCreate,
            response=Endpoint,
            status=201,
            tag=tag,
            errors=(400, 401, 403, 409, 413, 415, 422, 429, 503),
        ),
        Operation(
            "GET",
            item,
            get_endpoint,
            "Read one endpoint (secret masked)",
            response=Endpoint,
            tag=tag,
            errors=(400, 401, 403, 404, 429),
        ),
        Operation(
            "PATCH",
            item,
            update_endpoint,
            "Change url, description, events or active (true also re-enables)",
            request=EndpointUpdate,
            response=Endpoint,
            tag=tag,
            errors=(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
        ),
        Operation(
            "DELETE",
            item,
            delete_endpoint,
            "Delete an endpoint; its pending deliveries are cancelled",
            status=204,
            tag=tag,
            errors=(400, 401, 403, 404, 409, 429, 503),
        ),
        Operation(
            "POST",
            item + "/rotate-secret",
            rotate_secret,
            "Rotate the signing secret; the answer shows the new one, once, and the old one"
            " keeps verifying for the grace period",
            response=Endpoint,
            tag=tag,
            errors=(400, 401, 403, 404, 409, 429, 503),
        ),
    ]


async def _body(portal: Portal, request: web.Request) -> bytes:
    return await inputs.read_body(request, portal.settings.max_body, portal.settings.body_timeout)
