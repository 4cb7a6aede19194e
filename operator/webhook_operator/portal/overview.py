"""What a customer sees of an app before touching an endpoint: its event catalog (with an
example payload per type, so a receiver can be written before the first real event) and
seed 000's analytics (endpoints by health, recent deliveries and failures, latest times).

Pure: the handlers in overview_api.py hand in the WebhookApp spec, its endpoints as the
portal's watch holds them, and the time; nothing here reads Kubernetes or a clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from webhook_operator import event_matching, ids
from webhook_operator.api.v1alpha1 import EventType, Health, WebhookAppSpec
from webhook_operator.api.v1alpha1 import PortalSettings as AppPortal
from webhook_operator.health import summarize
from webhook_operator.http_api.wire import Wire
from webhook_operator.timestamps import parse_ts

# Deep enough for any schema a person writes by hand; shallow enough that a schema nested
# a thousand levels (a CRD allows it) costs nothing.
MAX_DEPTH = 8
# Arrays in examples show one item, or as many as minItems asks, up to this.
MAX_ITEMS = 3
# The overview's activity window, in hours (the delivery service allows up to a week).
ACTIVITY_HOURS = 24
# Fixed so that the example of a type does not change between two reads.
EXAMPLE_MOMENT = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)
EXAMPLE_EVENT_ID = ids.event_id(EXAMPLE_MOMENT.timestamp())[:14] + "0" * 16

_STRING_FORMATS: dict[str, str] = {
    "date-time": "2025-01-31T12:00:00Z",
    "date": "2025-01-31",
    "time": "12:00:00Z",
    "duration": "PT1H",
    "email": "alice@example.com",
    "idn-email": "alice@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
}


# --- answers ------------------------------------------------------------------------------


class CatalogEventType(Wire):
    name: str
    """The event type, such as invoice.paid."""
    description: str | None = None
    """What the event means and when it is sent."""
    category: str | None = None
    """The group the event is listed under, such as Billing."""
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    """The JSON Schema the event's data satisfies, when the app declares one."""
    deprecated: bool = False
    """Still sent, but on its way out: do not build on it."""
    subscribable: bool = True
    """Whether endpoints created through the portal may subscribe to it."""
    example: dict[str, Any]
    """A made-up delivery body of this type, in the shape every delivery has (id, type,
    timestamp, data); data follows the schema when there is one."""


class Catalog(Wire):
    app: str
    """The WebhookApp the ticket opens."""
    event_types: list[CatalogEventType]
    """The app's event catalog, in the order the app declares it."""
    categories: list[str]
    """The categories used in the catalog, sorted."""
    allowed_event_types: list[str] | None = None
    """The types or wildcards customers may subscribe to (spec.portal.eventTypes); null
    means every type of the catalog, or any type at all when the catalog is empty."""


class EndpointCounts(Wire):
    total: int
    """Endpoints of the app, however they were created."""
    pending: int
    """No delivery yet."""
    healthy: int
    """The last delivery succeeded."""
    failing: int
    """The last attempt failed; retries continue."""
    disabled: int
    """Paused, or disabled after exhausting retries or a 410 Gone."""
    max_endpoints: int
    """How many endpoints the app may have before the portal refuses to create more."""


class RecentDeliveries(Wire):
    window: str | None = None
    """The recent window the counts cover, for example 24h; null before any delivery."""
    delivered: int = 0
    """Deliveries that succeeded in the window."""
    failed: int = 0
    """Attempts that failed in the window."""
    exhausted: int = 0
    """Deliveries that used up every retry in the window."""
    pending: int = 0
    """Deliveries waiting for their next attempt now."""
    held: int = 0
    """Deliveries held while their endpoint is paused or disabled."""
    expired: int = 0
    """Held deliveries that waited longer than their endpoint's holdFor, in the window."""


class Summary(Wire):
    app: str
    """The WebhookApp the ticket opens."""
    endpoints: EndpointCounts
    """Endpoints by health."""
    deliveries: RecentDeliveries
    """Recent deliveries and failures across the app's endpoints."""
    last_delivery_time: datetime | None = None
    """When the last delivery attempt ended, successful or not."""
    last_success_time: datetime | None = None
    """When the last delivery succeeded."""
    last_failure_time: datetime | None = None
    """When the last delivery attempt failed."""


# --- catalog --------------------------------------------------------------------------------


def _first_type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str) and k != "null"]
        return kinds[0] if kinds else ("null" if "null" in kind else None)
    if isinstance(kind, str):
        return kind
    if isinstance(schema.get("properties"), dict):
        return "object"
    if isinstance(schema.get("items"), dict):
        return "array"
    return None


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if integer else 0.5
    value: float = 1
    if isinstance(low, int | float) and not isinstance(low, bool):
        value = max(value, low)
    if isinstance(ex_low, int | float) and not isinstance(ex_low, bool) and value <= ex_low:
        value = ex_low + step
    if isinstance(high, int | float) and not isinstance(high, bool):
        value = min(value, high)
    if isinstance(ex_high, int | float) and not isinstance(ex_high, bool) and value >= ex_high:
        value = ex_high - step
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and not isinstance(multiple, bool) and multiple > 0:
        # The smallest multiple at or above the value, unless that passes the maximum.
        above = multiple * math.ceil(value / multiple)
        over = isinstance(high, int | float) and not isinstance(high, bool) and above > high
        value = multiple * math.floor(value / multiple) if over else above
    if integer:
        return int(value)
    return float(value)


def _string(schema: Mapping[str, Any]) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _STRING_FORMATS:
        return _STRING_FORMATS[fmt]
    value = "string"
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and not isinstance(low, bool) and len(value) < low:
        value = (value * (low // len(value) + 1))[:low]
    if isinstance(high, int) and not isinstance(high, bool) and high >= 0:
        value = value[:high]
    return value


def _object(schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    properties = schema.get("properties")
    if not isinstance(properties, dict) or depth >= MAX_DEPTH:
        return result
    for name, sub in properties.items():
        if isinstance(name, str):
            result[name] = example_value(sub, depth + 1)
    return result


def _array(schema: Mapping[str, Any], depth: int) -> list[Any]:
    items = schema.get("items")
    low, high = schema.get("minItems"), schema.get("maxItems")
    count = low if isinstance(low, int) and not isinstance(low, bool) else 1
    count = max(1, min(count, MAX_ITEMS))
    if isinstance(high, int) and not isinstance(high, bool):
        count = min(count, max(high, 0))
    if depth >= MAX_DEPTH or not isinstance(items, dict | bool):
        return []
    one = example_value(items, depth + 1)
    if schema.get("uniqueItems") is True:
        count = min(count, 1)
    return [one] * count


def _merged(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema with allOf's parts folded in and the first alternative of anyOf/oneOf
    taken: enough for an example, not a general schema algebra."""
    merged = {k: v for k, v in schema.items() if k not in ("allOf", "anyOf", "oneOf")}
    parts: list[Any] = (
        list(schema.get("allOf") or []) if isinstance(schema.get("allOf"), list) else []
    )
    for key in ("anyOf", "oneOf"):
        choices = schema.get(key)
        if isinstance(choices, list) and choices:
            parts.append(choices[0])
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                props = merged.get("properties")
                merged["properties"] = {**(props if isinstance(props, dict) else {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*(merged.get("required") or []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def example_value(schema: Any, depth: int = 0) -> Any:
    """A plausible value satisfying a JSON Schema written by hand: the schema's own const,
    examples, default or first enum value when it has one, else one made up by type."""
    if not isinstance(schema, dict):
        return None
    if depth < MAX_DEPTH and any(k in schema for k in ("allOf", "anyOf", "oneOf")):
        schema = _merged(schema)
    if "const" in schema:
        return schema["const"]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    if "default" in schema:
        return schema["default"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    match _first_type(schema):
        case "object":
            return _object(schema, depth)
        case "array":
            return _array(schema, depth)
        case "string":
            return _string(schema)
        case "integer":
            return _number(schema, integer=True)
        case "number":
            return _number(schema, integer=False)
        case "boolean":
            return True
        case _:
            return None


def example_payload(event: EventType) -> dict[str, Any]:
    """A delivery body of this type as receivers get it (see delivery.ingest.payload)."""
    data = example_value(event.schema_) if event.schema_ is not None else {}
    return {
        "id": EXAMPLE_EVENT_ID,
        "type": event.name,
        "timestamp": EXAMPLE_MOMENT.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": {} if data is None else data,
    }


def catalog(app: str, spec: WebhookAppSpec, portal: AppPortal) -> Catalog:
    allowed = portal.event_types
    return Catalog(
        app=app,
        event_types=[
            CatalogEventType(
                name=event.name,
                description=event.description,
                category=event.category,
                schema_=event.schema_,
                deprecated=event.deprecated,
                subscribable=allowed is None or event_matching.subscribed(allowed, event.name),
                example=example_payload(event),
            )
            for event in spec.event_types
        ],
        categories=sorted({e.category for e in spec.event_types if e.category}),
        allowed_event_types=None if allowed is None else list(allowed),
    )


# --- summary --------------------------------------------------------------------------------

_COUNTED = ("delivered", "failed", "exhausted", "pending", "held", "expired")


def _health(status: Mapping[str, Any]) -> Health:
    try:
        return Health(status.get("health", Health.PENDING))
    except ValueError:
        return Health.PENDING


def summary(app: str, portal: AppPortal, endpoints: Iterable[Mapping[str, Any]]) -> Summary:
    """Seed 000's analytics from the endpoints' status, by the same rules as the
    WebhookApp's status (health.summarize) but from the watch's latest copy of each
    endpoint, so the counts and the times come from one moment."""
    rows = []
    totals = dict.fromkeys(_COUNTED, 0)
    window: str | None = None
    for obj in endpoints:
        status = obj.get("status") or {}
        rows.append(
            (
                _health(status),
                parse_ts(status.get("lastDeliveryTime")),
                parse_ts(status.get("lastSuccessTime")),
                parse_ts(status.get("lastFailureTime")),
            )
        )
        counts = status.get("deliveries") or {}
        for key in _COUNTED:
            value = counts.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                totals[key] += value
        if window is None and isinstance(counts.get("window"), str):
            window = counts["window"]
    total = summarize(rows)
    return Summary(
        app=app,
        endpoints=EndpointCounts(
            total=total.endpoints,
            pending=total.pending,
            healthy=total.healthy,
            failing=total.failing,
            disabled=total.disabled,
            max_endpoints=portal.max_endpoints,
        ),
        deliveries=RecentDeliveries(window=window, **totals),
        last_delivery_time=total.last_delivery_time,
        last_success_time=total.last_success_time,
        last_failure_time=total.last_failure_time,
    )
