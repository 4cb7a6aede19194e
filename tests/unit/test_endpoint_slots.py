"""maxConcurrency across replicas: replicas sharing one store (an in-memory SQLite store
stands for the shared database) never have more attempts in flight to an endpoint than
its limit, all of them, and each gets its turn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import pytest

from webhook_operator.delivery.endpoint_slots import EndpointSlots
from webhook_operator.store.base import SlotGrant, slot_grant
from webhook_operator.store.sqlite import SQLiteStore

KEY = ("ns", "ep")
FAST = {"tick": 0.01, "retry": 0.005, "idle": 0.05}


def test_grants_stay_within_the_limit_and_a_fair_share() -> None:
    assert slot_grant(10, 0, 4, []) == SlotGrant(4, None)
    assert slot_grant(10, 8, 5, []) == SlotGrant(2, None)
    # Another owner holds 6 and wants more: an even share is 5, this one may reach it.
    assert slot_grant(10, 0, 8, [(6, 3)]) == SlotGrant(4, 5)
    # Three owners, a limit of 2: a share rounds up to 1, the limit still caps the sum.
    assert slot_grant(2, 0, 1, [(1, 0), (1, 2)]) == SlotGrant(0, 1)
    # Owners that neither hold nor want slots do not count.
    assert slot_grant(4, 0, 4, [(0, 0)]) == SlotGrant(4, None)
    # Spare slots come on top of those waited for, within the same bounds.
    assert slot_grant(10, 2, 1, [], spare=4) == SlotGrant(5, None)
    assert slot_grant(10, 2, 1, [(3, 0)], spare=4) == SlotGrant(3, 5)


def run(scenario: Callable[[SQLiteStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SQLiteStore(":memory:")
        await store.open()
        try:
            await asyncio.wait_for(scenario(store), 20)
        finally:
            await store.close()

    asyncio.run(main())


async def held_in_store(store: SQLiteStore) -> dict[str, tuple[int, int]]:
    rows = store._conn.execute("SELECT owner, held, wanted FROM endpoint_slots").fetchall()
    return {owner: (held, wanted) for owner, held, wanted in rows}


def test_one_replica_keeps_to_the_limit_and_passes_slots_on() -> None:
    async def scenario(store: SQLiteStore) -> None:
        slots = EndpointSlots(store, "a", **FAST)
        await slots.acquire(KEY, 2)
        await slots.acquire(KEY, 2)
        third = asyncio.create_task(slots.acquire(KEY, 2))
        await asyncio.sleep(0.05)
        assert not third.done(), "a third attempt waits while two are in flight"
        assert await held_in_store(store) == {"a": (2, 1)}
        slots.release(KEY)
        await asyncio.wait_for(third, 1)
        slots.release(KEY)
        slots.release(KEY)
        await slots.close()
        assert await held_in_store(store) == {}

    run(scenario)


def test_replicas_together_never_exceed_the_limit_and_each_gets_a_turn() -> None:
    limit, per_replica = 4, 30
    in_flight, most = 0, 0
    done = {"a": 0, "b": 0, "c": 0}

    async def scenario(store: SQLiteStore) -> None:
        replicas = {name: EndpointSlots(store, name, **FAST) for name in done}
        ticks = [asyncio.create_task(r.run()) for r in replicas.values()]

        async def attempt(name: str) -> None:
            nonlocal in_flight, most
            async with replicas[name].slot(KEY, limit):
                in_flight += 1
                most = max(most, in_flight)
                await asyncio.sleep(0.01)
                in_flight -= 1
            done[name] += 1

        async def worker(name: str) -> None:
            for _ in range(per_replica // 3):
                await attempt(name)

        try:
            # Each replica wants more than the whole limit at once.
            await asyncio.gather(*(worker(name) for name in done for _ in range(3)))
        finally:
            for tick in ticks:
                tick.cancel()
            for r in replicas.values():
                await r.close()

    run(scenario)
    assert most == limit, "the replicas together reach the limit, never more"
    assert done == {"a": per_replica, "b": per_replica, "c": per_replica}


def test_a_busy_replica_gives_slots_to_one_that_waits() -> None:
    async def scenario(store: SQLiteStore) -> None:
        a, b = EndpointSlots(store, "a", **FAST), EndpointSlots(store, "b", **FAST)
        ticks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
        stop = asyncio.Event()

        async def busy() -> None:  # replica A always has more to send
            while not stop.is_set():
                async with a.slot(KEY, 4):
                    await asyncio.sleep(0.005)

        workers = [asyncio.create_task(busy()) for _ in range(8)]
        try:
            await asyncio.sleep(0.1)
            assert (await held_in_store(store))["a"][0] == 4
            await asyncio.wait_for(b.acquire(KEY, 4), 2)  # within a few ticks
            b.release(KEY)
        finally:
            stop.set()
            await asyncio.gather(*workers)
            for tick in ticks:
                tick.cancel()
            await a.close()
            await b.close()

    run(scenario)


def test_replicas_within_their_share_leave_the_store_alone() -> None:
    """Two replicas each sending a few attempts at a time to ten endpoints with room for
    more: once each has its slots, it neither asks for more nor re-records its own per
    endpoint every tick (that cost a third of a replica's CPU fanned out to ten)."""
    endpoints = [("ns", f"ep-{i}") for i in range(10)]
    exchanges = {"a": 0, "b": 0}

    class Counted(SQLiteStore):
        async def take_slots(self, ns: str, ep: str, owner: str, *a: int) -> SlotGrant:
            exchanges[owner] += 1
            return await super().take_slots(ns, ep, owner, *a)

    async def main() -> None:
        store = Counted(":memory:")
        await store.open()
        replicas = {name: EndpointSlots(store, name, **FAST) for name in exchanges}
        ticks = [asyncio.create_task(r.run()) for r in replicas.values()]
        stop = asyncio.Event()

        async def busy(name: str, key: tuple[str, str]) -> None:
            while not stop.is_set():
                async with replicas[name].slot(key, 100):
                    await asyncio.sleep(0.002)

        workers = [
            asyncio.create_task(busy(name, key))
            for name in exchanges
            for key in endpoints
            for _ in range(3)
        ]
        try:
            await asyncio.sleep(0.1)  # each takes its slots
            before = dict(exchanges)
            await asyncio.sleep(0.3)  # thirty ticks
            assert {n: exchanges[n] - before[n] for n in exchanges} == {"a": 0, "b": 0}
        finally:
            stop.set()
            await asyncio.gather(*workers)
            for tick in ticks:
                tick.cancel()
            for r in replicas.values():
                await r.close()
            await store.close()

    asyncio.run(main())


def test_idle_slots_go_back_to_the_store() -> None:
    async def scenario(store: SQLiteStore) -> None:
        slots = EndpointSlots(store, "a", **FAST)
        tick = asyncio.create_task(slots.run())
        try:
            await slots.acquire(KEY, 5)
            slots.release(KEY)
            # It asked for a few to spare, so that the next attempts need not ask.
            assert await held_in_store(store) == {"a": (5, 0)}
            await asyncio.sleep(0.2)
            assert await held_in_store(store) == {}
        finally:
            tick.cancel()
            await slots.close()

    run(scenario)


def test_a_cancelled_wait_leaks_no_slot() -> None:
    async def scenario(store: SQLiteStore) -> None:
        slots = EndpointSlots(store, "a", **FAST)
        await slots.acquire(KEY, 1)
        waiting = asyncio.create_task(slots.acquire(KEY, 1))
        await asyncio.sleep(0.02)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        slots.release(KEY)
        await asyncio.wait_for(slots.acquire(KEY, 1), 1)
        slots.release(KEY)
        await slots.close()

    run(scenario)


class DownStore:
    async def take_slots(self, *args: object) -> SlotGrant:
        raise OSError("connection refused")

    async def slot_contenders(self, owner: str) -> dict[tuple[str, str], int]:
        raise OSError("connection refused")


def test_without_the_store_the_limit_holds_locally(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        slots = EndpointSlots(DownStore(), "a", **FAST)  # type: ignore[arg-type]
        await asyncio.wait_for(slots.acquire(KEY, 2), 1)
        await asyncio.wait_for(slots.acquire(KEY, 2), 1)
        third = asyncio.create_task(slots.acquire(KEY, 2))
        await asyncio.sleep(0.05)
        assert not third.done()
        slots.release(KEY)
        await asyncio.wait_for(third, 1)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert [r.message for r in caplog.records].count(
        "sharing concurrency slots failed, keeping each endpoint's limit locally until the "
        "store answers: connection refused"
    ) == 1
