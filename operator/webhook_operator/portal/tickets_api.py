"""POST /v1/namespaces/{namespace}/apps/{app}/access-tickets: the platform's backend, with
its own ServiceAccount token, asks for a ticket for one of its customers. Kubernetes RBAC
decides (verb `issue-tickets` on that WebhookApp, by SubjectAccessReview); the ticket is
then signed here and checked later without the apiserver."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from aiohttp import web

from webhook_operator.durations import parse_duration
from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation
from webhook_operator.http_api.wire import respond
from webhook_operator.portal.context import Portal
from webhook_operator.portal.tickets import Ticket, encode
from webhook_operator.portal.wire import TicketAnswer, TicketRequest

VERB = "issue-tickets"


def portal_url(portal: Portal, request: web.Request, ticket: str) -> str:
    base = portal.settings.public_url or f"{request.scheme}://{request.host}"
    # In the fragment: browsers do not send it to servers or put it in Referer headers.
    return f"{base.rstrip('/')}/#ticket={ticket}"


def operations(portal: Portal) -> list[Operation]:
    async def issue_ticket(request: web.Request) -> web.Response:
        namespace, app = inputs.path_name(request, "namespace"), inputs.path_name(request, "app")
        await portal.authorizer.require(request.headers.get("Authorization"), VERB, namespace, app)
        raw = await inputs.read_body(
            request, portal.settings.max_body, portal.settings.body_timeout
        )
        asked = inputs.parse_model(TicketRequest, raw)
        try:
            ttl = (
                portal.settings.default_ttl
                if asked.ttl is None
                else parse_duration(asked.ttl).total_seconds()
            )
        except (ValueError, OverflowError):  # the pattern passed: more than a timedelta holds
            ttl = float("inf")
        if ttl <= 0 or ttl > portal.settings.max_ttl:
            raise ApiError(
                422,
                "TtlTooLong" if ttl > 0 else "Invalid",
                f"ttl must be more than 0s and at most {portal.settings.max_ttl:g}s",
            )
        found = portal.directory.app(namespace, app)
        if found is None:
            raise ApiError(
                404, "AppNotFound", f"WebhookApp {app} does not exist in namespace {namespace}"
            )
        if ((found.get("spec") or {}).get("portal") or {}).get("enabled") is False:
            raise ApiError(403, "PortalDisabled", f"spec.portal.enabled is false on app {app}")
        now = int(portal.clock())
        ticket = Ticket(
            id=secrets.token_urlsafe(12),
            namespace=namespace,
            app=app,
            scope=asked.scope,
            subject=asked.subject,
            issued_at=now,
            expires_at=now + int(ttl),
        )
        token = encode(portal.keys.signing_key(), ticket)
        return respond(
            TicketAnswer(
                ticket=token,
                expires_at=datetime.fromtimestamp(ticket.expires_at, UTC),
                portal_url=portal_url(portal, request, token),
                namespace=namespace,
                app=app,
                scope=ticket.scope,
                subject=ticket.subject,
            ),
            status=201,
            headers={"Cache-Control": "no-store"},
        )

    return [
        Operation(
            "POST",
            "/v1/namespaces/{namespace}/apps/{app}/access-tickets",
            issue_ticket,
            "Issue an access ticket for one app (RBAC verb issue-tickets on the WebhookApp)",
            request=TicketRequest,
            response=TicketAnswer,
            status=201,
            errors=(400, 401, 403, 404, 413, 415, 422, 503),
            tag="tickets",
        )
    ]
