"""The overview and event catalog pages in headless Chromium, against the real control
plane, operator, delivery service and portal: after a few deliveries (some failing) the
overview shows the endpoints by health, the recent counts, and a chart of the last 24 h
whose accessible table holds the same numbers; the catalog shows the app's types by
category with a schema and an example payload. A read ticket sees all of it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.harness import Cluster, DeliveryProcess, PortalProcess, Producer, Receiver, eventually
from tests.integration.portal_support import (
    apply_endpoint,
    backend,
    customer,
    make_app,
    ready,
    request_ticket,
)

pytestmark = pytest.mark.integration
EVENTS = 3
PAID_SCHEMA = {
    "type": "object",
    "required": ["invoiceId", "amount"],
    "properties": {
        "invoiceId": {"type": "string", "minLength": 3},
        "amount": {"type": "integer", "minimum": 1},
    },
}
CATALOG = (
    {
        "name": "invoice.paid",
        "category": "Billing",
        "description": "An invoice was paid.",
        "schema": PAID_SCHEMA,
    },
    {"name": "invoice.voided", "category": "Billing", "deprecated": True},
    {"name": "customer.deleted", "category": "Customers", "description": "A customer left."},
)


def test_overview_counts_and_chart_then_the_catalog(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
    page: Page,
    tmp_path: Path,
) -> None:
    receiver.respond("/broken", (500, {}, 0.0))
    make_app(cluster, namespace, portal={"eventTypes": ["invoice.*"]}, event_types=CATALOG)
    apply_endpoint(cluster, namespace, "orders", receiver.url("/orders"))
    # Retried long after the test: its failures stay failures while the test looks.
    apply_endpoint(
        cluster, namespace, "broken", receiver.url("/broken"), retry={"schedule": ["1h"]}
    )
    apply_endpoint(cluster, namespace, "paused", receiver.url("/paused"), active=False)
    for name in ("orders", "broken", "paused"):
        ready(cluster, namespace, name)
    producer = Producer(cluster, namespace, ["shop"])
    for n in range(EVENTS):
        emitted = httpx.post(
            f"{delivery_service.url}/v1/namespaces/{namespace}/apps/shop/events",
            json={"type": "invoice.paid", "data": {"invoiceId": f"in_{n}", "amount": 5}},
            headers=producer.headers,
            timeout=10,
        )
        assert emitted.status_code == 202, emitted.text

    issuer = backend(cluster, namespace, ["shop"])
    answer = request_ticket(portal, issuer, namespace, "shop", scope="read")
    assert answer.status_code == 201, answer.text

    # The endpoints' status reaches the portal's watch through the operator: wait for it
    # through the tenant API, so the page is looked at once, settled.
    def settled() -> dict[str, Any] | None:
        summary: dict[str, Any] = api.get("/summary").json()
        endpoints, deliveries = summary["endpoints"], summary["deliveries"]
        healthy = (endpoints["healthy"], endpoints["failing"], endpoints["disabled"])
        counts = (deliveries["delivered"], deliveries["failed"], deliveries["held"])
        assert healthy == (1, 1, 1), summary
        assert counts == (EVENTS,) * 3, summary
        return summary

    with customer(portal, answer.json()["ticket"]) as api:
        eventually(settled, timeout=45, what="summary shows the deliveries")

    page.goto(answer.json()["portalUrl"])
    page.wait_for_url(re.compile(r"/endpoints$"))
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="Overview").click()
    page.wait_for_url(re.compile(r"/overview$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")

    def count(key: str) -> Any:
        return expect(page.locator(f'[data-count="{key}"] .count'))

    for key, value in {
        "total": 3,
        "healthy": 1,
        "failing": 1,
        "disabled": 1,
        "pending": 0,
        "delivered": EVENTS,
        "failed": EVENTS,
        "held": EVENTS,
        "expired": 0,
    }.items():
        count(key).to_have_text(str(value))
    expect(page.locator('[data-count="total"]')).to_contain_text("of at most 20")
    expect(page.locator('[data-time="success"]')).to_contain_text("UTC")
    expect(page.locator('[data-time="failure"]')).to_contain_text("UTC")

    chart = page.get_by_role("img", name=re.compile("Deliveries per hour"))
    expect(chart).to_have_attribute(
        "aria-label", re.compile(f"{EVENTS} delivered and {EVENTS} not delivered")
    )
    expect(chart.locator("rect.bar-delivered")).to_have_count(1)
    expect(chart.locator("rect.bar-failed")).to_have_count(1)

    page.get_by_text("The numbers, hour by hour").click()
    table = page.get_by_role("table")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(24)
    expect(table.locator("tfoot tr")).to_have_text(re.compile(f"In all\\s*{EVENTS}\\s*{EVENTS}"))
    busy = table.locator("tbody tr").filter(has=page.locator("td", has_text=str(EVENTS)))
    expect(busy).to_have_count(1)
    expect(busy.locator("td")).to_have_text([str(EVENTS), str(EVENTS)])
    page.screenshot(path=tmp_path / "overview.png", full_page=True)

    page.get_by_role("navigation", name="Portal").get_by_role("link", name="Event catalog").click()
    page.wait_for_url(re.compile(r"/catalog$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Event catalog")
    expect(page.get_by_role("heading", level=2)).to_have_text(["Billing", "Customers"])

    paid = page.locator('[data-type="invoice.paid"]')
    expect(paid).to_contain_text("An invoice was paid.")
    expect(paid.locator(".badge-subscribable")).to_be_visible()
    paid.get_by_text("JSON schema of").click()
    expect(paid.locator(".schema pre")).to_be_visible()
    expect(paid.locator(".schema pre")).to_contain_text('"minLength": 3')
    paid.get_by_text("Example payload of").click()
    expect(paid.locator(".example pre")).to_contain_text('"type": "invoice.paid"')
    expect(paid.locator(".example pre")).to_contain_text('"invoiceId": "str')

    voided = page.locator('[data-type="invoice.voided"]')
    expect(voided.locator(".badge-deprecated")).to_be_visible()
    voided.get_by_text("JSON schema of").click()
    expect(voided.locator(".schema")).to_contain_text("No schema")
    gone = page.locator('[data-type="customer.deleted"]')
    expect(gone.locator(".badge-unavailable")).to_have_text("Not offered to endpoints here")
    page.screenshot(path=tmp_path / "catalog.png", full_page=True)
