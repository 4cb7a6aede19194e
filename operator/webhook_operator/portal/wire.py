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


# Text people read in kubectl and in the portal: no control characters but newline and tab.
PLAIN_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"


class EndpointCreate(Wire):
    """A new endpoint, as a customer registers it."""

    url: str = Field(min_length=1, max_length=2048)
    """Where deliveries are POSTed: https:// (http:// only where the app allows it)."""
    events: list[str] = Field(max_length=256)
    """Event types to receive, such as invoice.paid, or wildcards such as invoice.*."""
    name: str | None = Field(default=None, max_length=253)
    """The endpoint's name, a DNS label (lowercase letters, digits and '-'). Generated
    when unset."""
    description: str | None = Field(default=None, max_length=1024, pattern=PLAIN_TEXT)
    """A note for people."""
    active: bool = True
    """false creates the endpoint paused."""


class EndpointUpdate(Wire):
    """Fields to change; those left out stay as they are. description: null removes it."""

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=1024, pattern=PLAIN_TEXT)
    active: bool | None = None
    """false pauses delivery (events are held); true resumes it, and also clears an
    automatic disable after retries were exhausted or the receiver answered 410 Gone."""


class Endpoint(Wire):
    """An endpoint as the customer sees it."""

    name: str
    url: str
    description: str | None = None
    events: list[str]
    active: bool
    managed_by: str
    """portal: created here and changeable here; gitops: declared in Git by the platform,
    read-only here."""
    created_by: str | None = None
    """The ticket subject that created it (portal endpoints only)."""
    created_at: datetime | None = None
    ready: bool
    """Whether the operator has accepted the endpoint (signing secret in place)."""
    message: str | None = None
    """Why the endpoint is not ready, when it is not."""
    health: str
    """Pending (no delivery yet), Healthy, Failing (retrying) or Disabled."""
    disabled_reason: str | None = None
    """Paused, RetriesExhausted or Gone, when Disabled."""
    disabled_at: datetime | None = None
    last_delivery_time: datetime | None = None
    last_success_time: datetime | None = None
    last_failure_time: datetime | None = None
    last_http_status: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    secret: str | None = None
    """The signing secret: in full only in the answer that creates the endpoint or rotates
    its secret, masked (whsec_… and the last four characters) everywhere else, absent in
    lists."""
    previous_secret_expires_at: datetime | None = None
    """After a rotation: until when the previous secret still verifies (deliveries carry
    both signatures until then)."""


class EndpointList(Wire):
    items: list[Endpoint]
    """In name order."""
    max_endpoints: int
    """How many endpoints the app may have in all."""
    next: str | None = None
    """Pass as `cursor` for the next page; null on the last."""
