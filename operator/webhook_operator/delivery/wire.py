"""JSON shapes of the delivery service's HTTP API (camelCase, RFC 3339 times)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from webhook_operator.store.base import AttemptRow, DeliveryDetail, DeliveryRow, EndpointState


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> float:
    """RFC 3339 (or a bare date) to epoch seconds; ValueError with a readable message."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an RFC 3339 time such as 2026-11-25T10:00:00Z") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):  # beyond year 9999 once in UTC
        raise ValueError(f"{value!r} is out of the range of times") from None


def delivery(row: DeliveryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "eventId": row.event_id,
        "namespace": row.namespace,
        "app": row.app,
        "endpoint": row.endpoint,
        "eventType": row.event_type,
        "status": row.status.value,
        "attempts": row.attempts,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "nextAttemptAt": iso(row.next_attempt_at),
        "lastHttpStatus": row.last_http_status,
        "lastError": row.last_error,
    }


def attempt(row: AttemptRow) -> dict[str, Any]:
    return {
        "attempt": row.attempt,
        "startedAt": iso(row.started_at),
        "durationMs": round(row.duration_ms, 3),
        "httpStatus": row.http_status,
        "error": row.error,
        "responseSnippet": row.response_snippet,
        "success": row.success,
    }


def detail(d: DeliveryDetail) -> dict[str, Any]:
    return {
        **delivery(d.delivery),
        "attemptLog": [attempt(a) for a in d.attempts],
        "payload": d.payload,
    }


def endpoint_stats(state: EndpointState, window: str) -> dict[str, Any]:
    return {
        "namespace": state.namespace,
        "name": state.endpoint,
        "lastDeliveryTime": iso(state.last_delivery_time),
        "lastSuccessTime": iso(state.last_success_time),
        "lastFailureTime": iso(state.last_failure_time),
        "lastHttpStatus": state.last_http_status,
        "lastError": state.last_error,
        "consecutiveFailures": state.consecutive_failures,
        "disabledReason": state.disabled_reason,
        "disabledAt": iso(state.disabled_at),
        "deliveries": dict(state.counts),
        "window": window,
    }
