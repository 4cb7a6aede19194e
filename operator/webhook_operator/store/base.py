"""The storage protocol of the delivery service, and the records it moves.

Times are UNIX epoch seconds (float) everywhere, so both backends store and compare the
same numbers. Ids come from `webhook_operator.ids` and sort by creation time; list
queries page by id (newest first, `cursor` = the last id of the previous page).

Leases and their owners. A worker claims deliveries with a lease (`lease_until`) in its
owner's name, a name unique to one running process. The lease is the last resort: claims
come back much sooner when their owner is known to be gone.

- A process registers its owner name before its first claim (`register_owner`) and keeps
  it alive with `heartbeat` every few seconds. Each heartbeat also gives back the leases
  of owners that are provably gone, or silent for longer than `stale_after` seconds (a
  hung process, a node that vanished without closing its connections).
- A clean shutdown gives back what it did not finish (`release_owner`): the next process
  claims it at once.
- What counts as proof depends on the backend. SQLite: one process claims from a file at
  a time (an exclusive lock beside it, which the kernel drops when the process dies), so
  every lease found at registration is an earlier process's and is given back.
  PostgreSQL: each owner holds a session advisory lock on its name for its lifetime; the
  server drops it when the session ends, so an owner whose lock can be taken is gone, and
  its leases are given back by whoever notices first (its successor when it registers,
  or any replica's next heartbeat).

Owner names need not survive restarts (the database proves an owner gone), but may: a
process holding a name knows that leases already in that name are a previous life's.

A result recorded for a lease that was given back changes nothing (`finish_attempts`
checks the owner), so a presumed-dead owner that wakes up cannot overwrite the outcome of
the attempt made in its place: delivery stays at least once, and exactly once when no
process dies or stalls."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from webhook_operator import ids

# The statuses are part of the API's wire; they are defined there, once.
from webhook_operator.api.delivery_wire import DeliveryStatus as DeliveryStatus

# Deliveries in these states still have work ahead of them.
OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.HELD)


@dataclass(frozen=True)
class NewEvent:
    id: str
    namespace: str
    app: str
    type: str
    payload: str  # the exact JSON body every delivery of this event sends
    idempotency_key: str | None
    created_at: float
    traceparent: str | None = None  # W3C trace context, sent with every attempt


@dataclass(frozen=True)
class NewDelivery:
    id: str
    endpoint: str  # WebhookEndpoint name, in the event's namespace
    status: DeliveryStatus  # PENDING, or HELD for a paused/disabled endpoint
    next_attempt_at: float


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to one worker until `lease_until`."""

    delivery_id: str
    event_id: str
    namespace: str
    app: str
    endpoint: str
    event_type: str
    payload: str
    attempts: int  # attempts made before this one
    created_at: float  # when the event was accepted (for end-to-end latency)
    traceparent: str | None = None  # the producer's W3C trace context, if it sent one


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: str
    owner: str  # the worker that claimed it; a result from a lost lease changes nothing
    namespace: str
    endpoint: str
    attempt: int  # 1-based number of this attempt
    started_at: float
    duration_ms: float
    http_status: int | None
    error: str | None
    response_snippet: str | None
    success: bool
    status: DeliveryStatus  # DELIVERED, FAILED (retry at next_attempt_at) or EXHAUSTED
    next_attempt_at: float | None
    # Set when this result disables the endpoint: "RetriesExhausted" or "Gone" (410).
    disable_reason: str | None = None


def endpoint_state_updates(results: list[AttemptResult]) -> list[AttemptResult]:
    """The results whose endpoint-state update still matters, in order.

    A success followed by another success of the same endpoint leaves nothing of its own
    in the endpoint's state (times, status, error and failure count are all overwritten,
    and successes never disable), so under load a batch of hundreds of successes becomes
    one state write per endpoint. Failures are kept: each adds to the failure count."""
    kept: list[AttemptResult | None] = []
    last_success: dict[tuple[str, str], int] = {}
    for result in results:
        key = (result.namespace, result.endpoint)
        if result.success:
            earlier = last_success.get(key)
            if earlier is not None:
                kept[earlier] = None
            last_success[key] = len(kept)
        else:
            last_success.pop(key, None)
        kept.append(result)
    return [r for r in kept if r is not None]


@dataclass(frozen=True)
class ActivityBucket:
    """The deliveries of an app created within one bucket of time, by where they stand:
    `delivered` reached the endpoint (on the first attempt or a retry), `failed` did not
    get through (FAILED, still being retried, or EXHAUSTED). Pending, held, expired and
    cancelled ones are in neither: no attempt of theirs failed."""

    start: float
    delivered: int = 0
    failed: int = 0


def activity_first_id(since: float) -> str:
    """The smallest delivery id that can have been made at or after `since`: ids start
    with their millisecond (webhook_operator.ids), so the (namespace, app, id) index
    narrows the activity query to its window."""
    return ids.delivery_id(since)[:14] + "0" * 16


def activity_series(
    since: float, now: float, bucket: float, counts: Iterable[Sequence[Any]]
) -> list[ActivityBucket]:
    """Every bucket from `since` up to `now` (the last one may be partial), zero when the
    query found nothing in it; `counts` are (bucket index, delivered, failed)."""
    if bucket <= 0:
        raise ValueError("bucket must be positive")
    size = max(0, math.ceil((now - since) / bucket))
    series = [ActivityBucket(since + i * bucket) for i in range(size)]
    for slot, delivered, failed in counts:
        index = int(slot)
        if 0 <= index < size:
            series[index] = ActivityBucket(series[index].start, int(delivered), int(failed))
    return series


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    started_at: float
    duration_ms: float
    http_status: int | None
    error: str | None
    response_snippet: str | None
    success: bool


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    event_id: str
    namespace: str
    app: str
    endpoint: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: float
    updated_at: float
    next_attempt_at: float | None
    last_http_status: int | None
    last_error: str | None


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: DeliveryRow
    attempts: list[AttemptRow]
    payload: str


@dataclass(frozen=True)
class DeliveryQuery:
    namespace: str
    app: str | None = None
    endpoint: str | None = None
    statuses: tuple[DeliveryStatus, ...] = ()
    event_types: tuple[str, ...] = ()  # exact event types (no wildcards); () = any
    cursor: str | None = None  # return ids strictly older than this one
    limit: int = 50


@dataclass(frozen=True)
class EndpointState:
    """Delivery state of one endpoint; `version` grows on every change (the stats cursor)."""

    namespace: str
    endpoint: str
    version: int = 0
    last_delivery_time: float | None = None
    last_success_time: float | None = None
    last_failure_time: float | None = None
    last_http_status: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    disabled_reason: str | None = None
    disabled_at: float | None = None
    enable_token: str | None = None  # the webhook-operator.dev/enable value last acted on
    counts: dict[str, int] = field(default_factory=dict)  # see Store.stats_since


@dataclass(frozen=True)
class Sweep:
    """What a heartbeat found."""

    released: int  # leases of other owners given back: gone, or silent too long
    # This owner had been presumed gone (its heartbeat was stale): the leases it held then
    # were given back, and it is registered again.
    rejoined: bool = False


@dataclass(frozen=True)
class RateGrant:
    """Send slots reserved from an endpoint's shared rate budget (`Store.reserve_rate`):
    `count` slots `interval` apart from `first`, the budget's next free slot then being
    `next_free`. A slot before the reservation's `now` (a burst) may be used at once."""

    first: float
    count: int
    interval: float
    next_free: float

    def slot(self, index: int) -> float:
        return self.first + index * self.interval


@dataclass(frozen=True)
class SlotGrant:
    """What `Store.take_slots` gave: `granted` more concurrency slots of the endpoint;
    `share`, while other owners hold or want some too, the most this owner should hold
    (None when it is the only one)."""

    granted: int
    share: int | None


def slot_grant(
    limit: int, held: int, want: int, others: list[tuple[int, int]], spare: int = 0
) -> SlotGrant:
    """Slots for an owner holding `held` of the endpoint's `limit` and waiting for `want`
    more (and glad of `spare` beyond them, so it need not ask again soon), beside other
    owners' (held, wanted): never more than the limit in all, and while others hold or
    want some, never beyond an even share (rounded up, so a limit below the number of
    owners still lets each have one in turn)."""
    taken = sum(h for h, _ in others)
    share = slot_share(limit, sum(1 for h, w in others if h > 0 or w > 0))
    cap = limit if share is None else share
    return SlotGrant(max(0, min(want + spare, limit - taken - held, cap - held)), share)


def slot_share(limit: int, others: int) -> int | None:
    """The most one owner may hold of an endpoint's `limit` slots while `others` owners
    hold or want some too (None: it is the only one, the limit is its own)."""
    return None if not others else -(-limit // (others + 1))


class OwnerInUse(RuntimeError):
    """Another live process claims under the same owner name."""


@dataclass(frozen=True)
class QueueStats:
    due: int  # pending/failed deliveries whose next attempt is due now
    oldest_due_age: float  # seconds the oldest due delivery has waited; 0 when none
    scheduled: int  # pending/failed deliveries in all
    held: int


# What the stores raise when their database cannot answer now (down, restarting, locked
# past the busy timeout, out of connections): the caller may succeed later, so the APIs
# answer 503. Each backend module adds its driver's classes as it is imported, so a process
# on SQLite never imports psycopg to recognise its errors.
UNAVAILABLE: list[type[Exception]] = []


def store_unavailable(exc: object) -> TypeGuard[Exception]:
    return isinstance(exc, tuple(UNAVAILABLE))


class Store(Protocol):
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def create_event(
        self, event: NewEvent, deliveries: list[NewDelivery], dedupe_window: float = 86400.0
    ) -> tuple[str, int, bool]:
        """Store an event and its deliveries atomically. When `event.idempotency_key` was
        used for the same namespace/app within `dedupe_window` seconds, store nothing and
        return the earlier event: (event id, its delivery count, True). Otherwise
        (event.id, len(deliveries), False)."""

    async def create_events(
        self, batch: list[tuple[NewEvent, list[NewDelivery]]], dedupe_window: float = 86400.0
    ) -> list[tuple[str, int, bool] | Exception]:
        """`create_event` for several events, in order, in as few transactions as the
        backend allows (ingest under load groups concurrent submissions into one commit).
        A key repeated within the batch is a duplicate of its first use. An event the
        database refuses (bad data, a constraint) gets its exception in its place and is
        not stored; the others are stored all the same: one producer's bad event never
        fails another's."""

    async def claim(
        self, now: float, limit: int, lease_seconds: float, owner: str
    ) -> list[Claimed]:
        """Lease up to `limit` PENDING/FAILED deliveries with next_attempt_at <= now whose
        lease is free or expired, ordered by next_attempt_at then id. Two callers never get
        the same delivery while its lease holds (PostgreSQL: FOR UPDATE SKIP LOCKED)."""

    async def register_owner(self, owner: str, now: float) -> int:
        """Become the live claimer `owner` (unique to this process) before claiming, and
        give back the leases provably left by earlier processes: SQLite waits for the
        file's claim lock, then gives back every lease; PostgreSQL takes `owner`'s session
        lock (OwnerInUse when a live session holds it) and gives back the leases held in
        this name before. Returns how many leases were given back."""

    async def heartbeat(self, owner: str, now: float, stale_after: float) -> Sweep:
        """Renew `owner`'s registration and give back the leases of owners that are gone or
        whose last heartbeat is more than `stale_after` seconds before `now`."""

    async def release_owner(self, owner: str) -> int:
        """Clean shutdown, nothing in flight any more: give back every lease `owner` still
        holds (due as they were) and end its registration. Returns how many."""

    async def finish_attempts(self, results: list[AttemptResult], now: float) -> None:
        """Record attempts (one row each) and apply them to their deliveries (status,
        attempts, next_attempt_at, last status/error; lease released) only where
        `owner` still holds the lease; update each endpoint's state (times, last status
        and error, consecutive failures; disabled when `disable_reason` is set) and bump
        its version."""

    async def defer(self, delivery_ids: list[str], owner: str, until: float) -> None:
        """Give leased deliveries back unattempted, due at `until` (rate limit)."""

    async def hold(self, delivery_ids: list[str], owner: str) -> None:
        """Leased deliveries of a paused/disabled endpoint become HELD, unattempted."""

    async def release_held(self, namespace: str, endpoint: str, now: float) -> int:
        """HELD deliveries of the endpoint become PENDING, due now (oldest id first)."""

    async def held_endpoints(self) -> list[tuple[str, str]]:
        """(namespace, endpoint) of every endpoint with HELD deliveries."""

    async def expire_held(self, namespace: str, endpoint: str, hold_for: float, now: float) -> int:
        """HELD deliveries of the endpoint created more than `hold_for` seconds before
        `now` become EXPIRED (updated at `now`), and the endpoint's version grows when any
        did; returns how many. `hold_for` 0 (or less) holds forever: nothing expires.
        Safe to run from every replica at once: a delivery expires once."""

    async def endpoints_with_open_deliveries(self) -> list[tuple[str, str]]:
        """(namespace, endpoint) of every endpoint with PENDING, FAILED or HELD deliveries."""

    async def cancel_endpoint(self, namespace: str, endpoint: str, now: float) -> int:
        """Open deliveries of a deleted endpoint become CANCELLED."""

    async def set_disabled(
        self,
        namespace: str,
        endpoint: str,
        reason: str | None,
        now: float,
        enable_token: str | None = None,
    ) -> None:
        """Disable (reason set) or re-enable (reason None: consecutive failures reset,
        `enable_token` recorded) the endpoint; bumps its version."""

    async def enable_once(self, namespace: str, endpoint: str, enable_token: str) -> bool:
        """Enable a disabled endpoint for the enable annotation's value `enable_token`,
        once: False when it is not disabled or that value was acted on already (by any
        replica)."""

    async def endpoint_state(self, namespace: str, endpoint: str) -> EndpointState | None: ...

    async def reserve_rate(
        self,
        namespace: str,
        endpoint: str,
        now: float,
        rate: float,
        burst: float,
        want: int,
        horizon: float,
    ) -> RateGrant:
        """Take up to `want` send slots of the endpoint's rate budget, shared by every
        process on the database (so `rate` per second, `burst` at once, hold cluster-wide),
        only slots due within `horizon` seconds of `now` and not before a receiver's 429
        asked (`rate_not_before`). One atomic statement: a replica reserves a batch."""

    async def rate_not_before(self, namespace: str, endpoint: str, until: float) -> None:
        """A receiver answered 429: no reservation for the endpoint, and no send to it
        without a rate limit, by any process, starts before `until` (a later time
        already recorded stays). The endpoint needs no rate budget yet."""

    async def slowed_endpoints(self, now: float) -> dict[tuple[str, str], float]:
        """The endpoints (namespace, name) a 429 holds back until a time after `now`
        (`rate_not_before`), with that time."""

    async def take_slots(
        self,
        namespace: str,
        endpoint: str,
        owner: str,
        held: int,
        want: int,
        limit: int,
        spare: int = 0,
    ) -> SlotGrant:
        """Record that `owner` holds `held` of the endpoint's `limit` concurrency slots
        (fewer than before gives some back) and take up to `want` more and `spare` beyond
        them, shared by every process on the database (`slot_grant`); what it did not get
        of `want` stays wanted, so other owners see it and keep to their share."""

    async def slot_contenders(self, owner: str) -> dict[tuple[str, str], int]:
        """For each endpoint (namespace, name) whose slots owners other than `owner` hold
        or want: how many of them do (`slot_share` of that is `owner`'s share)."""

    async def disabled_endpoints(self) -> list[EndpointState]:
        """Every endpoint currently disabled (loaded at start-up)."""

    async def list_deliveries(self, query: DeliveryQuery) -> tuple[list[DeliveryRow], str | None]:
        """Newest first; returns (rows, cursor for the next page or None)."""

    async def get_delivery(self, namespace: str, delivery_id: str) -> DeliveryDetail | None: ...

    async def resend(self, namespace: str, delivery_id: str, now: float, new_id: str) -> str | None:
        """A new PENDING delivery of the same event to the same endpoint; None if unknown."""

    async def replay(
        self,
        namespace: str,
        endpoint: str,
        since: float,
        now: float,
        statuses: tuple[DeliveryStatus, ...],
        new_ids: list[str] | None = None,
        until: float | None = None,
    ) -> int:
        """New PENDING deliveries for every delivery of the endpoint created at or after
        `since` (and before `until`, when given) whose status is in `statuses`; returns how
        many. Ids: `new_ids` when given (at least as many as needed), else generated."""

    async def stats_since(
        self, cursor: int, now: float, window: float = 86400.0
    ) -> tuple[list[EndpointState], int]:
        """Endpoint states with version > cursor, and the new cursor. `counts` holds
        delivered / failed / exhausted / expired within `window` seconds and pending / held
        now: deliveries that became DELIVERED, EXHAUSTED or EXPIRED in the window, attempts
        that failed in the window, deliveries PENDING or FAILED (awaiting an attempt) and
        HELD now."""

    async def activity(
        self, namespace: str, app: str, since: float, now: float, bucket: float = 3600.0
    ) -> list[ActivityBucket]:
        """The app's deliveries created in [since, now), counted per `bucket` seconds from
        `since` (see ActivityBucket): every bucket, oldest first, empty ones as zeros."""

    async def queue_stats(self, now: float) -> QueueStats: ...

    async def purge(self, before: float) -> int:
        """Delete events (with their deliveries and attempts) created before `before`
        whose deliveries are all finished; returns the number of events deleted."""
