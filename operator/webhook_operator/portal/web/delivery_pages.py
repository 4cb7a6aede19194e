"""The delivery pages (being built)."""

from __future__ import annotations

from webhook_operator.http_api.openapi import Operation
from webhook_operator.portal.context import Portal


def operations(portal: Portal) -> list[Operation]:
    return []
