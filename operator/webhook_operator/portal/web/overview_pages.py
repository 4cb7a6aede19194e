"""The overview and event catalog pages: what a customer looks at before touching an
endpoint. Both read what the tenant API reads (overview.summary, overview.catalog and
overview_api.activity), so the page and the API never tell two stories.

The activity chart is drawn here, on the server, as inline SVG: the page needs no script,
and the same numbers are in a table beside it for screen readers and for reading exact
values. When the delivery service cannot be reached, the page says so in the chart's place
and shows everything else, which comes from the portal's own watch."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from webhook_operator.api import delivery_wire as w
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation
from webhook_operator.portal import overview, overview_api
from webhook_operator.portal.context import Portal
from webhook_operator.portal.web.common import HTML, TAG, pages, render, session

# The chart's drawing area, in SVG units (it scales to the page's width).
WIDTH = 720.0
HEIGHT = 200.0
LEFT = 40.0  # room for the scale's numbers
BOTTOM = 22.0  # room for the hours
TOP = 8.0
GAP = 0.2  # the share of each hour's slot left empty between bars
# Hours are labelled every this many buckets, so 24 labels do not overlap.
LABEL_EVERY = 6
# Answers of the delivery service that mean "not now" rather than a refusal.
UNAVAILABLE = (502, 503)
UNCATEGORIZED = "Other"


# --- the chart (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One hour: a stacked bar, delivered at the bottom, failed on top."""

    start: str  # the hour as the table shows it, such as 2026-12-02 14:00 UTC
    label: str | None  # the hour under the axis (every LABEL_EVERY bars), such as 14:00
    delivered: int
    failed: int
    x: float
    width: float
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float

    @property
    def center(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True)
class Tick:
    value: int
    y: float


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    left: float
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]
    delivered: int
    failed: int
    hours: int
    summary: str  # the chart in one sentence: its aria-label


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … at or above `value`: the scale's top."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # unreachable: 10 * power > value always


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def chart_summary(hours: int, delivered: int, failed: int, busiest: Bar | None) -> str:
    total = (
        f"Deliveries per hour over the last {hours} hours: {delivered} delivered and"
        f" {failed} not delivered"
    )
    if busiest is None:
        return total + "; none were made."
    return f"{total}; the busiest hour, {busiest.start}, had {busiest.delivered + busiest.failed}."


def build_chart(buckets: Sequence[w.ActivityBucket]) -> Chart:
    """Bar geometry for the buckets, oldest on the left: each bar's height is its count
    on a scale from 0 to a round number at or above the busiest hour."""
    top = nice_ceiling(max((b.delivered + b.failed for b in buckets), default=0))
    baseline = HEIGHT - BOTTOM
    plot = baseline - TOP
    slot = (WIDTH - LEFT) / max(len(buckets), 1)
    bar_width = slot * (1 - GAP)
    bars = []
    for i, b in enumerate(buckets):
        delivered_height = plot * b.delivered / top
        failed_height = plot * b.failed / top
        bars.append(
            Bar(
                start=_hour(b.start),
                label=b.start.astimezone(UTC).strftime("%H:%M") if i % LABEL_EVERY == 0 else None,
                delivered=b.delivered,
                failed=b.failed,
                x=round(LEFT + i * slot + (slot - bar_width) / 2, 2),
                width=round(bar_width, 2),
                delivered_y=round(baseline - delivered_height, 2),
                delivered_height=round(delivered_height, 2),
                failed_y=round(baseline - delivered_height - failed_height, 2),
                failed_height=round(failed_height, 2),
            )
        )
    ticks = [Tick(v, round(baseline - plot * v / top, 2)) for v in sorted({0, top // 2, top})]
    delivered = sum(b.delivered for b in buckets)
    failed = sum(b.failed for b in buckets)
    busy = [b for b in bars if b.delivered + b.failed]
    # The first of the busiest hours: max() keeps the first of equals.
    busiest = max(busy, key=lambda b: b.delivered + b.failed) if busy else None
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        baseline=baseline,
        bars=bars,
        ticks=ticks,
        delivered=delivered,
        failed=failed,
        hours=len(buckets),
        summary=chart_summary(len(buckets), delivered, failed, busiest),
    )


# --- the catalog (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    event: overview.CatalogEventType
    schema: str | None  # pretty JSON
    example: str  # pretty JSON


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def grouped(catalog: overview.Catalog) -> list[tuple[str, list[CatalogEntry]]]:
    """The catalog by category, categories sorted and types in the app's order within
    each; types without a category come last, under Other."""
    groups: dict[str, list[CatalogEntry]] = {c: [] for c in catalog.categories}
    for event in catalog.event_types:
        entry = CatalogEntry(
            event,
            pretty(event.schema_) if event.schema_ is not None else None,
            pretty(event.example),
        )
        groups.setdefault(event.category or UNCATEGORIZED, []).append(entry)
    return [(name, entries) for name, entries in groups.items() if entries]


# --- the pages --------------------------------------------------------------------------------


def operations(portal: Portal) -> list[Operation]:
    @pages
    async def overview_page(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        tenant = current.tenant
        endpoints = portal.directory.app_endpoints(tenant.namespace, tenant.app_name)
        summary = overview.summary(tenant.app_name, tenant.portal, endpoints)
        chart: Chart | None = None
        try:
            activity = await overview_api.activity(portal, tenant)
            chart = build_chart(activity.buckets)
        except ApiError as exc:
            if exc.status not in UNAVAILABLE:
                raise
        return render(
            "overview.html",
            session=current,
            active="overview",
            summary=summary,
            chart=chart,
        )

    @pages
    async def catalog_page(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        tenant = current.tenant
        catalog = overview.catalog(tenant.app_name, tenant.spec, tenant.portal)
        return render(
            "catalog.html",
            session=current,
            active="catalog",
            catalog=catalog,
            groups=grouped(catalog),
        )

    return [
        Operation(
            "GET",
            "/overview",
            overview_page,
            "The overview page of the session's app: endpoints by health, recent"
            " deliveries and failures, and a chart of the last 24 hours",
            content_type=HTML,
            errors=(401, 403, 404),
            tag=TAG,
        ),
        Operation(
            "GET",
            "/catalog",
            catalog_page,
            "The event catalog page of the session's app: types by category with their"
            " schemas and example payloads",
            content_type=HTML,
            errors=(401, 403, 404),
            tag=TAG,
        ),
    ]
