"""Request and answer shapes of the portal's API; /openapi.json is generated from them."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from webhook_operator.api.v1alpha1 import DURATION_PATTERN
from webhook_operator.http_api.wire import Wire
from webhook_operator.portal.tickets import Scope


class TicketRequest(Wire):
    """What the platform's backend asks for, after checking that its user belongs to the
    tenant that owns the app."""

    subject: str = Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
    """Who the ticket is for, as the platform names them, for example
    acme-corp/alice@example.com. It appears in the audit Events of every change."""
    scope: Scope = Scope.MANAGE
    """manage (read and change) or read (read only)."""
    ttl: str | None = Field(default=None, max_length=32, pattern=DURATION_PATTERN)
    """How long the ticket is valid, as a duration such as 15m (the default); at most the
    portal's cap (1h unless configured otherwise)."""


class TicketAnswer(Wire):
    ticket: str
    """The bearer ticket. A secret: hand it to the customer's browser only."""
    expires_at: datetime
    """When the ticket stops working."""
    portal_url: str
    """The portal opened with this ticket."""
    namespace: str
    app: str
    scope: Scope
    subject: str
