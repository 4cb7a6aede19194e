"""GET /v1/portal/catalog and GET /v1/portal/summary: the ticket's app as its customer
sees it, answered from the portal's watch of WebhookApps and WebhookEndpoints (no
apiserver or delivery-service round trip). Read tickets may call both."""

from __future__ import annotations

from aiohttp import web

from webhook_operator.http_api.openapi import Operation
from webhook_operator.http_api.wire import respond
from webhook_operator.portal import overview
from webhook_operator.portal.context import Portal

ERRORS = (401, 403, 404, 409, 429)


def operations(portal: Portal) -> list[Operation]:
    async def get_catalog(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        return respond(overview.catalog(tenant.app_name, tenant.spec, tenant.portal))

    async def get_summary(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        endpoints = portal.directory.app_endpoints(tenant.namespace, tenant.app_name)
        return respond(overview.summary(tenant.app_name, tenant.portal, endpoints))

    return [
        Operation(
            "GET",
            "/v1/portal/catalog",
            get_catalog,
            "The app's event catalog: types, categories, schemas and an example payload"
            " per type, and which types endpoints may subscribe to",
            response=overview.Catalog,
            errors=ERRORS,
            tag="overview",
        ),
        Operation(
            "GET",
            "/v1/portal/summary",
            get_summary,
            "The app's endpoints by health, recent deliveries and failures, and the last"
            " delivery, success and failure times",
            response=overview.Summary,
            errors=ERRORS,
            tag="overview",
        ),
    ]
