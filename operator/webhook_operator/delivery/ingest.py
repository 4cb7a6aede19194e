"""Turning a producer's POST into an event and its deliveries, with the reasons a person
can act on when the event is refused. No I/O: the HTTP layer and the store are around it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_operator import ids
from webhook_operator.api.v1alpha1 import EVENT_TYPE_PATTERN
from webhook_operator.delivery.registry import AppConfig, EndpointConfig
from webhook_operator.store.base import DeliveryStatus, NewDelivery, NewEvent

MAX_ID_LENGTH = 256
MAX_TYPE_LENGTH = 256
# Nesting levels of `data`. Real events stay far below; the limit keeps every later step
# (schema validation, the encoder, receivers' parsers) clear of recursion limits.
MAX_DATA_DEPTH = 64
EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
# A \uD800-\uDFFF escape: the only way a surrogate gets into a string parsed from UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e400 would become infinity, which JSON cannot carry to the receiver.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


# The standard library's decoder keeps integers of any size exact (orjson would turn
# those beyond 64 bits into floats) and reports duplicate keys through the pairs hook.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_constant=_no_constant, parse_float=_finite_float
)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` levels (level by level, no recursion)."""
    level = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
    return False


def parse_json(raw: bytes, max_depth: int) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity, no lone surrogates, at
    most `max_depth` levels. Anything else is an IngestError with a reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(400, "InvalidUTF8", f"the body is not valid UTF-8: {exc}") from None
    try:
        value = _DECODER.decode(text)
    except _DuplicateKey as exc:
        raise IngestError(
            400, "DuplicateKey", f"the key {exc.key!r} appears twice in one object"
        ) from None
    except RecursionError:
        raise IngestError(
            400, "TooDeep", f"the JSON nests more than {max_depth} levels deep"
        ) from None
    except ValueError as exc:
        raise IngestError(400, "MalformedJSON", f"the body is not valid JSON: {exc}") from None
    # Only a body with that many brackets can nest that deep: most never pay for the walk.
    if raw.count(b"[") + raw.count(b"{") > max_depth and _deeper_than(value, max_depth):
        raise IngestError(400, "TooDeep", f"the JSON nests more than {max_depth} levels deep")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise IngestError(
                400,
                "InvalidUnicode",
                "the body has a lone surrogate escape (\\ud800-\\udfff without its pair),"
                " which is not a Unicode character",
            ) from None
    return value


def parse_object(raw: bytes, example: str, max_depth: int = MAX_DATA_DEPTH + 1) -> dict[str, Any]:
    """A strict JSON object (see parse_json); `example` shows the expected shape."""
    value = parse_json(raw, max_depth)
    if not isinstance(value, dict):
        raise IngestError(400, "MalformedRequest", f"the body must be a JSON object {example}")
    return value


def parse_body(raw: bytes) -> Submitted:
    body = parse_object(raw, '{"type": "invoice.paid", "data": {...}}')
    event_type = body.get("type")
    if (
        not isinstance(event_type, str)
        or len(event_type) > MAX_TYPE_LENGTH
        or not EVENT_TYPE.fullmatch(event_type)
    ):
        raise IngestError(
            400,
            "InvalidEventType",
            '"type" must be a dotted name of lower-case letters, digits, "-" and "_",'
            f' at most {MAX_TYPE_LENGTH} characters, such as "invoice.paid"',
        )
    key = body.get("id")
    if key is not None and (
        not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH or not key.isprintable()
    ):
        raise IngestError(
            400,
            "InvalidEventId",
            f'"id" must be a string of 1 to {MAX_ID_LENGTH} printable characters'
            " (no control characters)",
        )
    unknown = sorted(set(body) - {"type", "id", "data"})
    if unknown:
        raise IngestError(
            400,
            "MalformedEvent",
            f"unknown fields: {', '.join(map(repr, unknown))} (allowed: type, id, data)",
        )
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise IngestError(400, "MalformedEvent", '"data" must be a JSON object')
    return Submitted(type=event_type, idempotency_key=key, data=data)


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
