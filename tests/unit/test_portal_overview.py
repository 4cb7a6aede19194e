"""The portal's catalog and summary answers, built from a WebhookApp spec and its endpoints'
status: example payloads a receiver could be written against, and seed 000's analytics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from webhook_operator.api.delivery_wire import ActivityBucket
from webhook_operator.api.v1alpha1 import PortalSettings, WebhookAppSpec
from webhook_operator.portal.overview import MAX_DEPTH, catalog, example_value, summary
from webhook_operator.portal.web.common import render
from webhook_operator.portal.web.overview_pages import (
    BOTTOM,
    HEIGHT,
    LEFT,
    TOP,
    WIDTH,
    build_chart,
    grouped,
    nice_ceiling,
)
from webhook_operator.store.base import activity_series

INVOICE = {
    "type": "object",
    "required": ["invoiceId", "amount", "currency", "paidAt"],
    "properties": {
        "invoiceId": {"type": "string", "minLength": 10},
        "amount": {"type": "integer", "minimum": 100, "maximum": 1000},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "paidAt": {"type": "string", "format": "date-time"},
        "payer": {
            "type": "object",
            "required": ["email"],
            "properties": {
                "email": {"type": "string", "format": "email"},
                "site": {"type": "string", "format": "uri"},
                "vip": {"type": "boolean"},
            },
        },
        "lines": {
            "type": "array",
            "minItems": 2,
            "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
        },
        "note": {"type": ["null", "string"], "maxLength": 3},
        "code": {"type": "string", "pattern": "^[a-z]+$", "examples": ["abc"]},
        "kind": {"const": "card"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
    },
}

SCHEMAS: list[dict[str, Any]] = [
    INVOICE,
    {"type": "string"},
    {"type": "integer", "multipleOf": 7, "minimum": 10},
    {"type": "integer", "multipleOf": 5, "maximum": 3},
    {"type": "integer", "exclusiveMinimum": 5, "multipleOf": 2},
    {"type": "number", "maximum": -5},
    {"type": "boolean"},
    {"type": "array", "items": {"type": "integer"}},
    {"properties": {"a": {"type": "string"}}, "required": ["a"]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}]},
    {"oneOf": [{"type": "string", "format": "uuid"}, {"type": "integer"}]},
    {"type": "object", "properties": {"n": {"type": "integer", "default": 42}}},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: json.dumps(s)[:40])
def test_examples_satisfy_the_schema_they_come_from(schema: dict[str, Any]) -> None:
    value = example_value(schema)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    assert errors == [], value


def test_example_uses_formats_and_the_schemas_own_values() -> None:
    data = example_value(INVOICE)
    assert data["currency"] == "EUR"
    assert data["kind"] == "card"
    assert data["code"] == "abc"
    assert datetime.fromisoformat(data["paidAt"].replace("Z", "+00:00")).tzinfo is not None
    assert "@" in data["payer"]["email"]
    assert data["payer"]["site"].startswith("https://")
    assert len(data["lines"]) == 2
    assert data["tags"] == []
    assert 100 <= data["amount"] <= 1000


def test_deep_or_odd_schemas_give_a_bounded_example() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(500):
        deep = {"type": "object", "properties": {"x": deep}}
    value = example_value(deep)
    depth = 0
    while isinstance(value, dict) and value:
        value, depth = value["x"], depth + 1
    assert depth <= MAX_DEPTH
    assert example_value({"$ref": "#/definitions/x"}) is None
    assert example_value(True) is None
    assert example_value({"type": "object", "properties": {"a": "not a schema"}}) == {"a": None}


def app_spec(**portal: Any) -> WebhookAppSpec:
    return WebhookAppSpec.model_validate(
        {
            "eventTypes": [
                {
                    "name": "invoice.paid",
                    "category": "Billing",
                    "description": "An invoice was paid.",
                    "schema": INVOICE,
                },
                {"name": "invoice.voided", "category": "Billing", "deprecated": True},
                {"name": "customer.deleted", "category": "Customers"},
                {"name": "ping"},
            ],
            "portal": portal,
        }
    )


def test_catalog_lists_types_with_examples_in_the_delivery_envelope() -> None:
    spec = app_spec()
    answer = catalog("shop", spec, spec.portal or PortalSettings()).model_dump(mode="json")
    assert [t["name"] for t in answer["eventTypes"]] == [
        "invoice.paid",
        "invoice.voided",
        "customer.deleted",
        "ping",
    ]
    assert answer["categories"] == ["Billing", "Customers"]
    assert answer["allowedEventTypes"] is None
    paid, voided, _, ping = answer["eventTypes"]
    assert paid["schema"] == INVOICE
    assert paid["description"] == "An invoice was paid."
    assert voided["deprecated"] is True
    assert paid["deprecated"] is False
    assert all(t["subscribable"] for t in answer["eventTypes"])
    example = paid["example"]
    assert set(example) == {"id", "type", "timestamp", "data"}
    assert example["type"] == "invoice.paid"
    assert example["id"].startswith("evt_")
    assert example["timestamp"].endswith("Z")
    assert list(Draft202012Validator(INVOICE).iter_errors(example["data"])) == []
    assert ping["example"]["data"] == {}
    assert ping["schema"] is None


def test_catalog_marks_what_the_portal_lets_customers_subscribe_to() -> None:
    spec = app_spec(eventTypes=["invoice.*"])
    answer = catalog("shop", spec, spec.portal or PortalSettings())
    assert {t.name: t.subscribable for t in answer.event_types} == {
        "invoice.paid": True,
        "invoice.voided": True,
        "customer.deleted": False,
        "ping": False,
    }
    assert answer.allowed_event_types == ["invoice.*"]


def test_catalog_of_an_app_without_one_is_empty() -> None:
    answer = catalog("shop", WebhookAppSpec(), PortalSettings())
    assert answer.event_types == []
    assert answer.categories == []


def endpoint(status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "e"}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def test_summary_counts_endpoints_by_health_and_sums_recent_deliveries() -> None:
    endpoints = [
        endpoint(None),  # the operator has not looked at it yet
        endpoint(
            {
                "health": "Healthy",
                "lastDeliveryTime": "2025-03-01T10:00:00Z",
                "lastSuccessTime": "2025-03-01T10:00:00Z",
                "deliveries": {"delivered": 5, "failed": 1, "window": "24h"},
            }
        ),
        endpoint(
            {
                "health": "Failing",
                "lastDeliveryTime": "2025-03-01T11:00:00Z",
                "lastSuccessTime": "2025-03-01T09:00:00Z",
                "lastFailureTime": "2025-03-01T11:00:00Z",
                "deliveries": {"delivered": 2, "failed": 3, "pending": 1, "window": "24h"},
            }
        ),
        endpoint({"health": "Disabled", "deliveries": {"exhausted": 1, "held": 4, "expired": 2}}),
        endpoint({"health": "Unheard-of", "deliveries": {"delivered": "many", "failed": -2}}),
    ]
    answer = summary("shop", PortalSettings(maxEndpoints=7), endpoints)
    assert answer.endpoints.model_dump() == {
        "total": 5,
        "pending": 2,
        "healthy": 1,
        "failing": 1,
        "disabled": 1,
        "maxEndpoints": 7,
    }
    assert answer.deliveries.model_dump() == {
        "window": "24h",
        "delivered": 7,
        "failed": 4,
        "exhausted": 1,
        "pending": 1,
        "held": 4,
        "expired": 2,
    }
    assert answer.last_delivery_time == datetime(2025, 3, 1, 11, tzinfo=UTC)
    assert answer.last_success_time == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert answer.last_failure_time == datetime(2025, 3, 1, 11, tzinfo=UTC)


def test_summary_of_an_app_without_endpoints() -> None:
    answer = summary("shop", PortalSettings(), []).model_dump(mode="json", by_alias=True)
    assert answer["endpoints"]["total"] == 0
    assert answer["endpoints"]["maxEndpoints"] == 20
    assert answer["deliveries"]["window"] is None
    assert answer["lastDeliveryTime"] is None


# --- the overview page's activity chart and the catalog page's grouping ----------------------

HOUR0 = datetime(2026, 12, 2, 0, tzinfo=UTC)


def buckets(*counts: tuple[int, int]) -> list[ActivityBucket]:
    return [
        ActivityBucket(start=HOUR0 + timedelta(hours=i), delivered=d, failed=f)
        for i, (d, f) in enumerate(counts)
    ]


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (10, 10), (11, 20), (42, 50), (501, 1000)],
)
def test_the_charts_scale_tops_at_a_round_number(value: int, ceiling: int) -> None:
    assert nice_ceiling(value) == ceiling


def test_chart_bars_stack_failed_on_delivered_and_share_the_width() -> None:
    counts = [(0, 0)] * 24
    counts[3], counts[4], counts[23] = (6, 4), (2, 0), (0, 1)
    chart = build_chart(buckets(*counts))
    baseline, plot = HEIGHT - BOTTOM, HEIGHT - BOTTOM - TOP
    assert (chart.hours, chart.delivered, chart.failed) == (24, 8, 5)
    assert [t.value for t in chart.ticks] == [0, 5, 10]  # the busiest hour has 10
    assert chart.ticks[-1].y == TOP
    assert chart.ticks[0].y == baseline

    busiest = chart.bars[3]
    assert busiest.delivered_height == pytest.approx(plot * 0.6, abs=0.01)
    assert busiest.delivered_y + busiest.delivered_height == pytest.approx(baseline)
    assert busiest.failed_height == pytest.approx(plot * 0.4, abs=0.01)
    assert busiest.failed_y + busiest.failed_height == pytest.approx(busiest.delivered_y)
    assert busiest.failed_y == pytest.approx(TOP)
    assert chart.bars[0].delivered_height == chart.bars[0].failed_height == 0

    slots = [b.x for b in chart.bars]
    assert slots == sorted(slots)
    assert chart.bars[0].x >= LEFT
    assert chart.bars[-1].x + chart.bars[-1].width <= WIDTH
    assert [b.label for b in chart.bars if b.label] == ["00:00", "06:00", "12:00", "18:00"]
    assert busiest.start == "2026-12-02 03:00 UTC"
    assert chart.summary == (
        "Deliveries per hour over the last 24 hours: 8 delivered and 5 not delivered;"
        " the busiest hour, 2026-12-02 03:00 UTC, had 10."
    )


def test_a_chart_without_deliveries_is_flat_and_says_so() -> None:
    chart = build_chart(buckets(*[(0, 0)] * 3))
    assert [t.value for t in chart.ticks] == [0, 1]
    assert all(b.delivered_height == b.failed_height == 0 for b in chart.bars)
    assert chart.summary.endswith("0 delivered and 0 not delivered; none were made.")
    assert build_chart([]).bars == []


def test_the_store_fills_empty_hours_with_zeros() -> None:
    series = activity_series(100.0, 100.0 + 2.5 * 3600, 3600.0, [(2, 1, 2), (0, 3, 0), (9, 9, 9)])
    assert [(b.start, b.delivered, b.failed) for b in series] == [
        (100.0, 3, 0),
        (3700.0, 0, 0),
        (7300.0, 1, 2),
    ]
    assert activity_series(5.0, 5.0, 3600.0, []) == []


def test_the_catalog_page_groups_types_by_category_with_pretty_json() -> None:
    groups = grouped(catalog("shop", app_spec(eventTypes=["invoice.*"]), PortalSettings()))
    assert [(name, [e.event.name for e in entries]) for name, entries in groups] == [
        ("Billing", ["invoice.paid", "invoice.voided"]),
        ("Customers", ["customer.deleted"]),
        ("Other", ["ping"]),
    ]
    paid = groups[0][1][0]
    assert paid.schema is not None
    assert json.loads(paid.schema) == INVOICE
    assert "\n  " in paid.schema
    assert json.loads(paid.example)["type"] == "invoice.paid"
    assert groups[0][1][1].schema is None


def test_the_overview_page_without_the_delivery_service_shows_the_rest() -> None:
    html = render("overview.html", summary=summary("shop", PortalSettings(), []), chart=None).text
    assert html is not None
    assert "delivery service cannot be reached" in html
    assert "<svg" not in html

    chart = build_chart(buckets((1, 2), (0, 0)))
    html = render("overview.html", summary=summary("shop", PortalSettings(), []), chart=chart).text
    assert html is not None
    assert 'role="img"' in html
    assert f'aria-label="{chart.summary}"' in html
    assert html.count('class="bar-failed"') == 1
    assert "<td>1</td><td>2</td>" in html
