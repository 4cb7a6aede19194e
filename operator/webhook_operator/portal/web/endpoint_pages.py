"""The endpoints pages: the list with each endpoint's health. Every action calls
endpoint_actions.py, the same service layer as the tenant API."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from webhook_operator.http_api.openapi import Operation
from webhook_operator.portal import endpoint_rules
from webhook_operator.portal.context import Portal
from webhook_operator.portal.web.common import HTML, TAG, pages, render, session, when


def operations(portal: Portal) -> list[Operation]:
    @pages
    async def endpoints(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        tenant = current.tenant
        views = sorted(
            (
                endpoint_rules.view(obj)
                for obj in portal.directory.app_endpoints(tenant.namespace, tenant.app_name)
            ),
            key=lambda v: v.name,
        )
        return render(
            "endpoints.html",
            session=current,
            active="endpoints",
            endpoints=views,
            expires=when(datetime.fromtimestamp(tenant.ticket.expires_at, UTC)),
        )

    return [
        Operation(
            "GET",
            "/endpoints",
            endpoints,
            "The endpoints list page of the session's app",
            content_type=HTML,
            errors=(401, 403, 404),
            tag=TAG,
        ),
    ]
