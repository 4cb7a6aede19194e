"""Who is calling the tenant API: the ticket in `Authorization: Bearer`, checked in-process,
the app it names (which must still exist and have the portal enabled), its scope, and its
request budget. Every refusal is a 4xx with a reason; nothing is looked up on behalf of a
caller whose ticket does not verify."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from webhook_operator.api.v1alpha1 import PortalSettings as AppPortal
from webhook_operator.api.v1alpha1 import WebhookAppSpec
from webhook_operator.http_api.errors import ApiError
from webhook_operator.portal.directory import Directory
from webhook_operator.portal.ticket_keys import TicketKeys
from webhook_operator.portal.tickets import (
    InvalidTicket,
    Ticket,
    UnknownKey,
    decode,
    unexpired,
)
from webhook_operator.throttle import TokenBucket

MAX_TRACKED_TICKETS = 100_000
# Tickets already verified, so a page's many requests check the signature once.
MAX_VERIFIED_TICKETS = 10_000
INVALID_TOKEN_CHALLENGE = 'Bearer realm="webhook-portal", error="invalid_token"'


@dataclass(frozen=True)
class Tenant:
    """A verified ticket and the app it opens."""

    ticket: Ticket
    app: dict[str, Any]
    spec: WebhookAppSpec

    @property
    def namespace(self) -> str:
        return self.ticket.namespace

    @property
    def app_name(self) -> str:
        return self.ticket.app

    @property
    def subject(self) -> str:
        return self.ticket.subject

    @property
    def portal(self) -> AppPortal:
        return self.spec.portal or AppPortal()


class RequestBudget:
    """Requests per second per ticket, in this process: a guard against one runaway
    browser tab or script, not a quota (each portal replica counts its own)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, ticket_id: str) -> float | None:
        """None when the request may go ahead, else the seconds to wait."""
        bucket = self._buckets.get(ticket_id)
        if bucket is None:
            bucket = TokenBucket(self.rate, burst=max(1.0, 2 * self.rate))
            self._buckets[ticket_id] = bucket
            if len(self._buckets) > MAX_TRACKED_TICKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(ticket_id)
        now = self.clock()
        if bucket.reserve_within(now, 0.0) is not None:
            return None
        return bucket.wait_time(now)


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "MissingTicket",
            "send the access ticket as Authorization: Bearer <ticket>",
            headers={"WWW-Authenticate": 'Bearer realm="webhook-portal"'},
        )
    return token.strip()


class TenantAuth:
    def __init__(
        self,
        keys: TicketKeys,
        directory: Directory,
        budget: RequestBudget,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.directory = directory
        self.budget = budget
        self.clock = clock
        # token -> (the key ids it was verified against, the ticket)
        self._verified: OrderedDict[str, tuple[tuple[str, ...], Ticket]] = OrderedDict()

    def _decode(self, token: str) -> Ticket:
        keys = self.keys.verification_keys()
        kids = tuple(keys)
        hit = self._verified.get(token)
        if hit is not None and hit[0] == kids:
            self._verified.move_to_end(token)
            return unexpired(hit[1], self.clock())
        ticket = decode(keys, token, self.clock())
        self._verified[token] = (kids, ticket)
        if len(self._verified) > MAX_VERIFIED_TICKETS:
            self._verified.popitem(last=False)
        return ticket

    async def verify(self, token: str) -> Ticket:
        try:
            try:
                return self._decode(token)
            except UnknownKey:
                # Another replica may have seen a new key first.
                if not await self.keys.reload_if_due():
                    raise
                return self._decode(token)
        except InvalidTicket as exc:
            raise ApiError(
                401,
                exc.reason,
                str(exc),
                headers={
                    "WWW-Authenticate": 'Bearer realm="webhook-portal", error="invalid_token"'
                },
            ) from None

    async def __call__(self, request: web.Request, *, write: bool = False) -> Tenant:
        return await self.from_token(bearer(request), write=write)

    async def from_token(self, token: str, *, write: bool = False) -> Tenant:
        """The same checks for a ticket that came another way (the web page's cookie)."""
        ticket = await self.verify(token)
        wait = self.budget.take(ticket.id)
        if wait is not None:
            raise ApiError(
                429,
                "TooManyRequests",
                "this ticket is sending requests too fast; slow down",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if write and not ticket.writes:
            raise ApiError(
                403, "ReadOnlyTicket", "this ticket may read only; ask for a manage ticket"
            )
        app = self.directory.app(ticket.namespace, ticket.app)
        if app is None:
            raise ApiError(404, "AppNotFound", f"the ticket's app {ticket.app} no longer exists")
        try:
            spec = WebhookAppSpec.model_validate(app.get("spec") or {})
        except ValidationError:
            raise ApiError(
                409, "AppInvalid", f"WebhookApp {ticket.app} has an invalid spec"
            ) from None
        tenant = Tenant(ticket, app, spec)
        if not tenant.portal.enabled:
            raise ApiError(403, "PortalDisabled", f"the portal is turned off for app {ticket.app}")
        return tenant
