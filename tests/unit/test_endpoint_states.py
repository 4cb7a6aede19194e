"""The owner of endpoint delivery state (delivery/endpoint_states.py) with two replicas on
one store: the in-memory SQLite store shared by two owners, as two processes share one
PostgreSQL database. What must hold: a disable recorded by one is seen by the other at
its next refresh, both count the same, an `enable` value is acted on once, and nothing
stays held once the endpoint may be delivered to again, whoever held it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from kubernetes_asyncio.client import ApiClient

from webhook_operator.delivery.dispatcher import Dispatcher, DispatcherSettings
from webhook_operator.delivery.endpoint_states import EndpointStates
from webhook_operator.delivery.metrics import Metrics
from webhook_operator.delivery.registry import EndpointConfig, Registry
from webhook_operator.ids import delivery_id, event_id
from webhook_operator.retry_policy import RetryPolicy
from webhook_operator.store.base import (
    AttemptResult,
    DeliveryQuery,
    DeliveryStatus,
    NewDelivery,
    NewEvent,
)
from webhook_operator.store.sqlite import SQLiteStore

NOW = 1_800_000_000.0
KEY = ("ns", "ep")


def config(active: bool = True, enable_token: str | None = None) -> EndpointConfig:
    return EndpointConfig(
        namespace="ns",
        name="ep",
        app="app",
        url="http://127.0.0.1:9/hook",
        allow_insecure_http=True,
        events=("*",),
        active=active,
        headers=(),
        retry=RetryPolicy(),
        timeout=5.0,
        rate=None,
        burst=None,
        max_concurrency=10,
        secret_name="ep-signing-secret",
        secret_key="secret",
        generated_secret=True,
        enable_token=enable_token,
    )


class Replica:
    """One process's owner: its own registry, metrics and clock, the shared store."""

    def __init__(self, store: SQLiteStore, clock: list[float]) -> None:
        self.registry = Registry()
        self.registry.endpoints[KEY] = config()
        self.metrics = Metrics()
        self.wakes = 0
        self.states = EndpointStates(
            store, self.registry, self.metrics, clock=lambda: clock[0], released=self.wake
        )

    def wake(self) -> None:
        self.wakes += 1

    def gauge(self) -> float:
        value = self.metrics.registry.get_sample_value("webhook_endpoints_disabled")
        assert value is not None
        return value


def run(scenario: Callable[[SQLiteStore, list[float]], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SQLiteStore(":memory:")
        await store.open()
        try:
            await scenario(store, [NOW])
        finally:
            await store.close()

    asyncio.run(main())


async def add_event(store: SQLiteStore, status: DeliveryStatus, at: float) -> str:
    event = NewEvent(event_id(at), "ns", "app", "order.created", "{}", None, at)
    delivery = NewDelivery(delivery_id(at), "ep", status, at)
    await store.create_event(event, [delivery])
    return delivery.id


async def statuses(store: SQLiteStore) -> list[DeliveryStatus]:
    found, _ = await store.list_deliveries(DeliveryQuery("ns", limit=100))
    return sorted(row.status for row in found)


async def gone(store: SQLiteStore, owner: str, at: float) -> None:
    """`owner` claims one due delivery and records a 410 for it: the endpoint is disabled
    with the result, as the dispatcher records it."""
    [item] = await store.claim(at, 1, 30.0, owner)
    result = AttemptResult(
        item.delivery_id,
        owner,
        "ns",
        "ep",
        1,
        at,
        3.0,
        410,
        None,
        "",
        False,
        DeliveryStatus.EXHAUSTED,
        None,
        disable_reason="Gone",
    )
    await store.finish_attempts([result], at)


def test_a_disable_recorded_by_one_replica_is_seen_by_the_other() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a, b = Replica(store, clock), Replica(store, clock)
        for replica in (a, b):
            await replica.states.load()
        await add_event(store, DeliveryStatus.PENDING, NOW)
        a.states.note_disabled(KEY, "Gone")
        # A holds at once what it claims next; the store (and so B) knows nothing yet.
        assert a.states.holds(KEY)
        assert not b.states.holds(KEY)
        assert (a.gauge(), b.gauge()) == (0, 0)  # the gauge is the store's count
        await gone(store, "a", NOW)
        await b.states.refresh()
        await a.states.refresh()
        assert b.states.disabled(KEY) == a.states.disabled(KEY)
        disabled = b.states.disabled(KEY)
        assert disabled is not None
        assert disabled.reason == "Gone"
        assert disabled.since == NOW
        assert (a.gauge(), b.gauge()) == (1, 1)
        assert b.states.holds_config(config())
        assert b.states.holds(KEY)

    run(scenario)


def test_paused_and_unknown_endpoints_hold() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a = Replica(store, clock)
        await a.states.load()
        assert not a.states.holds(KEY)
        a.registry.endpoints[KEY] = config(active=False)
        assert a.states.holds(KEY)
        assert a.states.holds_config(config(active=False))
        assert a.states.holds(("ns", "unknown"))
        assert a.gauge() == 0

    run(scenario)


def test_an_enable_value_is_acted_on_once_and_releases_once() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a, b = Replica(store, clock), Replica(store, clock)
        await store.set_disabled("ns", "ep", "Gone", NOW)
        for replica in (a, b):
            await replica.states.load()
        for n in range(3):
            await add_event(store, DeliveryStatus.HELD, NOW + n)
        enabled = config(enable_token="t1")
        for replica in (a, b):
            replica.registry.endpoints[KEY] = enabled
        assert await a.states.enable(enabled)
        assert not await b.states.enable(enabled)  # the store has t1 recorded
        assert await statuses(store) == [DeliveryStatus.PENDING] * 3
        assert a.wakes == 1
        assert not a.states.holds(KEY)
        state = await store.endpoint_state("ns", "ep")
        assert state is not None
        assert state.enable_token == "t1"
        assert state.disabled_reason is None
        # Disabled again later: the old value does nothing, a new one enables.
        await store.set_disabled("ns", "ep", "Gone", NOW + 10)
        await b.states.refresh()
        assert not await b.states.enable(enabled)
        assert b.states.holds(KEY)
        assert await b.states.enable(config(enable_token="t2"))
        # B's enable is seen by A's next refresh; both count none.
        await a.states.refresh()
        assert (a.gauge(), b.gauge()) == (0, 0)

    run(scenario)


def test_an_enable_value_for_an_endpoint_not_disabled_does_nothing() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a = Replica(store, clock)
        await a.states.load()
        assert not await a.states.enable(config(enable_token="t1"))
        assert await store.endpoint_state("ns", "ep") is None

    run(scenario)


def test_what_a_stale_replica_held_after_the_release_is_released_on_refresh() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a, b = Replica(store, clock), Replica(store, clock)
        await store.set_disabled("ns", "ep", "Gone", NOW)
        for replica in (a, b):
            await replica.states.load()
        await add_event(store, DeliveryStatus.HELD, NOW)
        assert await a.states.enable(config(enable_token="t1"))
        # B has not refreshed yet: it claims the released delivery and holds it.
        [item] = await store.claim(NOW + 1, 10, 30.0, "b")
        assert b.states.holds(KEY)
        await store.hold([item.delivery_id], "b")
        await b.states.held([KEY])  # still disabled as B sees it: nothing released
        assert await statuses(store) == [DeliveryStatus.HELD]
        await b.states.refresh()
        assert await statuses(store) == [DeliveryStatus.PENDING]
        assert b.wakes == 1

    run(scenario)


def test_a_hold_after_the_endpoint_became_deliverable_is_undone_at_once() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a = Replica(store, clock)
        await a.states.load()
        await add_event(store, DeliveryStatus.HELD, NOW)  # accepted while it looked paused
        await a.states.held([KEY])  # it is active now
        assert await statuses(store) == [DeliveryStatus.PENDING]

    run(scenario)


def test_a_noted_disable_the_store_never_shows_expires_and_releases() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a = Replica(store, clock)
        await a.states.load()
        a.states.note_disabled(KEY, "Gone")  # its result is never recorded (lease lost)
        await add_event(store, DeliveryStatus.HELD, NOW)
        await a.states.refresh()
        assert a.states.holds(KEY)  # not yet: the result may still be on its way
        clock[0] = NOW + a.states.noted_for + 0.1
        await a.states.refresh()
        assert not a.states.holds(KEY)
        assert await statuses(store) == [DeliveryStatus.PENDING]

    run(scenario)


def test_deleting_an_endpoint_clears_its_disable_for_every_replica() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a, b = Replica(store, clock), Replica(store, clock)
        await store.set_disabled("ns", "ep", "RetriesExhausted", NOW)
        await store.set_disabled("ns", "old", "Gone", NOW)
        for replica in (a, b):
            await replica.states.load()
        assert (a.gauge(), b.gauge()) == (2, 2)
        await a.states.forget_missing(a.registry.endpoints)  # "old" was deleted meanwhile
        await a.states.forget(KEY)
        await b.states.refresh()
        assert (a.gauge(), b.gauge()) == (0, 0)
        assert await store.disabled_endpoints() == []

    run(scenario)


class NoSender:
    async def send(self, *args: Any) -> Any:
        raise AssertionError("nothing may be sent to a disabled endpoint")


def test_the_dispatcher_holds_what_it_claims_for_an_endpoint_another_replica_disabled() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        b = Replica(store, clock)
        await b.states.load()
        await add_event(store, DeliveryStatus.PENDING, NOW)
        await add_event(store, DeliveryStatus.PENDING, NOW + 0.001)
        await store.set_disabled("ns", "ep", "Gone", NOW)  # by replica A
        await b.states.refresh()
        dispatcher = Dispatcher(
            store,
            b.registry,
            NoSender(),  # type: ignore[arg-type]
            b.metrics,
            DispatcherSettings(owner="b"),
            b.states,
        )
        dispatcher._slots = asyncio.Semaphore(10)
        claimed = await store.claim(NOW + 1, 10, 30.0, "b")
        assert len(claimed) == 2
        await dispatcher._dispatch(claimed)
        assert not dispatcher._tasks
        assert await statuses(store) == [DeliveryStatus.HELD] * 2

    run(scenario)


def test_a_claim_disabled_before_its_send_is_held_not_sent() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        b = Replica(store, clock)
        slow = replace(config(), rate=1.0, burst=1)
        b.registry.endpoints[KEY] = slow
        await b.states.load()
        await add_event(store, DeliveryStatus.PENDING, NOW)
        dispatcher = Dispatcher(
            store,
            b.registry,
            NoSender(),  # type: ignore[arg-type]
            b.metrics,
            DispatcherSettings(owner="b"),
            b.states,
        )
        dispatcher._slots = asyncio.Semaphore(10)
        [item] = await store.claim(NOW, 10, 30.0, "b")
        # Disabled by another replica between the claim and the send.
        await store.set_disabled("ns", "ep", "Gone", NOW)
        await b.states.refresh()
        await dispatcher._attempt(item, slow, 0.0)
        await dispatcher._flush()
        assert await statuses(store) == [DeliveryStatus.HELD]

    run(scenario)


def test_a_release_that_fails_is_tried_again_with_the_next_refresh() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        a = Replica(store, clock)
        await a.states.load()
        await add_event(store, DeliveryStatus.HELD, NOW)
        real = store.release_held
        failures = [OSError("the database restarts")]

        async def flaky(*args: Any) -> int:
            if failures:
                raise failures.pop()
            return await real(*args)

        store.release_held = flaky  # type: ignore[method-assign,assignment]
        await a.states.held([KEY])  # does not raise: ingest and the dispatcher go on
        assert await statuses(store) == [DeliveryStatus.HELD]
        await a.states.refresh()
        assert await statuses(store) == [DeliveryStatus.PENDING]

    run(scenario)


# -- the service's configuration changes -------------------------------------------------


async def service_on(store: SQLiteStore) -> Any:
    from webhook_operator.delivery.service import Service, ServiceSettings

    # Never called: the configuration changes under test talk to the store only.
    svc = Service(ServiceSettings(), store, ApiClient())
    svc.registry.endpoints[KEY] = config()
    await svc.states.load()
    return svc


async def close(svc: Any) -> None:
    await svc.sender.close()
    await svc.api.close()


async def settle(svc: Any) -> None:
    while svc._background:
        await asyncio.gather(*svc._background)


def test_a_new_enable_value_is_checked_against_the_store_not_a_stale_copy() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        svc = await service_on(store)
        await store.set_disabled("ns", "ep", "Gone", NOW)  # by another replica, just now
        await add_event(store, DeliveryStatus.HELD, NOW)
        assert not svc.states.holds(KEY)  # this replica has not refreshed yet
        svc.endpoint_changed(config(), config(enable_token="t1"))
        await settle(svc)
        state = await store.endpoint_state("ns", "ep")
        assert state is not None
        assert (state.disabled_reason, state.enable_token) == (None, "t1")
        assert await statuses(store) == [DeliveryStatus.PENDING]
        await close(svc)

    run(scenario)


def test_the_first_listing_acts_on_an_enable_value_only_when_new() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        await store.set_disabled("ns", "ep", None, NOW, enable_token="t1")
        await store.set_disabled("ns", "ep", "RetriesExhausted", NOW + 1)
        svc = await service_on(store)
        svc.endpoint_changed(None, config(enable_token="t1"))  # acted on before the restart
        await settle(svc)
        assert svc.states.holds(KEY)
        svc.endpoint_changed(None, config(enable_token="t2"))  # set while it was down
        await settle(svc)
        assert not svc.states.holds(KEY)
        assert await store.disabled_endpoints() == []
        await close(svc)

    run(scenario)


def test_resuming_releases_and_an_enable_with_resume_does_both() -> None:
    async def scenario(store: SQLiteStore, clock: list[float]) -> None:
        svc = await service_on(store)
        await add_event(store, DeliveryStatus.HELD, NOW)
        svc.endpoint_changed(config(active=False), config())
        await settle(svc)
        assert await statuses(store) == [DeliveryStatus.PENDING]
        # The portal turns Active on and sets a new enable value in one change.
        await store.set_disabled("ns", "ep", "Gone", NOW)
        await svc.states.refresh()
        await add_event(store, DeliveryStatus.HELD, NOW + 1)
        svc.registry.endpoints[KEY] = config(enable_token="p1")
        svc.endpoint_changed(config(active=False), config(enable_token="p1"))
        await settle(svc)
        assert await statuses(store) == [DeliveryStatus.PENDING] * 2
        assert not svc.states.holds(KEY)
        await close(svc)

    run(scenario)
