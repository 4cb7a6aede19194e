"""Turning a producer's POST into an event and its deliveries, with the reasons a person
can act on when the event is refused. No I/O: the HTTP layer and the store are around it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_operator import ids
from webhook_operator.delivery.registry import AppConfig, EndpointConfig
from webhook_operator.store.base import DeliveryStatus, NewDelivery, NewEvent

MAX_ID_LENGTH = 256
MAX_TYPE_LENGTH = 256


class IngestError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Submitted:
    type: str
    idempotency_key: str | None
    data: Any


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e400 would become infinity, which JSON cannot carry to the receiver.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_body(raw: bytes) -> Submitted:
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(400, "MalformedJSON", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise IngestError(
            400, "MalformedEvent", 'the body must be a JSON object {"type": ..., "data": ...}'
        )
    event_type = body.get("type")
    if not isinstance(event_type, str) or not event_type or len(event_type) > MAX_TYPE_LENGTH:
        raise IngestError(
            400, "MalformedEvent", '"type" must be a non-empty string such as "invoice.paid"'
        )
    key = body.get("id")
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH):
        raise IngestError(
            400, "MalformedEvent", f'"id" must be a string of 1 to {MAX_ID_LENGTH} characters'
        )
    unknown = sorted(set(body) - {"type", "id", "data"})
    if unknown:
        raise IngestError(
            400, "MalformedEvent", f"unknown fields: {', '.join(unknown)} (allowed: type, id, data)"
        )
    return Submitted(type=event_type, idempotency_key=key, data=body.get("data", {}))


def check_catalog(app: AppConfig, submitted: Submitted) -> None:
    if not app.catalog:
        return
    if submitted.type not in app.catalog:
        declared = ", ".join(sorted(app.catalog))
        raise IngestError(
            422,
            "UnknownEventType",
            f"event type {submitted.type!r} is not in the catalog of WebhookApp {app.name}"
            f" (declared: {declared})",
        )
    validator = app.catalog[submitted.type]
    if validator is None:
        return
    errors = sorted(validator.iter_errors(submitted.data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise IngestError(
            422,
            "SchemaMismatch",
            f"data does not match the schema of {submitted.type}:"
            f" at {where}: {first.message}{more}",
        )


def payload(event_id: str, submitted: Submitted, now: float) -> str:
    """The body every delivery of the event carries, in the Standard Webhooks shape."""
    timestamp = (
        datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    envelope = {
        "id": event_id,
        "type": submitted.type,
        "timestamp": timestamp,
        "data": submitted.data,
    }
    try:
        # orjson writes the same compact UTF-8 JSON several times faster (ingest hot path).
        return orjson.dumps(envelope).decode()
    except TypeError:  # an integer beyond 64 bits: the standard library keeps it exact
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def build(
    namespace: str,
    app: AppConfig,
    submitted: Submitted,
    subscribers: list[EndpointConfig],
    disabled: set[tuple[str, str]],
    now: float,
) -> tuple[NewEvent, list[NewDelivery]]:
    """The event and one delivery per subscribed endpoint; paused or disabled endpoints
    get theirs held, to be delivered when they are active again."""
    event_id = ids.event_id(now)
    event = NewEvent(
        id=event_id,
        namespace=namespace,
        app=app.name,
        type=submitted.type,
        payload=payload(event_id, submitted, now),
        idempotency_key=submitted.idempotency_key,
        created_at=now,
    )
    deliveries = []
    for endpoint in subscribers:
        held = not endpoint.active or (endpoint.namespace, endpoint.name) in disabled
        deliveries.append(
            NewDelivery(
                id=ids.delivery_id(now),
                endpoint=endpoint.name,
                status=DeliveryStatus.HELD if held else DeliveryStatus.PENDING,
                next_attempt_at=now,
            )
        )
    return event, deliveries
