"""The SQLite store in memory (`SQLiteStore(":memory:")`): the real store, migrations and
all, with no file and no lock, so what uses a store (the dispatcher, the service) can be
unit-tested against it in milliseconds."""

from __future__ import annotations

import asyncio

from webhook_operator.ids import delivery_id, event_id
from webhook_operator.store.base import (
    AttemptResult,
    DeliveryQuery,
    DeliveryStatus,
    NewDelivery,
    NewEvent,
)
from webhook_operator.store.sqlite import SQLiteStore

NOW = 1_800_000_000.0


def test_an_event_goes_round_in_memory() -> None:
    async def scenario() -> None:
        store = SQLiteStore(":memory:")
        await store.open()
        try:
            assert await store.register_owner("me", NOW) == 0
            event = NewEvent(event_id(NOW), "ns", "app", "order.created", "{}", "k", NOW)
            delivery = NewDelivery(delivery_id(NOW), "ep", DeliveryStatus.PENDING, NOW)
            assert await store.create_event(event, [delivery]) == (event.id, 1, False)
            assert await store.create_event(event, [delivery]) == (event.id, 1, True)
            [claimed] = await store.claim(NOW, 10, 30.0, "me")
            result = AttemptResult(
                claimed.delivery_id,
                "me",
                "ns",
                "ep",
                1,
                NOW,
                5.0,
                200,
                None,
                "ok",
                True,
                DeliveryStatus.DELIVERED,
                None,
            )
            await store.finish_attempts([result], NOW + 1)
            [row], _ = await store.list_deliveries(DeliveryQuery("ns"))
            assert (row.id, row.status, row.attempts) == (delivery.id, DeliveryStatus.DELIVERED, 1)
            states, cursor = await store.stats_since(0, NOW + 1)
            assert [s.counts["delivered"] for s in states] == [1]
            assert cursor == states[0].version
        finally:
            await store.close()

    asyncio.run(scenario())
