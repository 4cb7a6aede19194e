"""The delivery service's HTTP API as models: what it answers and what it reads.

One source for the wire. The delivery service answers with these models and builds its
/openapi.json from them; the portal reads the delivery service's answers into the same
models and documents its own delivery routes with them; the plugin and the operator read
the same JSON. Times are RFC 3339 in UTC with milliseconds and a Z
(2026-11-25T10:00:00.123Z), keys are camelCase.

Pure pydantic: no HTTP stack and no store here, so every process may import it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, Field, PlainSerializer, Strict

from webhook_operator.api import names
from webhook_operator.api.v1alpha1 import EVENT_TYPE_PATTERN
from webhook_operator.api.wire_base import Answer, Wire

MAX_EVENT_TYPE_LENGTH = 256
# A filter by more types than this is not a filter any more; it also bounds the query.
MAX_EVENT_TYPES = 50
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first attempt (or being attempted now)
    FAILED = "failed"  # the last attempt failed; another is scheduled
    DELIVERED = "delivered"  # a 2xx answer
    EXHAUSTED = "exhausted"  # every attempt failed; no more will be made
    HELD = "held"  # the endpoint is paused or disabled; delivered when it is active again
    CANCELLED = "cancelled"  # the endpoint was deleted
    # Held longer than the endpoint's holdFor: no attempt will be made (replay sends it).
    EXPIRED = "expired"


def rfc3339(moment: datetime) -> str:
    """2026-11-25T10:00:00.123Z: UTC, milliseconds (cut, not rounded), Z."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


Time = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
# What a client sends: RFC 3339 with an offset, as a string (not a number of seconds).
RequestTime = Annotated[AwareDatetime, Strict()]


# -- query parameters of the delivery lists -----------------------------------------------


class BadQuery(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _parts(values: Iterable[str]) -> Iterable[str]:
    """Repeated parameters and comma-separated lists alike."""
    for value in values:
        for part in value.split(","):
            yield part.strip()


def statuses(values: Iterable[str]) -> tuple[DeliveryStatus, ...]:
    """`status` parameters: BadQuery("BadStatus") naming the statuses there are."""
    found: dict[DeliveryStatus, None] = {}
    for part in _parts(values):
        try:
            found[DeliveryStatus(part)] = None
        except ValueError:
            allowed = ", ".join(s.value for s in DeliveryStatus)
            raise BadQuery("BadStatus", f"unknown status {part!r} (one of {allowed})") from None
    return tuple(found)


def event_types(values: Iterable[str]) -> tuple[str, ...]:
    """`eventType` parameters: exact types, no wildcards (a filter names what was emitted,
    and emitted types are exact). BadQuery("BadEventType") otherwise."""
    found: dict[str, None] = {}
    for part in _parts(values):
        if len(part) > MAX_EVENT_TYPE_LENGTH or not _EVENT_TYPE.fullmatch(part):
            raise BadQuery(
                "BadEventType",
                f"eventType {part!r} is not an event type such as invoice.paid"
                " (exact types only, no wildcards)",
            )
        found[part] = None
    if len(found) > MAX_EVENT_TYPES:
        raise BadQuery("BadEventType", f"filter by at most {MAX_EVENT_TYPES} event types")
    return tuple(found)


# -- answers and requests -------------------------------------------------------------------


class Delivery(Answer):
    """One delivery of one event to one endpoint."""

    id: str
    """The delivery's id, such as dlv_01J…; ids sort by creation time."""
    event_id: str
    """The event delivered; resends and replays deliver the same event again."""
    namespace: str
    app: str
    """The WebhookApp the event was emitted to."""
    endpoint: str
    """The WebhookEndpoint it is delivered to."""
    event_type: str
    status: DeliveryStatus
    attempts: int
    """Attempts made so far."""
    created_at: Time
    updated_at: Time
    next_attempt_at: Time | None
    """When the next attempt is due; null once the delivery is finished."""
    last_http_status: int | None
    """The receiver's HTTP status at the last attempt; null when it did not answer."""
    last_error: str | None
    """Why the last attempt failed, as the receiver or the network put it."""


class Attempt(Answer):
    """One attempt to deliver."""

    attempt: int
    """1 for the first attempt."""
    started_at: Time
    duration_ms: float
    http_status: int | None
    error: str | None
    response_snippet: str | None
    """The start of the receiver's answer."""
    success: bool


class DeliveryDetail(Delivery):
    """A delivery with every attempt and the exact body it sends."""

    attempt_log: list[Attempt]
    payload: str
    """The exact JSON body sent to the receiver, as a string (signatures cover these bytes)."""


class DeliveryPage(Answer):
    """Deliveries, newest first."""

    items: list[Delivery]
    next: str | None
    """Pass as `cursor` for the next page; null on the last page."""


class EmitRequest(Wire):
    """An event for every endpoint of the app that subscribes to its type. (Documentation:
    ingest reads the body by hand, the hot path, with a reason for each refusal.)"""

    type: str = Field(max_length=256, examples=["invoice.paid"])
    """A dotted name of lower-case letters, digits, '-' and '_'."""
    id: str | None = Field(default=None, min_length=1, max_length=256)
    """Idempotency key: the same id within 24 h creates no new deliveries."""
    data: dict[str, Any] = Field(default_factory=dict)
    """The event's data; checked against the catalog's JSON schema when it has one."""


class EmitResult(Answer):
    event_id: str
    deliveries: int
    """How many endpoints it is delivered to."""
    duplicate: bool
    """true when the id was seen within 24 h: nothing new was stored."""


MAX_BATCH_EVENTS = 100


class EmitBatchRequest(Wire):
    """Several events for the app at once, each as the single route takes one.
    (Documentation: ingest reads the body by hand, so that each event is checked alone.)"""

    events: list[EmitRequest] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class EventError(Answer):
    """Why one event of a batch was not accepted: what the single route would have
    answered as its error."""

    reason: str
    """One CamelCase word, the single route's reason, for example InvalidEventType."""
    message: str


class EmitBatchItem(Answer):
    """What became of one event of a batch. Keys without a value are left out: an
    accepted event has eventId, deliveries and duplicate; any other has error."""

    index: int
    """The event's place in the request, from 0; results come in the same order."""
    status: int
    """The HTTP status the single route would have answered for this event alone: 202
    accepted (a duplicate too), 400/413/422 refused (resending it unchanged will not
    help), 503 not stored (send it again later), 500 failed."""
    event_id: str | None = None
    """The event's id, as in the webhook-id header of its deliveries."""
    deliveries: int | None = None
    """How many endpoints it is delivered to."""
    duplicate: bool | None = None
    """true when its id was seen within 24 h (earlier, or earlier in this batch): eventId
    is the earlier event's and nothing new was stored."""
    error: EventError | None = None


class EmitBatchResult(Answer):
    accepted: int
    """Events answered 202 (duplicates included)."""
    failed: int
    """Events answered anything else: look for them in results."""
    results: list[EmitBatchItem]
    """One per event, in the order of the request."""


class ReplayWindow(Wire):
    """Deliver again the endpoint's failed and exhausted deliveries created in
    [since, until)."""

    since: RequestTime
    """The earliest creation time replayed (inclusive), RFC 3339 with an offset, such as
    2026-11-25T10:00:00Z."""
    until: RequestTime | None = None
    """The end (exclusive), RFC 3339; unset: up to now."""


class ReplayRequest(ReplayWindow):
    """Deliver again the endpoint's deliveries created in [since, until) whose status is
    one of `statuses`."""

    statuses: list[DeliveryStatus] | None = None
    """Which deliveries; failed and exhausted when unset. expired sends again the
    deliveries held longer than their endpoint's holdFor."""


class ReplayResult(Answer):
    replayed: int
    """How many deliveries were made anew."""


class AppReplayResult(Answer):
    replayed: int
    """How many deliveries were made anew, across the app's endpoints."""
    endpoints: dict[str, int]
    """Of those, how many per WebhookEndpoint (every endpoint of the app, 0 included)."""


class ResendResult(Answer):
    delivery_id: str
    """The new delivery of the same event to the same endpoint."""


class PingResult(Answer):
    event_id: str
    delivery_id: str
    held: bool
    """true when the endpoint is paused or disabled: the ping waits until it is active."""


class OperationalType(StrEnum):
    FAILING = names.OPERATIONAL_FAILING
    DISABLED = names.OPERATIONAL_DISABLED
    RECOVERED = names.OPERATIONAL_RECOVERED


class NotificationRequest(Wire):
    """An operational notification from the operator to one endpoint (an app's
    operationalEndpointRef), signed and delivered like any event of that endpoint's app."""

    type: OperationalType
    id: str = Field(min_length=1, max_length=256)
    """Idempotency key: the same change told twice (a restart, a new leader) is stored once."""
    data: dict[str, Any] = Field(default_factory=dict)


class NotificationResult(Answer):
    event_id: str
    delivery_id: str | None
    """None for a duplicate: the earlier event's delivery is the one."""
    held: bool
    duplicate: bool


class EndpointStats(Answer):
    """An endpoint's delivery state, for the operator to show in its status."""

    namespace: str
    name: str
    last_delivery_time: Time | None
    last_success_time: Time | None
    last_failure_time: Time | None
    last_http_status: int | None
    last_error: str | None
    consecutive_failures: int
    disabled_reason: str | None
    disabled_at: Time | None
    deliveries: dict[str, int]
    """Counts by status within the window (pending and held: now): delivered, failed,
    exhausted, pending, held, expired."""
    window: str


class EndpointStatsList(Answer):
    cursor: str
    """Pass as `since` to get only what changed after this answer."""
    endpoints: list[EndpointStats]


MAX_ACTIVITY_HOURS = 168


class ActivityBucket(Answer):
    """The app's deliveries created within one bucket (an hour), by where they stand now."""

    start: Time
    """When the bucket begins; it ends `bucketSeconds` later (the last one: now)."""
    delivered: int
    """Deliveries that reached their endpoint (a 2xx answer), on the first attempt or a
    retry."""
    failed: int
    """Deliveries that have not got through: failing and still being retried, or given up
    after every retry. Pending, held, expired and cancelled ones are in neither count."""


class Activity(Answer):
    """Deliveries and failures of an app over a recent window, per hour of the deliveries'
    creation: what a customer reads as "deliveries and failures over the last 24 h". A
    delivery is counted once, in the hour it was made, by where it stands now, so a
    failure that a retry later fixed moves from failed to delivered."""

    since: Time
    """The start of the window: the first bucket's start, on a whole hour."""
    bucket_seconds: int
    """The length of every bucket, in seconds (3600)."""
    buckets: list[ActivityBucket]
    """Every bucket of the window, oldest first, empty ones with zeros; the last is the
    current hour, up to now."""


class Probe(Answer):
    status: str
    """ok (alive) or ready."""
