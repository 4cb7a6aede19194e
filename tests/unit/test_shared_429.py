"""A receiver's 429 across replicas for an endpoint without a rate limit (issue 17): two
dispatchers on one in-memory SQLite store, as two processes share one PostgreSQL
database. The replica that got the 429 holds the endpoint's sends back at once, the
other from its next refresh of endpoint states; other endpoints go on, and once the
receiver's Retry-After has passed every delivery held back is sent, once, none of them
counted as attempted meanwhile."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from tests.unit.test_endpoint_states import KEY, Replica, config
from webhook_operator.delivery.dispatcher import Dispatcher, DispatcherSettings
from webhook_operator.delivery.sender import SendResult
from webhook_operator.ids import delivery_id, event_id
from webhook_operator.store.base import Claimed, DeliveryStatus, NewDelivery, NewEvent
from webhook_operator.store.sqlite import SQLiteStore

OTHER = ("ns", "other")
RETRY_AFTER = 0.5
SIGNING = {
    "metadata": {"namespace": "ns", "name": "ep-signing-secret", "resourceVersion": "1"},
    "data": {"secret": base64.b64encode(b"whsec_" + base64.b64encode(b"k" * 32)).decode()},
}


class Receiver:
    """Both replicas' sender: the first request to `ep` is answered 429 with a
    Retry-After, everything else 204. Records (endpoint, webhook-id) in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, url: str, _insecure: bool, _body: bytes, headers: Any, *_: Any) -> Any:
        name = url.rsplit("/", 1)[1]
        self.sent.append((name, headers["webhook-id"]))
        if self.sent == [("ep", headers["webhook-id"])]:
            return SendResult(429, None, None, 1.0, str(RETRY_AFTER))
        return SendResult(204, None, None, 1.0)

    def to(self, name: str) -> list[str]:
        return [webhook_id for endpoint, webhook_id in self.sent if endpoint == name]


def run(scenario: Any) -> None:
    async def main() -> None:
        store = SQLiteStore(":memory:")
        await store.open()
        try:
            await scenario(store, Receiver())
        finally:
            await store.close()

    asyncio.run(main())


def replica(store: SQLiteStore, owner: str, receiver: Receiver) -> Dispatcher:
    one = Replica(store, [time.time()])
    one.registry.endpoints[KEY] = replace(config(), url="http://127.0.0.1:9/ep")
    one.registry.endpoints[OTHER] = replace(config(), name="other", url="http://127.0.0.1:9/other")
    one.registry.on_secret("ADDED", SIGNING)
    found = Dispatcher(
        store,
        one.registry,
        receiver,  # type: ignore[arg-type]
        one.metrics,
        DispatcherSettings(owner=owner),
        one.states,
    )
    found._slots = asyncio.Semaphore(100)
    return found


async def add(store: SQLiteStore, *endpoints: str) -> None:
    """One event per endpoint named, due in that order."""
    at = time.time() - 1
    for i, endpoint in enumerate(endpoints):
        when = at + i / 1000
        event = NewEvent(event_id(when), "ns", "app", "t", "{}", None, when)
        await store.create_event(
            event, [NewDelivery(delivery_id(when), endpoint, DeliveryStatus.PENDING, when)]
        )


async def dispatch(one: Dispatcher, count: int, at: float | None = None) -> list[Claimed]:
    """Claims up to `count` deliveries due at `at` (now), dispatches them and lets every
    attempt finish and be recorded; what it claimed."""
    claimed = await one.store.claim(at or time.time(), count, 30.0, one.settings.owner)
    await one._dispatch(claimed)
    await asyncio.gather(*set(one._tasks))
    await one._flush()
    return claimed


def test_a_429_holds_back_every_replica_for_that_endpoint_only() -> None:
    async def scenario(store: SQLiteStore, receiver: Receiver) -> None:
        await add(store, "ep", "other", "other", *["ep"] * 6)
        a, b = replica(store, "a", receiver), replica(store, "b", receiver)
        await dispatch(a, 1)
        assert len(receiver.to("ep")) == 1  # answered 429
        until = a.states.not_before(KEY)
        assert until >= time.time() + RETRY_AFTER - 0.1
        # B learns it from the store with its next refresh, not before.
        assert b.states.not_before(KEY) == 0.0
        await b.states.refresh()
        assert b.states.not_before(KEY) == until
        # B's claims: the other endpoint's are sent, ep's go back; A's, at once too.
        assert len(await dispatch(b, 5)) == 5
        assert len(await dispatch(a, 3)) == 3
        assert len(receiver.to("ep")) == 1
        assert len(receiver.to("other")) == 2
        # Not claimable before the Retry-After has passed.
        assert await store.claim(until - 0.05, 10, 30.0, "b") == []

        await asyncio.sleep(until - time.time() + 0.05)
        again = await dispatch(a, 3, at=time.time() + 3600)
        again += await dispatch(b, 10, at=time.time() + 3600)
        # Six held back, never attempted, and the 429's own retry.
        assert sorted(item.attempts for item in again) == [0] * 6 + [1]
        sent = Counter(receiver.to("ep"))
        first = receiver.to("ep")[0]
        assert sent == Counter({first: 2, **{i: 1 for i in sent if i != first}})
        assert len(sent) == 7
        assert await store.claim(time.time() + 3600, 10, 30.0, "b") == []

    run(scenario)


def test_a_claim_waiting_to_send_when_a_429_comes_goes_back_unattempted() -> None:
    async def scenario(store: SQLiteStore, receiver: Receiver) -> None:
        await add(store, "ep")
        a, b = replica(store, "a", receiver), replica(store, "b", receiver)
        [item] = await store.claim(time.time(), 1, 30.0, "a")
        # Between A's claim and its send, B gets a 429 and A refreshes.
        await b._slow_everyone(b.registry.endpoints[KEY], SendResult(429, None, None, 1.0, "3"))
        await a.states.refresh()
        await a._attempt(item, a.registry.endpoints[KEY], 0.0)
        await a._flush()
        assert receiver.sent == []
        until = a.states.not_before(KEY)
        assert await store.claim(until - 0.05, 1, 30.0, "a") == []
        [back] = await store.claim(until + 0.05, 1, 30.0, "a")
        assert (back.delivery_id, back.attempts) == (item.delivery_id, 0)

    run(scenario)


def test_a_429_noted_locally_lasts_until_its_end_if_the_store_never_shows_it() -> None:
    async def scenario(store: SQLiteStore, receiver: Receiver) -> None:
        clock = [time.time()]
        a = Replica(store, clock)
        a.states.note_slowed(KEY, clock[0] + 3)
        await a.states.refresh()
        assert a.states.not_before(KEY) == clock[0] + 3
        clock[0] += 3
        await a.states.refresh()
        assert a.states.not_before(KEY) == 0.0

    run(scenario)
