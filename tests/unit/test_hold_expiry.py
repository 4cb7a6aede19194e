"""Bounded holds (delivery/hold_expiry.py) on the in-memory SQLite store: what a sweep
expires (each endpoint by its own holdFor, 0 never), that two replicas sweeping the same
store expire each delivery once, how holdFor is read from a spec and its app's
endpointDefaults, and how often a sweep runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from webhook_operator.delivery.hold_expiry import HoldExpiry, sweep_interval
from webhook_operator.delivery.metrics import Metrics
from webhook_operator.delivery.registry import (
    DEFAULT_HOLD_FOR,
    EndpointConfig,
    Registry,
    endpoint_config,
    hold_for_seconds,
)
from webhook_operator.ids import delivery_id, event_id
from webhook_operator.retry_policy import RetryPolicy
from webhook_operator.store.base import DeliveryQuery, DeliveryStatus, NewDelivery, NewEvent
from webhook_operator.store.sqlite import SQLiteStore

NOW = 1_800_000_000.0
HOUR = 3600.0
HELD = DeliveryStatus.HELD
EXPIRED = DeliveryStatus.EXPIRED


def config(name: str, hold_for: float) -> EndpointConfig:
    return EndpointConfig(
        namespace="ns",
        name=name,
        app="app",
        url="http://127.0.0.1:9/hook",
        allow_insecure_http=True,
        events=("*",),
        active=False,
        headers=(),
        retry=RetryPolicy(),
        timeout=5.0,
        rate=None,
        burst=None,
        max_concurrency=10,
        secret_name=f"{name}-signing-secret",
        secret_key="secret",
        generated_secret=True,
        enable_token=None,
        hold_for=hold_for,
    )


def run(scenario: Callable[[SQLiteStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SQLiteStore(":memory:")
        await store.open()
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


async def held(store: SQLiteStore, endpoint: str, at: float) -> str:
    event = NewEvent(event_id(at), "ns", "app", "order.created", "{}", None, at)
    delivery = NewDelivery(delivery_id(at), endpoint, HELD, at)
    await store.create_event(event, [delivery])
    return delivery.id


def expiry(store: SQLiteStore, *configs: EndpointConfig, now: float = NOW) -> HoldExpiry:
    registry = Registry()
    for c in configs:
        registry.endpoints[(c.namespace, c.name)] = c
    return HoldExpiry(store, registry, Metrics(), clock=lambda: now)


async def statuses(store: SQLiteStore, endpoint: str) -> list[DeliveryStatus]:
    rows, _ = await store.list_deliveries(DeliveryQuery("ns", endpoint=endpoint))
    return [r.status for r in rows]  # newest first


def test_a_sweep_expires_each_endpoints_held_deliveries_by_its_own_hold_for() -> None:
    async def scenario(store: SQLiteStore) -> None:
        for endpoint in ("short", "default", "forever", "unknown"):
            await held(store, endpoint, NOW - 5 * HOUR)
            await held(store, endpoint, NOW - 10)
        await held(store, "default", NOW - 73 * HOUR)
        sweeper = expiry(
            store,
            config("short", HOUR),
            config("default", DEFAULT_HOLD_FOR),
            config("forever", 0.0),
        )
        assert await sweeper.sweep() == 2
        assert await statuses(store, "short") == [HELD, EXPIRED]
        assert await statuses(store, "default") == [HELD, HELD, EXPIRED]
        assert await statuses(store, "forever") == [HELD, HELD]
        # Not in this replica's registry (deleted, or not listed yet): left alone.
        assert await statuses(store, "unknown") == [HELD, HELD]
        assert await sweeper.sweep() == 0
        sample = sweeper.metrics.registry.get_sample_value(
            "webhook_deliveries_finished_total",
            {"namespace": "ns", "endpoint": "short", "status": "expired"},
        )
        assert sample == 1.0

    run(scenario)


def test_two_replicas_sweeping_at_once_expire_each_delivery_once() -> None:
    async def scenario(store: SQLiteStore) -> None:
        for n in range(20):
            await held(store, "ep", NOW - 2 * HOUR - n)
        replicas = [expiry(store, config("ep", HOUR)) for _ in range(2)]
        counts = await asyncio.gather(*(r.sweep() for r in replicas))
        assert sum(counts) == 20
        assert set(await statuses(store, "ep")) == {EXPIRED}

    run(scenario)


def test_the_sweep_runs_a_quarter_of_the_shortest_hold_within_bounds() -> None:
    assert sweep_interval([]) == 60.0
    assert sweep_interval([0.0, 0.0]) == 60.0
    assert sweep_interval([DEFAULT_HOLD_FOR]) == 60.0
    assert sweep_interval([DEFAULT_HOLD_FOR, 120.0, 0.0]) == 30.0
    assert sweep_interval([2.0]) == 1.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(None, 72 * HOUR), ("0", 0.0), ("0s", 0.0), ("2s", 2.0), ("1h30m", 5400.0)],
)
def test_hold_for_text(text: str | None, seconds: float) -> None:
    assert hold_for_seconds(text) == seconds


def endpoint(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "ep"},
        "spec": {"appRef": {"name": "app"}, "url": "https://example.test/", "events": ["*"]} | spec,
    }


def app(**defaults: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "app"}, "spec": {"endpointDefaults": defaults}}


def test_hold_for_comes_from_the_endpoint_then_its_apps_defaults() -> None:
    def hold_for(obj: dict[str, Any], app_obj: dict[str, Any] | None) -> float:
        found = endpoint_config(obj, app_obj)
        assert found is not None
        return found.hold_for

    assert hold_for(endpoint(), None) == DEFAULT_HOLD_FOR
    assert hold_for(endpoint(), app(holdFor="24h")) == 24 * HOUR
    assert hold_for(endpoint(holdFor="0"), app(holdFor="24h")) == 0.0
    assert hold_for(endpoint(holdFor="90m"), None) == 5400.0
