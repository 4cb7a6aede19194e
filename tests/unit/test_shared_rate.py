"""The rate limit across replicas (issue 17): two dispatchers on one store, the in-memory
SQLite store shared as two processes share one PostgreSQL database. A rate-limited
endpoint's send slots come from one budget in the store, so what one replica has taken
the other cannot, and a 429 one replica received holds the other back too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from tests.unit.test_endpoint_states import KEY, Replica, config
from webhook_operator.delivery.dispatcher import RATE_HORIZON, Dispatcher, DispatcherSettings
from webhook_operator.delivery.sender import SendResult
from webhook_operator.ids import delivery_id, event_id
from webhook_operator.store.base import DeliveryStatus, NewDelivery, NewEvent
from webhook_operator.store.sqlite import SQLiteStore

RATE = 10.0


class NoSender:
    async def send(self, *args: Any) -> Any:
        raise AssertionError("the test ends before any slot comes")


def run(scenario: Callable[[SQLiteStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SQLiteStore(":memory:")
        await store.open()
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


def dispatcher(store: SQLiteStore, owner: str) -> Dispatcher:
    replica = Replica(store, [time.time()])
    replica.registry.endpoints[KEY] = replace(config(), rate=RATE, burst=1)
    found = Dispatcher(
        store,
        replica.registry,
        NoSender(),  # type: ignore[arg-type]
        replica.metrics,
        DispatcherSettings(owner=owner),
        replica.states,
    )
    found._slots = asyncio.Semaphore(100)
    return found


async def add_events(store: SQLiteStore, count: int) -> None:
    at = time.time() - 1
    for i in range(count):
        event = NewEvent(event_id(at + i / 1000), "ns", "app", "t", "{}", None, at)
        delivery = NewDelivery(delivery_id(at + i / 1000), "ep", DeliveryStatus.PENDING, at)
        await store.create_event(event, [delivery])


async def dispatch(one: Dispatcher, store: SQLiteStore, owner: str, count: int) -> int:
    """Claims `count` due deliveries for `owner` and dispatches them; how many wait in
    memory for their slot (the rest went back to the store)."""
    claimed = await store.claim(time.time(), count, 30.0, owner)
    assert len(claimed) == count
    await one._dispatch(claimed)
    return len(one._waiting)


def test_two_replicas_share_one_endpoint_budget() -> None:
    async def scenario(store: SQLiteStore) -> None:
        await add_events(store, 20)
        a, b = dispatcher(store, "a"), dispatcher(store, "b")
        # A takes the slots of the next RATE_HORIZON: 10 per second, burst 1.
        assert await dispatch(a, store, "a", 10) == 10
        # B finds them taken: at most the slot on the horizon's edge is left.
        assert await dispatch(b, store, "b", 10) <= 1
        total = len(a._waiting) + len(b._waiting)
        assert total <= RATE * RATE_HORIZON + 1
        await a._give_back_waiting()
        await b._give_back_waiting()

    run(scenario)


def test_a_429_seen_by_one_replica_holds_back_the_other() -> None:
    async def scenario(store: SQLiteStore) -> None:
        await add_events(store, 5)
        a, b = dispatcher(store, "a"), dispatcher(store, "b")
        await a._slow_everyone(a.registry.endpoints[KEY], SendResult(429, None, None, 1.0, "3"))
        assert await dispatch(b, store, "b", 5) == 0
        # Deferred until the receiver's Retry-After has passed, not claimable before.
        assert await store.claim(time.time() + 2.5, 10, 30.0, "b") == []
        assert len(await store.claim(time.time() + 5, 10, 30.0, "b")) == 5

    run(scenario)
