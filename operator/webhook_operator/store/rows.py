"""Between records and rows, for both databases: the parameters each statement in
`sql/*.sql` takes, and the records made from the rows it returns.

Both schemas have the same columns (tests/integration/test_store_schema.py), and both
drivers take the same named parameters, so one mapping serves both. Positions follow the
column lists in `sql/queries.sql`; a change there is a change here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from webhook_operator.store.base import (
    AttemptResult,
    AttemptRow,
    Claimed,
    DeliveryRow,
    DeliveryStatus,
    EndpointState,
    NewDelivery,
    NewEvent,
    QueueStats,
    activity_first_id,
)

Params = dict[str, Any]
Row = tuple[Any, ...]

# The counts select_stats adds after the state columns, in order.
STATE_COUNT_KEYS: Final = ("delivered", "failed", "exhausted", "pending", "held", "expired")
STATE_COLUMNS: Final = 12
DELIVERY_COLUMNS: Final = 13
CLAIMED_COLUMNS: Final = 10

# -- parameters -------------------------------------------------------------------------


def event_params(event: NewEvent, delivery_count: int) -> Params:
    return {
        "id": event.id,
        "namespace": event.namespace,
        "app": event.app,
        "type": event.type,
        "payload": event.payload,
        "idempotency_key": event.idempotency_key,
        "delivery_count": delivery_count,
        "created_at": event.created_at,
        "traceparent": event.traceparent,
    }


def duplicate_params(event: NewEvent, key: str, window: float) -> Params:
    return {
        "namespace": event.namespace,
        "app": event.app,
        "key": key,
        "since": event.created_at - window,
    }


def delivery_params(event: NewEvent, delivery: NewDelivery) -> Params:
    return {
        "id": delivery.id,
        "event_id": event.id,
        "namespace": event.namespace,
        "app": event.app,
        "endpoint": delivery.endpoint,
        "event_type": event.type,
        "status": delivery.status.value,
        "now": event.created_at,
        "next_attempt_at": delivery.next_attempt_at,
    }


def batch_params(
    batch: Sequence[tuple[NewEvent, Sequence[NewDelivery]]],
) -> tuple[list[Params], list[Params]]:
    """The rows of a batch of events: the events', their deliveries'."""
    return (
        [event_params(e, len(ds)) for e, ds in batch],
        [delivery_params(e, d) for e, ds in batch for d in ds],
    )


def finish_params(result: AttemptResult, now: float) -> Params:
    return {
        "delivery_id": result.delivery_id,
        "owner": result.owner,
        "attempt": result.attempt,
        "status": result.status.value,
        "next_attempt_at": result.next_attempt_at,
        "http_status": result.http_status,
        "error": result.error,
        "now": now,
    }


def attempt_params(result: AttemptResult) -> Params:
    return {
        "delivery_id": result.delivery_id,
        "attempt": result.attempt,
        "namespace": result.namespace,
        "endpoint": result.endpoint,
        "started_at": result.started_at,
        "duration_ms": result.duration_ms,
        "http_status": result.http_status,
        "error": result.error,
        "response_snippet": result.response_snippet,
        "success": result.success,
    }


def attempt_state_params(result: AttemptResult, now: float, version: int) -> Params:
    # Endpoint times are when the attempt ended.
    ended_at = result.started_at + result.duration_ms / 1000
    return {
        "namespace": result.namespace,
        "endpoint": result.endpoint,
        "version": version,
        "ended_at": ended_at,
        "success_time": ended_at if result.success else None,
        "failure_time": None if result.success else ended_at,
        "http_status": result.http_status,
        "error": result.error,
        "failures": 0 if result.success else 1,
        "disable_reason": result.disable_reason,
        "disabled_at": now if result.disable_reason else None,
    }


def activity_params(namespace: str, app: str, since: float, now: float, bucket: float) -> Params:
    return {
        "namespace": namespace,
        "app": app,
        "since": since,
        "now": now,
        "bucket": bucket,
        "first_id": activity_first_id(since),
    }


# -- rows -------------------------------------------------------------------------------


def claimed_row(row: Row) -> Claimed:
    # The claim statements' first columns are Claimed's fields, in order.
    return Claimed(*row[:CLAIMED_COLUMNS])


def delivery_row(row: Row) -> DeliveryRow:
    return DeliveryRow(
        id=row[0],
        event_id=row[1],
        namespace=row[2],
        app=row[3],
        endpoint=row[4],
        event_type=row[5],
        status=DeliveryStatus(row[6]),
        attempts=row[7],
        created_at=row[8],
        updated_at=row[9],
        next_attempt_at=row[10],
        last_http_status=row[11],
        last_error=row[12],
    )


def attempt_row(row: Row) -> AttemptRow:
    return AttemptRow(
        attempt=row[0],
        started_at=row[1],
        duration_ms=row[2],
        http_status=row[3],
        error=row[4],
        response_snippet=row[5],
        success=bool(row[6]),  # SQLite keeps booleans as 0/1
    )


def state_row(row: Row, counts: dict[str, int] | None = None) -> EndpointState:
    return EndpointState(
        namespace=row[0],
        endpoint=row[1],
        version=row[2],
        last_delivery_time=row[3],
        last_success_time=row[4],
        last_failure_time=row[5],
        last_http_status=row[6],
        last_error=row[7],
        consecutive_failures=row[8],
        disabled_reason=row[9],
        disabled_at=row[10],
        enable_token=row[11],
        counts=counts or {},
    )


def stats_row(row: Row) -> EndpointState:
    """A select_stats row: the state columns, then the counts."""
    counts = dict(zip(STATE_COUNT_KEYS, row[STATE_COLUMNS:], strict=True))
    return state_row(row[:STATE_COLUMNS], counts)


def queue_stats(row: Row, now: float) -> QueueStats:
    due, oldest, scheduled, held = row
    age = max(now - oldest, 0.0) if oldest is not None else 0.0
    return QueueStats(due=due, oldest_due_age=age, scheduled=scheduled, held=held)
