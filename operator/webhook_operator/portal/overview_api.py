"""GET /v1/portal/catalog and GET /v1/portal/summary: the ticket's app as its customer
sees it, answered from the portal's watch of WebhookApps and WebhookEndpoints (no
apiserver or delivery-service round trip). GET /v1/portal/activity: the app's deliveries
per hour, which only the delivery service knows, asked for with the portal's credentials.
Read tickets may call all three."""

from __future__ import annotations

from aiohttp import web

from webhook_operator.api import delivery_wire as w
from webhook_operator.http_api import inputs
from webhook_operator.http_api.openapi import Operation, Param
from webhook_operator.http_api.wire import respond
from webhook_operator.portal import overview
from webhook_operator.portal.context import Portal
from webhook_operator.portal.delivery_actions import answer
from webhook_operator.portal.tenant import Tenant

ERRORS = (401, 403, 404, 409, 429)
_HOURS = Param(
    "hours",
    "How many hours back, the current one included",
    {"type": "integer", "minimum": 1, "maximum": w.MAX_ACTIVITY_HOURS, "default": 24},
)


async def activity(
    portal: Portal, tenant: Tenant, hours: int = overview.ACTIVITY_HOURS
) -> w.Activity:
    """The ticket's app's deliveries per hour, from the delivery service (503
    DeliveryServiceUnavailable when it cannot be reached): the one implementation the
    tenant API and the overview page share."""
    found = await portal.delivery.activity(tenant.namespace, tenant.app_name, hours)
    return answer(w.Activity, found)


def operations(portal: Portal) -> list[Operation]:
    async def get_catalog(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        return respond(overview.catalog(tenant.app_name, tenant.spec, tenant.portal))

    async def get_summary(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        endpoints = portal.directory.app_endpoints(tenant.namespace, tenant.app_name)
        return respond(overview.summary(tenant.app_name, tenant.portal, endpoints))

    async def get_activity(request: web.Request) -> web.Response:
        tenant = await portal.tenant(request)
        hours = inputs.whole_number(
            request.query.get("hours", str(overview.ACTIVITY_HOURS)),
            "hours",
            1,
            w.MAX_ACTIVITY_HOURS,
            "BadHours",
        )
        return respond(await activity(portal, tenant, hours))

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
        Operation(
            "GET",
            "/v1/portal/activity",
            get_activity,
            "The app's deliveries per hour over the last 24 hours (or `hours`): how many were"
            " delivered and how many have not got through, by the hour they were made",
            response=w.Activity,
            params=(_HOURS,),
            errors=(400, *ERRORS, 502, 503),
            tag="overview",
        ),
    ]
