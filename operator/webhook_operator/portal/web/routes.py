"""Every page of the portal, in one list the server mounts beside the tenant API."""

from __future__ import annotations

from webhook_operator.http_api.openapi import Operation
from webhook_operator.portal.context import Portal
from webhook_operator.portal.web import (
    delivery_pages,
    endpoint_pages,
    overview_pages,
    session_pages,
)


def operations(portal: Portal) -> list[Operation]:
    return [
        *session_pages.operations(portal),
        *overview_pages.operations(portal),
        *endpoint_pages.operations(portal),
        *delivery_pages.operations(portal),
    ]
