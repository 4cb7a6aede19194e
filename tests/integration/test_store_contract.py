"""The store contract: every test here runs against both backends (the `store` fixture is
parametrized over SQLite and PostgreSQL), so the service can run on either and see the
same behaviour. A few tests at the end cover what only one backend has: PostgreSQL
replicas claiming and migrating concurrently, and the SQLite migration records.

Times are fixed epoch seconds passed as `now`, never the wall clock, so leases, retry
times and stats windows are exact."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import pg
from webhook_operator.ids import delivery_id, event_id
from webhook_operator.store import migrations
from webhook_operator.store.base import (
    AttemptResult,
    AttemptRow,
    Claimed,
    DeliveryDetail,
    DeliveryQuery,
    DeliveryStatus,
    EndpointState,
    NewDelivery,
    NewEvent,
    OwnerInUse,
    QueueStats,
    SlotGrant,
    Store,
    Sweep,
)
from webhook_operator.store.factory import open_store
from webhook_operator.store.postgres import PostgresStore
from webhook_operator.store.sqlite import SQLiteStore

NOW = 1_800_000_000.0
DAY = 86400.0
NS = "team-a"
OTHER_NS = "team-b"
APP = "shop"
LEASE = 30.0
OWNER = "worker-a"
OTHER_OWNER = "worker-b"
DURATION_MS = 120.0

PENDING = DeliveryStatus.PENDING
FAILED = DeliveryStatus.FAILED
DELIVERED = DeliveryStatus.DELIVERED
EXHAUSTED = DeliveryStatus.EXHAUSTED
HELD = DeliveryStatus.HELD
CANCELLED = DeliveryStatus.CANCELLED
EXPIRED = DeliveryStatus.EXPIRED
HOUR = 3600.0

TRUNCATE = (
    "TRUNCATE events, deliveries, attempts, endpoint_states, lease_owners, endpoint_rates,"
    " endpoint_slots"
)

# -- fixtures ---------------------------------------------------------------------------

Body = Callable[[Store], Coroutine[Any, Any, None]]


def contract(body: Body) -> Callable[[Store, asyncio.Runner], None]:
    """Turns `async def test_x(store)` into a test pytest runs, on the event loop the
    store was opened on (pytest has no async tests of its own)."""

    def test(store: Store, runner: asyncio.Runner) -> None:
        runner.run(body(store))

    test.__name__ = test.__qualname__ = body.__name__
    test.__doc__ = body.__doc__
    return test


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="session")
def pg_contract_dsn(postgres_dsn: str) -> Iterator[str]:
    """One migrated database for the contract tests; each test starts from empty tables."""
    dsn = pg.create_database(postgres_dsn, "store_contract")
    asyncio.run(_open_and_close(PostgresStore(dsn)))
    yield dsn
    pg.drop_database(postgres_dsn, dsn)


@pytest.fixture
def fresh_pg_dsn(postgres_dsn: str) -> Iterator[str]:
    """An empty database, not yet migrated."""
    dsn = pg.create_database(postgres_dsn, "store_fresh")
    yield dsn
    pg.drop_database(postgres_dsn, dsn)


@pytest.fixture(params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, runner: asyncio.Runner
) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SQLiteStore(str(tmp_path / "store.db"))
    else:
        dsn = request.getfixturevalue("pg_contract_dsn")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TRUNCATE)
        opened = PostgresStore(dsn, max_size=4)
    runner.run(opened.open())
    yield opened
    runner.run(opened.close())


async def _open_and_close(store: Store) -> None:
    await store.open()
    await store.close()


# -- helpers ----------------------------------------------------------------------------


async def add(
    store: Store,
    *endpoints: str,
    at: float = NOW,
    due: float | None = None,
    app: str = APP,
    namespace: str = NS,
    key: str | None = None,
    status: DeliveryStatus = PENDING,
    payload: str | None = None,
    event_type: str = "order.created",
) -> tuple[str, list[str]]:
    """One event created at `at` with a delivery per endpoint (default ep-1); returns the
    event id and the delivery ids."""
    evt = NewEvent(
        id=event_id(at),
        namespace=namespace,
        app=app,
        type=event_type,
        payload=payload if payload is not None else f'{{"at": {at}}}',
        idempotency_key=key,
        created_at=at,
    )
    deliveries = [
        NewDelivery(delivery_id(at), endpoint, status, at if due is None else due)
        for endpoint in endpoints or ("ep-1",)
    ]
    await store.create_event(evt, deliveries)
    return evt.id, [d.id for d in deliveries]


async def one(store: Store, *endpoints: str, **kwargs: Any) -> str:
    """Like `add`, for one delivery: its id."""
    _, [only] = await add(store, *endpoints, **kwargs)
    return only


def result(
    item: Claimed,
    status: DeliveryStatus = DELIVERED,
    *,
    started: float = NOW,
    owner: str = OWNER,
    http_status: int | None = None,
    error: str | None = None,
    next_at: float | None = None,
    disable: str | None = None,
) -> AttemptResult:
    """The outcome of attempting `item`: a 200 when DELIVERED, else a 500 (FAILED ones
    retried 60 s after `started` unless `next_at` says otherwise)."""
    success = status is DELIVERED
    code = http_status if http_status is not None else (200 if success else 500)
    return AttemptResult(
        delivery_id=item.delivery_id,
        owner=owner,
        namespace=item.namespace,
        endpoint=item.endpoint,
        attempt=item.attempts + 1,
        started_at=started,
        duration_ms=DURATION_MS,
        http_status=code,
        error=error if error is not None or success else f"HTTP {code}",
        response_snippet=f"answer {item.attempts + 1}",
        success=success,
        status=status,
        next_attempt_at=next_at if next_at is not None or status is not FAILED else started + 60,
        disable_reason=disable,
    )


async def claim(
    store: Store, now: float = NOW, limit: int = 1000, owner: str = OWNER
) -> list[Claimed]:
    return await store.claim(now, limit, LEASE, owner)


async def settle(store: Store, outcomes: dict[str, DeliveryStatus], now: float = NOW) -> None:
    """Claim what is due at `now`, record one attempt (started at `now`) for each delivery
    in `outcomes` with that status, and give the others back untouched."""
    claimed = await claim(store, now)
    assert {c.delivery_id for c in claimed} >= outcomes.keys()
    results = [
        result(c, outcomes[c.delivery_id], started=now)
        for c in claimed
        if c.delivery_id in outcomes
    ]
    await store.finish_attempts(results, now)
    rest = [c.delivery_id for c in claimed if c.delivery_id not in outcomes]
    await store.defer(rest, OWNER, now)


async def detail(store: Store, delivery: str, namespace: str = NS) -> DeliveryDetail:
    found = await store.get_delivery(namespace, delivery)
    assert found is not None, delivery
    return found


async def status_of(store: Store, delivery: str) -> DeliveryStatus:
    return (await detail(store, delivery)).delivery.status


async def state(store: Store, endpoint: str = "ep-1") -> EndpointState:
    found = await store.endpoint_state(NS, endpoint)
    assert found is not None, endpoint
    return found


async def ids_of(store: Store, query: DeliveryQuery) -> list[str]:
    rows, _ = await store.list_deliveries(query)
    return [r.id for r in rows]


def ids(claimed: list[Claimed]) -> list[str]:
    return [c.delivery_id for c in claimed]


# -- create_event -----------------------------------------------------------------------


@contract
async def test_create_event_stores_the_event_and_its_deliveries(store: Store) -> None:
    evt = NewEvent(event_id(NOW), NS, APP, "order.created", '{"n": 1}', None, NOW)
    deliveries = [
        NewDelivery(delivery_id(NOW), "ep-1", PENDING, NOW),
        NewDelivery(delivery_id(NOW), "ep-2", HELD, NOW),
    ]
    assert await store.create_event(evt, deliveries) == (evt.id, 2, False)

    first = await detail(store, deliveries[0].id)
    assert first.payload == '{"n": 1}'
    assert first.attempts == []
    row = first.delivery
    assert (row.event_id, row.namespace, row.app, row.endpoint, row.event_type) == (
        evt.id,
        NS,
        APP,
        "ep-1",
        "order.created",
    )
    assert (row.status, row.attempts, row.created_at, row.next_attempt_at) == (PENDING, 0, NOW, NOW)
    assert (row.last_http_status, row.last_error) == (None, None)
    assert await status_of(store, deliveries[1].id) == HELD


@contract
async def test_create_event_without_deliveries(store: Store) -> None:
    evt = NewEvent(event_id(NOW), NS, APP, "order.created", "{}", None, NOW)
    assert await store.create_event(evt, []) == (evt.id, 0, False)


@contract
async def test_same_idempotency_key_within_the_window_returns_the_first_event(store: Store) -> None:
    first, _ = await add(store, "ep-1", "ep-2", key="order-7")
    second = NewEvent(event_id(NOW + 60), NS, APP, "order.created", "{}", "order-7", NOW + 60)
    extra = NewDelivery(delivery_id(NOW + 60), "ep-1", PENDING, NOW + 60)

    assert await store.create_event(second, [extra], dedupe_window=3600) == (first, 2, True)
    assert await store.get_delivery(NS, extra.id) is None
    assert len(await ids_of(store, DeliveryQuery(NS, app=APP))) == 2


@contract
async def test_same_idempotency_key_after_the_window_is_a_new_event(store: Store) -> None:
    await add(store, key="order-7")

    def submission(at: float) -> NewEvent:
        return NewEvent(event_id(at), NS, APP, "order.created", "{}", "order-7", at)

    later = submission(NOW + 3601)
    assert await store.create_event(later, [], dedupe_window=3600) == (later.id, 0, False)
    # The newer event now owns the key.
    again = submission(NOW + 3700)
    assert await store.create_event(again, [], dedupe_window=3600) == (later.id, 0, True)
    assert len(await ids_of(store, DeliveryQuery(NS, app=APP))) == 1


@contract
async def test_idempotency_keys_do_not_collide_across_apps_or_namespaces(store: Store) -> None:
    await add(store, key="k")
    other_app = NewEvent(event_id(NOW), NS, "billing", "order.created", "{}", "k", NOW)
    other_ns = NewEvent(event_id(NOW), OTHER_NS, APP, "order.created", "{}", "k", NOW)
    assert await store.create_event(other_app, []) == (other_app.id, 0, False)
    assert await store.create_event(other_ns, []) == (other_ns.id, 0, False)


# -- claim ------------------------------------------------------------------------------


@contract
async def test_claim_takes_due_deliveries_by_next_attempt_then_id(store: Store) -> None:
    later = await one(store, at=NOW - 100, due=NOW - 10)
    earlier = await one(store, at=NOW - 90, due=NOW - 20)
    tie_older = await one(store, at=NOW - 80, due=NOW - 5)
    tie_newer = await one(store, at=NOW - 70, due=NOW - 5)
    exactly_now = await one(store, at=NOW - 60, due=NOW)
    await one(store, at=NOW - 50, due=NOW + 1)

    claimed = await claim(store)
    assert ids(claimed) == [earlier, later, tie_older, tie_newer, exactly_now]


@contract
async def test_claim_returns_what_the_attempt_needs(store: Store) -> None:
    evt, [dlv] = await add(store, "ep-9", at=NOW - 5, app="billing", payload='{"x": [1, 2]}')
    [item] = await claim(store)
    assert item == Claimed(
        delivery_id=dlv,
        event_id=evt,
        namespace=NS,
        app="billing",
        endpoint="ep-9",
        event_type="order.created",
        payload='{"x": [1, 2]}',
        attempts=0,
        created_at=NOW - 5,
    )


@contract
async def test_claim_honours_the_limit(store: Store) -> None:
    created = [await one(store, at=NOW - 10 + i) for i in range(5)]
    assert ids(await claim(store, limit=2)) == created[:2]
    assert ids(await claim(store, limit=10)) == created[2:]
    assert await claim(store, limit=10) == []
    assert await claim(store, limit=0) == []


@contract
async def test_a_lease_is_exclusive_until_it_expires(store: Store) -> None:
    dlv = await one(store)
    assert ids(await claim(store, owner=OWNER)) == [dlv]
    assert await claim(store, NOW + LEASE - 1, owner=OTHER_OWNER) == []
    assert await claim(store, NOW + LEASE - 1, owner=OWNER) == []
    # The worker crashed: once the lease has passed, the delivery is claimed again.
    [again] = await claim(store, NOW + LEASE + 1, owner=OTHER_OWNER)
    assert (again.delivery_id, again.attempts) == (dlv, 0)


@contract
async def test_held_and_finished_deliveries_are_never_claimed(store: Store) -> None:
    await one(store, "paused", status=HELD)
    delivered = await one(store, "ep-1")
    exhausted = await one(store, "ep-2")
    cancelled = await one(store, "gone")
    await settle(store, {delivered: DELIVERED, exhausted: EXHAUSTED})
    await store.cancel_endpoint(NS, "gone", NOW)

    assert await claim(store, NOW + 365 * DAY) == []
    assert await status_of(store, cancelled) == CANCELLED


# -- finish_attempts --------------------------------------------------------------------


@contract
async def test_a_successful_attempt_delivers(store: Store) -> None:
    dlv = await one(store)
    [item] = await claim(store)
    done = result(item, DELIVERED)
    await store.finish_attempts([done], NOW + 1)

    found = await detail(store, dlv)
    row = found.delivery
    assert (row.status, row.attempts, row.next_attempt_at) == (DELIVERED, 1, None)
    assert (row.last_http_status, row.last_error, row.updated_at) == (200, None, NOW + 1)
    assert found.attempts == [AttemptRow(1, NOW, DURATION_MS, 200, None, "answer 1", True)]
    # The lease is released with the result, and the same result again changes nothing.
    assert await claim(store, NOW + 2 * LEASE) == []
    await store.finish_attempts([done], NOW + 2)
    assert (await detail(store, dlv)) == found


@contract
async def test_a_failed_attempt_schedules_the_next(store: Store) -> None:
    dlv = await one(store)
    [item] = await claim(store)
    await store.finish_attempts([result(item, FAILED, next_at=NOW + 300, error="timeout")], NOW)

    row = (await detail(store, dlv)).delivery
    assert (row.status, row.attempts, row.next_attempt_at) == (FAILED, 1, NOW + 300)
    assert (row.last_http_status, row.last_error) == (500, "timeout")
    assert await claim(store, NOW + 299) == []
    [retry] = await claim(store, NOW + 300)
    assert (retry.delivery_id, retry.attempts) == (dlv, 1)


@contract
async def test_an_exhausted_delivery_gets_no_more_attempts(store: Store) -> None:
    dlv = await one(store)
    await settle(store, {dlv: FAILED})
    [item] = await claim(store, NOW + 60)
    await store.finish_attempts([result(item, EXHAUSTED, started=NOW + 60)], NOW + 60)

    row = (await detail(store, dlv)).delivery
    assert (row.status, row.attempts, row.next_attempt_at) == (EXHAUSTED, 2, None)
    assert await claim(store, NOW + 365 * DAY) == []


@contract
async def test_a_result_from_a_lost_lease_changes_nothing(store: Store) -> None:
    dlv = await one(store)
    [mine] = await claim(store, owner=OWNER)
    [theirs] = await claim(store, NOW + LEASE + 1, owner=OTHER_OWNER)

    await store.finish_attempts([result(mine, DELIVERED, owner=OWNER)], NOW + LEASE + 2)
    found = await detail(store, dlv)
    assert (found.delivery.status, found.delivery.attempts, found.attempts) == (PENDING, 0, [])
    assert await store.endpoint_state(NS, "ep-1") is None

    await store.finish_attempts([result(theirs, FAILED, owner=OTHER_OWNER)], NOW + LEASE + 3)
    found = await detail(store, dlv)
    assert (found.delivery.status, found.delivery.attempts, len(found.attempts)) == (FAILED, 1, 1)


@contract
async def test_a_batch_naming_a_delivery_twice_records_the_first_result_only(
    store: Store,
) -> None:
    # A late result and a newer one for the same delivery may meet in one flush: the
    # first ends the lease, so the second no longer applies, whatever the database.
    dlv = await one(store)
    other = await one(store, "ep-2")
    by_id = {c.delivery_id: c for c in await claim(store)}
    first = result(by_id[dlv], FAILED, started=NOW)
    again = result(by_id[dlv], DELIVERED, started=NOW + 1)
    await store.finish_attempts([first, result(by_id[other]), again], NOW + 2)
    found = await detail(store, dlv)
    assert (found.delivery.status, found.delivery.attempts) == (FAILED, 1)
    assert [a.success for a in found.attempts] == [False]
    assert (await detail(store, other)).delivery.status == DELIVERED


@contract
async def test_results_keep_the_endpoint_state(store: Store) -> None:
    first, second, third = [await one(store, at=NOW - 3 + i) for i in range(3)]
    by_id = {c.delivery_id: c for c in await claim(store)}

    await store.finish_attempts(
        [
            result(by_id[first], FAILED, started=NOW),
            result(by_id[second], FAILED, started=NOW + 1, http_status=503, error="busy"),
        ],
        NOW + 2,
    )
    failing = await state(store)
    assert failing.consecutive_failures == 2
    assert (failing.last_http_status, failing.last_error) == (503, "busy")
    assert failing.last_delivery_time == pytest.approx(NOW + 1.12)
    assert failing.last_failure_time == pytest.approx(NOW + 1.12)
    assert failing.last_success_time is None
    assert failing.disabled_reason is None
    assert failing.version > 0

    await store.finish_attempts([result(by_id[third], DELIVERED, started=NOW + 5)], NOW + 6)
    healthy = await state(store)
    assert healthy.consecutive_failures == 0
    assert (healthy.last_http_status, healthy.last_error) == (200, None)
    assert healthy.last_delivery_time == pytest.approx(NOW + 5.12)
    assert healthy.last_success_time == pytest.approx(NOW + 5.12)
    assert healthy.last_failure_time == pytest.approx(NOW + 1.12)
    assert healthy.version > failing.version
    assert await store.endpoint_state(NS, "ep-2") is None


@contract
async def test_a_result_with_a_disable_reason_disables_the_endpoint(store: Store) -> None:
    dlv = await one(store)
    [item] = await claim(store)
    gone = result(item, EXHAUSTED, http_status=410, disable="Gone")
    await store.finish_attempts([gone], NOW + 5)

    disabled = await state(store)
    assert (disabled.disabled_reason, disabled.disabled_at) == ("Gone", NOW + 5)
    assert disabled.consecutive_failures == 1
    assert await status_of(store, dlv) == EXHAUSTED
    assert await store.disabled_endpoints() == [disabled]


# -- defer, hold, release, cancel -------------------------------------------------------


@contract
async def test_defer_gives_a_delivery_back_unattempted(store: Store) -> None:
    dlv = await one(store)
    await claim(store)
    await store.defer([dlv], OTHER_OWNER, NOW + 5)  # not the holder: ignored
    assert await claim(store, NOW + 10) == []

    await store.defer([dlv], OWNER, NOW + 60)
    assert await claim(store, NOW + 59) == []
    [item] = await claim(store, NOW + 60)
    assert (item.delivery_id, item.attempts) == (dlv, 0)
    row = (await detail(store, dlv)).delivery
    assert (row.status, row.attempts, row.next_attempt_at) == (PENDING, 0, NOW + 60)


@contract
async def test_held_deliveries_are_released_oldest_first(store: Store) -> None:
    created = [await one(store, "paused", at=NOW - 30 + i) for i in range(3)]
    other = await one(store, "ep-2", at=NOW - 40)
    assert ids(await claim(store)) == [other, *created]
    await store.defer([other], OWNER, NOW + 3600)
    await store.hold(created, OTHER_OWNER)  # not the holder: ignored
    assert await status_of(store, created[0]) == PENDING
    await store.hold(created, OWNER)

    assert [await status_of(store, d) for d in created] == [HELD] * 3
    assert (await detail(store, created[0])).delivery.next_attempt_at is None
    assert await claim(store, NOW + LEASE + 1) == []
    assert await store.release_held(NS, "ep-2", NOW + 100) == 0
    assert await store.release_held(NS, "paused", NOW + 100) == 3
    assert [await status_of(store, d) for d in created] == [PENDING] * 3
    assert ids(await claim(store, NOW + 100)) == created
    assert await store.release_held(NS, "paused", NOW + 101) == 0


@contract
async def test_holding_and_releasing_reports_the_endpoints_counts(store: Store) -> None:
    """An endpoint paused before its first attempt still shows its held deliveries (in the
    CRD status and the portal), and shows them gone once released."""
    _, cursor = await store.stats_since(0, NOW)
    await one(store, "disabled", status=HELD)  # held from the start: a paused endpoint's
    states, cursor = await store.stats_since(cursor, NOW)
    [state] = [s for s in states if s.endpoint == "disabled"]
    assert state.counts["held"] == 1

    held = [await one(store, "paused", at=NOW - 10 + i) for i in range(2)]
    await claim(store)
    await store.hold(held, OWNER)

    states, cursor = await store.stats_since(cursor, NOW)
    [state] = [s for s in states if s.endpoint == "paused"]
    assert (state.counts["held"], state.counts["pending"]) == (2, 0)
    assert state.last_delivery_time is None

    assert await store.release_held(NS, "paused", NOW + 1) == 2
    states, _ = await store.stats_since(cursor, NOW + 1)
    [state] = [s for s in states if s.endpoint == "paused"]
    assert (state.counts["held"], state.counts["pending"]) == (0, 2)


# -- bounded holds ----------------------------------------------------------------------


@contract
async def test_held_deliveries_older_than_hold_for_expire(store: Store) -> None:
    """holdFor counts from a delivery's creation: the ones older expire, once, and stay
    out of the release that resumes the endpoint; other endpoints and open deliveries are
    not touched."""
    old = await one(store, "paused", at=NOW - 3 * HOUR, status=HELD)
    older_still = await one(store, "paused", at=NOW - 5 * HOUR, status=HELD)
    young = await one(store, "paused", at=NOW - HOUR, status=HELD)
    elsewhere = await one(store, "other", at=NOW - 5 * HOUR, status=HELD)
    pending = await one(store, "paused", at=NOW - 5 * HOUR, due=NOW + HOUR)
    assert sorted(await store.held_endpoints()) == [(NS, "other"), (NS, "paused")]

    assert await store.expire_held(NS, "paused", 2 * HOUR, NOW) == 2
    for expired in (old, older_still):
        row = (await detail(store, expired)).delivery
        assert (row.status, row.updated_at, row.next_attempt_at) == (EXPIRED, NOW, None)
    assert [await status_of(store, d) for d in (young, elsewhere, pending)] == [
        HELD,
        HELD,
        PENDING,
    ]
    # Another replica sweeping at the same time, or a second sweep, finds nothing left.
    assert await store.expire_held(NS, "paused", 2 * HOUR, NOW) == 0
    assert await ids_of(store, DeliveryQuery(NS, statuses=(EXPIRED,))) == [old, older_still]

    assert await store.release_held(NS, "paused", NOW + 1) == 1
    assert await status_of(store, young) == PENDING
    assert await status_of(store, old) == EXPIRED
    assert await store.held_endpoints() == [(NS, "other")]


@contract
async def test_a_hold_for_of_zero_holds_forever(store: Store) -> None:
    ancient = await one(store, "paused", at=NOW - 400 * DAY, status=HELD)
    assert await store.expire_held(NS, "paused", 0, NOW) == 0
    assert await store.expire_held(NS, "paused", -1, NOW) == 0
    assert await status_of(store, ancient) == HELD


@contract
async def test_expiry_reports_the_endpoints_counts(store: Store) -> None:
    """Expiry changes the endpoint's counts without an attempt: a new version, so the
    CRD status learns of it; expired deliveries count within the window, like exhausted."""
    await one(store, "paused", at=NOW - 3 * HOUR, status=HELD)
    await one(store, "paused", at=NOW - 10, status=HELD)
    _, cursor = await store.stats_since(0, NOW)
    assert await store.expire_held(NS, "unknown", HOUR, NOW) == 0
    assert await store.stats_since(cursor, NOW) == ([], cursor)

    assert await store.expire_held(NS, "paused", HOUR, NOW) == 1
    states, newer = await store.stats_since(cursor, NOW)
    [state] = states
    assert (state.endpoint, state.counts["expired"], state.counts["held"]) == ("paused", 1, 1)
    assert newer > cursor
    states, _ = await store.stats_since(0, NOW + 2 * DAY)
    assert [s.counts["expired"] for s in states] == [0]  # out of the 24 h window


@contract
async def test_expired_deliveries_are_replayed(store: Store) -> None:
    expired = await one(store, "paused", at=NOW - 3 * HOUR, status=HELD)
    before = await one(store, "paused", at=NOW - 5 * HOUR, status=HELD)
    assert await store.expire_held(NS, "paused", HOUR, NOW) == 2
    # The default replay (failed and exhausted) leaves expired deliveries alone.
    assert await store.replay(NS, "paused", NOW - 4 * HOUR, NOW, (FAILED, EXHAUSTED)) == 0

    assert await store.replay(NS, "paused", NOW - 4 * HOUR, NOW + 1, (EXPIRED,)) == 1
    [copy] = await ids_of(store, DeliveryQuery(NS, endpoint="paused", statuses=(PENDING,)))
    [item] = await claim(store, NOW + 1)
    assert item.delivery_id == copy
    assert item.event_id == (await detail(store, expired)).delivery.event_id
    assert await status_of(store, before) == EXPIRED


@contract
async def test_an_enable_value_is_acted_on_once(store: Store) -> None:
    """Replicas that all see the enable annotation change: one of them enables."""
    assert not await store.enable_once(NS, "ep-1", "t1")  # never disabled
    await store.set_disabled(NS, "ep-1", "Gone", NOW)
    assert await store.enable_once(NS, "ep-1", "t1")
    assert not await store.enable_once(NS, "ep-1", "t1")
    state = await store.endpoint_state(NS, "ep-1")
    assert state is not None
    assert (state.disabled_reason, state.enable_token) == (None, "t1")

    await store.set_disabled(NS, "ep-1", "RetriesExhausted", NOW + 1)
    assert not await store.enable_once(NS, "ep-1", "t1")  # that value was used up
    assert await store.enable_once(NS, "ep-1", "t2")


@contract
async def test_rate_reservations_share_one_budget(store: Store) -> None:
    """Replicas reserve send slots in batches from one row: rate 10, burst 2."""
    grant = await store.reserve_rate(NS, "ep-1", NOW, 10.0, 2.0, 5, 0.25)
    # A burst of two may start in the past; then slots 0.1 s apart up to NOW + 0.25.
    assert grant.count == 4
    assert grant.slot(0) == pytest.approx(NOW - 0.1, abs=1e-6)
    assert grant.next_free == pytest.approx(NOW + 0.3, abs=1e-6)
    # Another replica at the same instant finds the budget used up to the horizon.
    assert (await store.reserve_rate(NS, "ep-1", NOW, 10.0, 2.0, 5, 0.25)).count == 0
    later = await store.reserve_rate(NS, "ep-1", NOW + 1, 10.0, 2.0, 3, 0.0)
    assert (later.count, later.slot(0)) == (1, pytest.approx(NOW + 0.9, abs=1e-6))
    # Endpoints have budgets of their own.
    assert (await store.reserve_rate(NS, "ep-2", NOW, 10.0, 1.0, 3, 0.0)).count == 1


@contract
async def test_purge_forgets_rate_budgets_unused_since(store: Store) -> None:
    assert (await store.reserve_rate(NS, "ep-1", NOW, 10.0, 1.0, 5, 0.25)).count == 3
    assert (await store.reserve_rate(NS, "ep-1", NOW, 10.0, 1.0, 5, 0.25)).count == 0
    assert (await store.reserve_rate(NS, "ep-2", NOW + 100, 10.0, 1.0, 5, 0.25)).count == 3
    await store.purge(NOW + 50)
    # ep-1's budget, unused since before NOW + 50, is gone: a new one starts.
    assert (await store.reserve_rate(NS, "ep-1", NOW, 10.0, 1.0, 5, 0.25)).count == 3
    assert (await store.reserve_rate(NS, "ep-2", NOW + 100, 10.0, 1.0, 5, 0.25)).count == 0


@contract
async def test_a_429_delays_every_reservation(store: Store) -> None:
    await store.rate_not_before(NS, "ep-1", NOW + 5)
    await store.rate_not_before(NS, "ep-1", NOW + 2)  # an earlier time changes nothing
    assert (await store.reserve_rate(NS, "ep-1", NOW, 10.0, 1.0, 3, 1.0)).count == 0
    grant = await store.reserve_rate(NS, "ep-1", NOW + 4.95, 10.0, 1.0, 3, 0.15)
    assert (grant.count, grant.slot(0)) == (2, pytest.approx(NOW + 5, abs=1e-6))


@contract
async def test_slowed_endpoints_are_those_a_429_holds_back(store: Store) -> None:
    """What every replica reads with each refresh, also for endpoints without a rate
    budget (their first 429 makes the row)."""
    await store.rate_not_before(NS, "ep-1", NOW + 5)
    await store.rate_not_before(NS, "ep-2", NOW + 1)
    await store.rate_not_before(NS, "ep-1", NOW + 3)  # an earlier time changes nothing
    assert (await store.reserve_rate(NS, "ep-3", NOW, 10.0, 1.0, 1, 0.0)).count == 1
    assert await store.slowed_endpoints(NOW) == {
        (NS, "ep-1"): pytest.approx(NOW + 5),
        (NS, "ep-2"): pytest.approx(NOW + 1),
    }
    assert await store.slowed_endpoints(NOW + 1) == {(NS, "ep-1"): pytest.approx(NOW + 5)}
    assert await store.slowed_endpoints(NOW + 5) == {}


@contract
async def test_concurrency_slots_are_shared_within_the_limit(store: Store) -> None:
    """Owners take an endpoint's maxConcurrency slots from one record: limit 4."""
    assert await store.take_slots(NS, "ep-1", OWNER, 0, 3, 4) == SlotGrant(3, None)
    # Another owner gets what is left and waits for the rest; the first learns its share.
    assert await store.take_slots(NS, "ep-1", OTHER_OWNER, 0, 3, 4) == SlotGrant(1, 2)
    assert await store.slot_contenders(OWNER) == {(NS, "ep-1"): 1}
    assert await store.slot_contenders(OTHER_OWNER) == {(NS, "ep-1"): 1}
    # Giving back beyond the share; the other takes the freed slot and waits no more.
    assert await store.take_slots(NS, "ep-1", OWNER, 2, 0, 4) == SlotGrant(0, 2)
    assert await store.take_slots(NS, "ep-1", OTHER_OWNER, 1, 1, 4) == SlotGrant(1, 2)
    # Slots beyond those waited for are spare: what is not given is not recorded as wanted.
    assert await store.take_slots(NS, "ep-1", OTHER_OWNER, 2, 0, 4, spare=3) == SlotGrant(0, 2)
    assert await store.slot_contenders(OWNER) == {(NS, "ep-1"): 1}
    # Endpoints have slots of their own; holding and wanting nothing leaves no record.
    assert await store.take_slots(NS, "ep-2", OTHER_OWNER, 0, 5, 4) == SlotGrant(4, None)
    await store.take_slots(NS, "ep-1", OWNER, 0, 0, 4)
    assert await store.take_slots(NS, "ep-1", OTHER_OWNER, 2, 2, 4) == SlotGrant(2, None)
    assert await store.slot_contenders(OWNER) == {(NS, "ep-1"): 1, (NS, "ep-2"): 1}
    assert await store.slot_contenders(OTHER_OWNER) == {}


@contract
async def test_an_owner_leaving_gives_its_slots_back(store: Store) -> None:
    await store.register_owner(OWNER, NOW)
    assert (await store.take_slots(NS, "ep-1", OWNER, 0, 2, 2)).granted == 2
    await store.release_owner(OWNER)
    assert (await store.take_slots(NS, "ep-1", OTHER_OWNER, 0, 2, 2)).granted == 2


@contract
async def test_cancel_endpoint_cancels_its_open_deliveries(store: Store) -> None:
    pending = await one(store, "ep-1", at=NOW - 4)
    failed = await one(store, "ep-1", at=NOW - 3)
    delivered = await one(store, "ep-1", at=NOW - 2)
    held = await one(store, "ep-1", at=NOW - 1, status=HELD)
    elsewhere = await one(store, "ep-2", at=NOW - 1)
    await settle(store, {failed: FAILED, delivered: DELIVERED})

    assert await store.cancel_endpoint(NS, "ep-1", NOW + 1) == 3
    statuses = [await status_of(store, d) for d in (pending, failed, delivered, held, elsewhere)]
    assert statuses == [CANCELLED, CANCELLED, DELIVERED, CANCELLED, PENDING]
    assert ids(await claim(store, NOW + 3600)) == [elsewhere]
    assert await store.cancel_endpoint(NS, "ep-1", NOW + 2) == 0


# -- disabling --------------------------------------------------------------------------


@contract
async def test_set_disabled_and_enable_again(store: Store) -> None:
    for i in range(2):
        dlv = await one(store, at=NOW + i)
        await settle(store, {dlv: FAILED}, now=NOW + i)
    before = await state(store)
    assert before.consecutive_failures == 2

    await store.set_disabled(NS, "ep-1", "RetriesExhausted", NOW + 10)
    disabled = await state(store)
    assert (disabled.disabled_reason, disabled.disabled_at) == ("RetriesExhausted", NOW + 10)
    assert disabled.version > before.version
    assert await store.disabled_endpoints() == [disabled]

    await store.set_disabled(NS, "ep-1", None, NOW + 20, enable_token="token-1")
    enabled = await state(store)
    assert (enabled.disabled_reason, enabled.disabled_at) == (None, None)
    assert (enabled.consecutive_failures, enabled.enable_token) == (0, "token-1")
    assert enabled.last_failure_time == before.last_failure_time
    assert enabled.version > disabled.version
    assert await store.disabled_endpoints() == []

    # Enabling without a new token keeps the one last acted on.
    await store.set_disabled(NS, "ep-1", "Gone", NOW + 30)
    await store.set_disabled(NS, "ep-1", None, NOW + 40)
    assert (await state(store)).enable_token == "token-1"


@contract
async def test_disabling_an_endpoint_without_deliveries(store: Store) -> None:
    await store.set_disabled(NS, "quiet", "Gone", NOW)
    await store.set_disabled(OTHER_NS, "quiet", "RetriesExhausted", NOW + 1)
    listed = await store.disabled_endpoints()
    assert [(s.namespace, s.endpoint, s.disabled_reason) for s in listed] == [
        (NS, "quiet", "Gone"),
        (OTHER_NS, "quiet", "RetriesExhausted"),
    ]
    assert listed[0].last_delivery_time is None
    assert listed[0].consecutive_failures == 0


# -- list_deliveries --------------------------------------------------------------------


@contract
async def test_list_deliveries_by_app_and_by_endpoint_newest_first(store: Store) -> None:
    shop_1 = [await one(store, "ep-1", at=NOW + i) for i in range(3)]
    shop_2 = [await one(store, "ep-2", at=NOW + 10 + i) for i in range(2)]
    billing = [await one(store, "ep-3", app="billing", at=NOW + 20)]
    await one(store, "ep-1", namespace=OTHER_NS, at=NOW + 30)

    newest_first = list(reversed(shop_1 + shop_2))
    assert await ids_of(store, DeliveryQuery(NS, app=APP)) == newest_first
    assert await ids_of(store, DeliveryQuery(NS, endpoint="ep-1")) == shop_1[::-1]
    assert await ids_of(store, DeliveryQuery(NS, app=APP, endpoint="ep-2")) == shop_2[::-1]
    assert await ids_of(store, DeliveryQuery(NS, app="billing", endpoint="ep-1")) == []
    assert await ids_of(store, DeliveryQuery(NS)) == billing + newest_first
    assert len(await ids_of(store, DeliveryQuery(OTHER_NS))) == 1

    rows, cursor = await store.list_deliveries(DeliveryQuery(NS, endpoint="ep-3"))
    assert cursor is None
    assert [(r.app, r.endpoint, r.status, r.attempts, r.created_at) for r in rows] == [
        ("billing", "ep-3", PENDING, 0, NOW + 20)
    ]


@contract
async def test_list_deliveries_by_status(store: Store) -> None:
    pending, failed, delivered, exhausted = [await one(store, at=NOW - 4 + i) for i in range(4)]
    await settle(store, {failed: FAILED, delivered: DELIVERED, exhausted: EXHAUSTED})

    def query(*statuses: DeliveryStatus) -> DeliveryQuery:
        return DeliveryQuery(NS, app=APP, statuses=statuses)

    assert await ids_of(store, query(FAILED)) == [failed]
    assert await ids_of(store, query(DELIVERED, EXHAUSTED)) == [exhausted, delivered]
    assert await ids_of(store, query(PENDING, FAILED)) == [failed, pending]
    assert await ids_of(store, query(HELD)) == []
    [row] = (await store.list_deliveries(query(FAILED)))[0]
    assert (row.attempts, row.last_http_status, row.last_error, row.next_attempt_at) == (
        1,
        500,
        "HTTP 500",
        NOW + 60,
    )


@contract
async def test_list_deliveries_pages_by_cursor(store: Store) -> None:
    created = [await one(store, "ep-1", at=NOW + i) for i in range(25)]
    await one(store, "ep-2", at=NOW + 12)  # interleaved, filtered out
    for limit, sizes in ((10, [10, 10, 5]), (5, [5, 5, 5, 5, 5]), (25, [25])):
        seen: list[str] = []
        cursor: str | None = None
        pages = []
        while True:
            query = DeliveryQuery(NS, endpoint="ep-1", cursor=cursor, limit=limit)
            rows, cursor = await store.list_deliveries(query)
            pages.append(len(rows))
            seen += [r.id for r in rows]
            if cursor is None:
                break
            assert cursor == rows[-1].id
            assert len(pages) <= 10
        assert pages == sizes
        assert seen == created[::-1]


@contract
async def test_list_deliveries_by_event_type(store: Store) -> None:
    paid = await one(store, "ep-1", at=NOW, event_type="invoice.paid")
    created = await one(store, "ep-1", at=NOW + 1, event_type="invoice.created")
    other = await one(store, "ep-2", at=NOW + 2, event_type="invoice.paid")
    prefixed = await one(store, "ep-1", at=NOW + 3, event_type="invoice.paid.late")
    await settle(store, {paid: FAILED})

    def query(*types: str, **kwargs: Any) -> DeliveryQuery:
        return DeliveryQuery(NS, event_types=types, **kwargs)

    # Exact types only: neither a prefix nor a longer type matches.
    assert await ids_of(store, query("invoice.paid")) == [other, paid]
    assert await ids_of(store, query("invoice.paid", "invoice.created")) == [other, created, paid]
    assert await ids_of(store, query("invoice")) == []
    assert await ids_of(store, query("invoice.paid", endpoint="ep-1")) == [paid]
    assert await ids_of(store, query("invoice.paid", app=APP, statuses=(FAILED,))) == [paid]
    assert await ids_of(store, query("invoice.paid", statuses=(PENDING,))) == [other]
    assert await ids_of(store, query("invoice.paid.late", app="billing")) == []
    assert await ids_of(store, query()) == [prefixed, other, created, paid]

    rows, cursor = await store.list_deliveries(query("invoice.paid", limit=1))
    assert ([r.id for r in rows], cursor) == ([other], other)
    rows, cursor = await store.list_deliveries(query("invoice.paid", cursor=cursor, limit=1))
    assert ([r.id for r in rows], cursor) == ([paid], None)


# -- get_delivery, resend, replay -------------------------------------------------------


@contract
async def test_get_delivery_has_the_attempts_in_order_and_the_payload(store: Store) -> None:
    payload = '{"note":  "spät ☃",\n "n": [1, 2.50]}'
    dlv = await one(store, payload=payload)
    [item] = await claim(store)
    await store.finish_attempts([result(item, FAILED, next_at=NOW + 10)], NOW)
    [item] = await claim(store, NOW + 10)
    timeout = result(item, FAILED, started=NOW + 10, next_at=NOW + 20, error="timed out")
    await store.finish_attempts([timeout], NOW + 11)
    [item] = await claim(store, NOW + 20)
    await store.finish_attempts([result(item, DELIVERED, started=NOW + 20)], NOW + 21)

    found = await detail(store, dlv)
    assert found.payload == payload
    assert found.attempts == [
        AttemptRow(1, NOW, DURATION_MS, 500, "HTTP 500", "answer 1", False),
        AttemptRow(2, NOW + 10, DURATION_MS, 500, "timed out", "answer 2", False),
        AttemptRow(3, NOW + 20, DURATION_MS, 200, None, "answer 3", True),
    ]
    assert (found.delivery.status, found.delivery.attempts) == (DELIVERED, 3)
    assert await store.get_delivery(OTHER_NS, dlv) is None
    assert await store.get_delivery(NS, delivery_id(NOW)) is None


@contract
async def test_resend_makes_a_new_pending_delivery(store: Store) -> None:
    evt, [dlv] = await add(store, "ep-1", at=NOW - 100)
    await settle(store, {dlv: DELIVERED}, now=NOW - 90)
    copy_id = delivery_id(NOW)

    assert await store.resend(NS, dlv, NOW, copy_id) == copy_id
    copy = (await detail(store, copy_id)).delivery
    assert (copy.event_id, copy.endpoint, copy.app, copy.status) == (evt, "ep-1", APP, PENDING)
    assert (copy.attempts, copy.created_at, copy.next_attempt_at) == (0, NOW, NOW)
    assert await status_of(store, dlv) == DELIVERED
    [item] = await claim(store)
    assert (item.delivery_id, item.event_id, item.created_at) == (copy_id, evt, NOW - 100)
    assert item.payload == f'{{"at": {NOW - 100}}}'

    assert await store.resend(NS, delivery_id(NOW), NOW, delivery_id(NOW)) is None
    assert await store.resend(OTHER_NS, dlv, NOW, delivery_id(NOW)) is None


@contract
async def test_replay_copies_matching_deliveries_since_a_time(store: Store) -> None:
    t1, t2, t3 = NOW - 300, NOW - 200, NOW - 100
    exhausted_1 = await one(store, "ep-1", at=t1)
    exhausted_2 = await one(store, "ep-1", at=t2)
    delivered = await one(store, "ep-1", at=t2 + 1)
    failed = await one(store, "ep-1", at=t3)
    elsewhere = await one(store, "ep-2", at=t3)
    await settle(
        store,
        {
            exhausted_1: EXHAUSTED,
            exhausted_2: EXHAUSTED,
            delivered: DELIVERED,
            failed: FAILED,
            elsewhere: EXHAUSTED,
        },
        now=NOW - 50,
    )

    assert await store.replay(NS, "ep-1", t2, NOW, (EXHAUSTED,)) == 1
    [copy] = await ids_of(store, DeliveryQuery(NS, endpoint="ep-1", statuses=(PENDING,)))
    original = (await detail(store, exhausted_2)).delivery
    replayed = (await detail(store, copy)).delivery
    assert (replayed.event_id, replayed.status, replayed.created_at) == (
        original.event_id,
        PENDING,
        NOW,
    )

    new_ids = sorted(delivery_id(NOW + 10) for _ in range(4))
    count = await store.replay(NS, "ep-1", t1, NOW + 10, (EXHAUSTED, DELIVERED), new_ids)
    assert count == 3
    sources = [exhausted_1, exhausted_2, delivered]
    for new, source in zip(new_ids, sources, strict=False):
        copied = (await detail(store, new)).delivery
        assert copied.event_id == (await detail(store, source)).delivery.event_id
        assert (copied.status, copied.created_at) == (PENDING, NOW + 10)
    assert await store.get_delivery(NS, new_ids[3]) is None

    assert await store.replay(NS, "ep-1", t1, NOW, ()) == 0
    assert await store.replay(NS, "ep-1", NOW + 11, NOW + 20, (EXHAUSTED, PENDING)) == 0
    with pytest.raises(ValueError, match="new ids"):
        await store.replay(NS, "ep-1", t1, NOW + 30, (EXHAUSTED,), [delivery_id(NOW)])


@contract
async def test_replay_until_is_an_exclusive_upper_bound(store: Store) -> None:
    t1, t2, t3 = NOW - 300, NOW - 200, NOW - 100
    first = await one(store, "ep-1", at=t1)
    second = await one(store, "ep-1", at=t2)
    third = await one(store, "ep-1", at=t3)
    await settle(store, {first: EXHAUSTED, second: EXHAUSTED, third: EXHAUSTED}, now=NOW - 50)

    def replayed(rows: list[str]) -> set[str]:
        return set(rows) - {first, second, third}

    async def event_of(delivery: str) -> str:
        return (await detail(store, delivery)).delivery.event_id

    # [t1, t3): the one created exactly at `until` stays out.
    assert await store.replay(NS, "ep-1", t1, NOW, (EXHAUSTED,), until=t3) == 2
    copies = replayed(await ids_of(store, DeliveryQuery(NS, endpoint="ep-1")))
    assert {await event_of(c) for c in copies} == {await event_of(first), await event_of(second)}

    assert await store.replay(NS, "ep-1", t2, NOW + 1, (EXHAUSTED,), until=t2 + 1) == 1
    assert await store.replay(NS, "ep-1", t1, NOW + 2, (EXHAUSTED,), until=t1) == 0
    # Copies are created at `now`, after `until`, so they are never replayed again.
    assert await store.replay(NS, "ep-1", t1, NOW + 3, (EXHAUSTED, PENDING), until=t3 + 1) == 3
    assert await store.replay(NS, "ep-1", t1, NOW + 4, (EXHAUSTED,), until=None) == 3


# -- stats ------------------------------------------------------------------------------


@contract
async def test_stats_since_returns_only_changed_endpoints(store: Store) -> None:
    assert await store.stats_since(0, NOW) == ([], 0)

    first = await one(store, "ep-1")
    await settle(store, {first: DELIVERED})
    states, cursor = await store.stats_since(0, NOW)
    assert [s.endpoint for s in states] == ["ep-1"]
    assert cursor == states[0].version > 0
    assert await store.stats_since(cursor, NOW) == ([], cursor)

    second = await one(store, "ep-2", at=NOW + 1)
    await settle(store, {second: FAILED}, now=NOW + 1)
    await store.set_disabled(NS, "ep-3", "Gone", NOW + 2)
    states, newer = await store.stats_since(cursor, NOW + 2)
    assert [s.endpoint for s in states] == ["ep-2", "ep-3"]
    assert newer == states[-1].version > cursor

    await store.set_disabled(NS, "ep-1", "Gone", NOW + 3)
    states, newest = await store.stats_since(newer, NOW + 3)
    assert [(s.endpoint, s.disabled_reason) for s in states] == [("ep-1", "Gone")]
    assert newest > newer


@contract
async def test_stats_counts_deliveries_in_the_window_and_open_ones_now(store: Store) -> None:
    old_delivered = await one(store, at=NOW - 2 * DAY - 10)
    await settle(store, {old_delivered: DELIVERED}, now=NOW - 2 * DAY)
    old_failure = await one(store, at=NOW - 2 * DAY)
    await settle(store, {old_failure: FAILED}, now=NOW - 2 * DAY + 1)  # stays FAILED
    exhausted = await one(store, at=NOW - 200)
    await settle(store, {exhausted: FAILED}, now=NOW - 100)
    await settle(store, {exhausted: EXHAUSTED}, now=NOW - 40)
    delivered = await one(store, at=NOW - 20)
    await settle(store, {delivered: DELIVERED}, now=NOW - 10)
    await one(store, at=NOW, due=NOW + 3600)
    await one(store, at=NOW, status=HELD)
    unrelated = await one(store, "ep-2", at=NOW - 5)
    await settle(store, {unrelated: DELIVERED}, now=NOW - 5)

    states, _ = await store.stats_since(0, NOW)
    counts = {s.endpoint: s.counts for s in states}
    assert counts["ep-1"] == {
        "delivered": 1,
        "failed": 2,
        "exhausted": 1,
        "pending": 2,
        "held": 1,
        "expired": 0,
    }
    assert counts["ep-2"] == {
        "delivered": 1,
        "failed": 0,
        "exhausted": 0,
        "pending": 0,
        "held": 0,
        "expired": 0,
    }
    states, _ = await store.stats_since(0, NOW, window=3 * DAY)
    [wide] = [s.counts for s in states if s.endpoint == "ep-1"]
    assert wide == {
        "delivered": 2,
        "failed": 3,
        "exhausted": 1,
        "pending": 2,
        "held": 1,
        "expired": 0,
    }


@contract
async def test_activity_counts_an_apps_deliveries_per_hour_of_creation(store: Store) -> None:
    hour = 3600.0
    since = NOW - 3 * hour
    # Before the window: not counted whatever became of it.
    old = await one(store, at=since - 1)
    # Hour 0: one delivered on its first attempt, one delivered on a retry.
    first = await one(store, at=since)
    retried = await one(store, at=since + 10)
    await settle(store, {first: DELIVERED, retried: FAILED, old: DELIVERED}, now=since + 20)
    await settle(store, {retried: DELIVERED}, now=since + 80)
    # Hour 2: one failing (retried later), one exhausted, one pending, one held.
    failing = await one(store, at=since + 2 * hour + 5)
    exhausted = await one(store, at=since + 2 * hour + 6)
    await settle(store, {failing: FAILED, exhausted: EXHAUSTED}, now=since + 2 * hour + 7)
    await one(store, at=since + 2 * hour + 8, due=NOW + hour)
    await one(store, at=since + 2 * hour + 9, status=HELD)
    # Other apps and namespaces, and a delivery at `now` itself, are not the app's window.
    await one(store, at=since + 10, app="other")
    await one(store, at=since + 10, namespace=OTHER_NS)
    await one(store, at=NOW)

    buckets = await store.activity(NS, APP, since, NOW, bucket=hour)
    assert [(b.start, b.delivered, b.failed) for b in buckets] == [
        (since, 2, 0),
        (since + hour, 0, 0),
        (since + 2 * hour, 0, 2),
    ]
    # A partial last bucket is still a bucket; an empty window has none.
    partial = await store.activity(NS, APP, since, since + 2 * hour + 60, bucket=hour)
    assert [(b.delivered, b.failed) for b in partial] == [(2, 0), (0, 0), (0, 2)]
    assert await store.activity(NS, APP, NOW, NOW) == []
    assert [b.failed for b in await store.activity(NS, "nobody", since, NOW)] == [0, 0, 0]


def test_sqlite_activity_reads_the_apps_delivery_index(tmp_path: Path) -> None:
    """The window is narrowed by the (namespace, app, id) index, not a table scan."""
    from webhook_operator.store.rows import activity_params
    from webhook_operator.store.sqlite import QUERIES

    store = SQLiteStore(str(tmp_path / "plan.db"))
    asyncio.run(store.open())
    try:
        conn = store._conn
        params = activity_params(NS, APP, NOW - DAY, NOW, 3600.0)
        plan = " ".join(
            str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + QUERIES.activity, params)
        )
        assert "deliveries_app" in plan, plan
        assert "id>?" in plan, plan
    finally:
        asyncio.run(store.close())


@contract
async def test_queue_stats(store: Store) -> None:
    assert await store.queue_stats(NOW) == QueueStats(
        due=0, oldest_due_age=0.0, scheduled=0, held=0
    )

    leased = await one(store, at=NOW - 50, due=NOW - 40)
    assert ids(await claim(store)) == [leased]
    await one(store, at=NOW - 50, due=NOW - 30)
    await one(store, at=NOW - 50, due=NOW - 5)
    await one(store, at=NOW - 50, due=NOW + 60)
    await one(store, at=NOW - 50, status=HELD)
    finished = await one(store, "ep-2", at=NOW - 50, due=NOW - 100)
    await settle(store, {finished: DELIVERED}, now=NOW - 100)

    assert await store.queue_stats(NOW) == QueueStats(
        due=2, oldest_due_age=30.0, scheduled=4, held=1
    )
    # Once its lease has passed, the leased delivery is due again.
    later = await store.queue_stats(NOW + LEASE + 1)
    assert later == QueueStats(due=3, oldest_due_age=LEASE + 41, scheduled=4, held=1)


# -- purge ------------------------------------------------------------------------------


@contract
async def test_purge_deletes_old_events_whose_deliveries_are_finished(store: Store) -> None:
    old = NOW - 10 * DAY
    _, [done_1, done_2] = await add(store, "ep-1", "ep-2", at=old)
    _, [open_done, open_pending] = await add(store, "ep-1", "ep-2", at=old + 1)
    _, [held] = await add(store, "ep-1", at=old + 2, status=HELD)
    empty = NewEvent(event_id(old), NS, APP, "order.created", "{}", None, old + 3)
    await store.create_event(empty, [])
    _, [expired] = await add(store, "paused", at=old + 4, status=HELD)
    assert await store.expire_held(NS, "paused", DAY, NOW - 30) == 1
    _, [recent] = await add(store, "ep-1", at=NOW - 60)
    await settle(
        store,
        {done_1: DELIVERED, done_2: EXHAUSTED, open_done: DELIVERED, recent: DELIVERED},
        now=NOW - 30,
    )

    assert await store.purge(NOW - DAY) == 3
    assert await store.get_delivery(NS, done_1) is None
    assert await store.get_delivery(NS, done_2) is None
    assert await store.get_delivery(NS, expired) is None
    for kept in (open_done, open_pending, held, recent):
        assert await store.get_delivery(NS, kept) is not None
    assert (await detail(store, recent)).attempts != []
    assert await store.purge(NOW - DAY) == 0


# -- schema -----------------------------------------------------------------------------


@contract
async def test_schema_version_and_opening_again(store: Store) -> None:
    dialect = migrations.SQLITE if isinstance(store, SQLiteStore) else migrations.POSTGRES
    latest = migrations.latest_version(dialect)
    assert latest >= 1
    assert await store.schema_version() == latest
    dlv = await one(store)

    await store.close()
    await store.open()
    assert await store.schema_version() == latest
    assert await status_of(store, dlv) == PENDING


def test_sqlite_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    for _ in range(2):
        asyncio.run(_open_and_close(SQLiteStore(str(path))))
    with closing(sqlite3.connect(path)) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert [v for (v,) in recorded] == [m.version for m in migrations.load(migrations.SQLITE)]
    assert journal == "wal"


def test_postgres_replicas_starting_together_migrate_once(fresh_pg_dsn: str) -> None:
    async def start_two() -> list[int]:
        replicas = [PostgresStore(fresh_pg_dsn), PostgresStore(fresh_pg_dsn)]
        await asyncio.gather(*(r.open() for r in replicas))
        try:
            return [await r.schema_version() for r in replicas]
        finally:
            await asyncio.gather(*(r.close() for r in replicas))

    latest = migrations.latest_version(migrations.POSTGRES)
    assert asyncio.run(start_two()) == [latest, latest]
    with psycopg.connect(fresh_pg_dsn) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in recorded] == [m.version for m in migrations.load(migrations.POSTGRES)]


# -- PostgreSQL replicas ----------------------------------------------------------------

CONCURRENT_DELIVERIES = 2000
CLAIM_BATCH = 7
WORKERS_PER_REPLICA = 3


def test_postgres_replicas_never_claim_the_same_delivery(fresh_pg_dsn: str) -> None:
    """Two replicas (separate pools), three claim loops each, drain 2,000 due deliveries
    in small batches: each delivery is handed out exactly once."""

    async def drain(replica: Store, claimed: list[str]) -> None:
        for _ in range(CONCURRENT_DELIVERIES):  # bounded: each round takes at least one
            batch = await replica.claim(NOW, CLAIM_BATCH, 300.0, f"replica-{id(replica)}")
            assert len(batch) <= CLAIM_BATCH
            if not batch:
                return
            claimed.extend(ids(batch))

    async def scenario() -> tuple[list[str], list[str], set[str]]:
        replicas = [PostgresStore(fresh_pg_dsn, max_size=WORKERS_PER_REPLICA) for _ in range(2)]
        for replica in replicas:
            await replica.open()
        try:
            expected: set[str] = set()
            for batch in range(CONCURRENT_DELIVERIES // 100):
                endpoints = [f"ep-{i}" for i in range(100)]
                _, created = await add(replicas[0], *endpoints, at=NOW - 1000 + batch)
                expected.update(created)
            got: tuple[list[str], list[str]] = ([], [])
            loops = [
                drain(replica, got[n])
                for n, replica in enumerate(replicas)
                for _ in range(WORKERS_PER_REPLICA)
            ]
            await asyncio.wait_for(asyncio.gather(*loops), timeout=60)
            assert await replicas[1].claim(NOW, 10, 300.0, "late") == []
            return got[0], got[1], expected
        finally:
            for replica in replicas:
                await replica.close()

    started = time.monotonic()
    first, second, expected = asyncio.run(scenario())
    everything = first + second
    assert len(everything) == len(set(everything)), "a delivery was claimed twice"
    assert set(everything) == expected
    assert first, "both replicas should have claimed some"
    assert second, "both replicas should have claimed some"
    assert time.monotonic() - started < 60


def test_postgres_replicas_accept_an_idempotency_key_once(fresh_pg_dsn: str) -> None:
    async def scenario() -> list[tuple[str, int, bool]]:
        replicas = [PostgresStore(fresh_pg_dsn) for _ in range(2)]
        for replica in replicas:
            await replica.open()
        try:
            submissions = []
            for n in range(20):
                evt = NewEvent(event_id(NOW), NS, APP, "order.created", "{}", "same-key", NOW)
                dlv = NewDelivery(delivery_id(NOW), "ep-1", PENDING, NOW)
                submissions.append(replicas[n % 2].create_event(evt, [dlv]))
            return list(await asyncio.gather(*submissions))
        finally:
            for replica in replicas:
                await replica.close()

    answers = asyncio.run(scenario())
    assert sum(1 for _, _, duplicate in answers if not duplicate) == 1
    assert len({event for event, _, _ in answers}) == 1
    assert {count for _, count, _ in answers} == {1}


def test_postgres_replicas_batches_with_keys_in_common_never_deadlock(fresh_pg_dsn: str) -> None:
    # Each replica's batches name the same keys in opposite orders: taken one by one in
    # the order given, the locks would deadlock, and PostgreSQL would abort a batch.
    keys = [f"key-{n}" for n in range(8)]

    def batch(order: list[str]) -> list[tuple[NewEvent, list[NewDelivery]]]:
        return [
            (
                NewEvent(event_id(NOW), NS, APP, "order.created", "{}", key, NOW),
                [NewDelivery(delivery_id(NOW), "ep-1", PENDING, NOW)],
            )
            for key in order
        ]

    async def scenario() -> list[list[object]]:
        replicas = [PostgresStore(fresh_pg_dsn) for _ in range(2)]
        for replica in replicas:
            await replica.open()
        try:
            submissions = [
                replicas[n % 2].create_events(batch(keys if n % 2 else keys[::-1]))
                for n in range(10)
            ]
            return list(await asyncio.wait_for(asyncio.gather(*submissions), 60))
        finally:
            for replica in replicas:
                await replica.close()

    answers = [outcome for outcomes in asyncio.run(scenario()) for outcome in outcomes]
    assert not [a for a in answers if isinstance(a, Exception)]
    firsts = [a for a in answers if isinstance(a, tuple) and not a[2]]
    assert len(firsts) == len(keys), "each key is accepted exactly once"
    assert {a[0] for a in answers if isinstance(a, tuple)} == {a[0] for a in firsts}


# -- lease owners -----------------------------------------------------------------------
# A process registers its owner name before claiming; what it leaves behind comes back
# long before the lease (LEASE) runs out. A "crash" is closing the store without
# release_owner: the process's connections and locks end, as when it is killed.

STALE = 10.0


def same_database(store: Store) -> Store:
    """Another store on `store`'s database, as the next process would open it."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.dsn, max_size=4)


@contract
async def test_a_clean_shutdown_gives_back_what_it_did_not_finish(store: Store) -> None:
    assert await store.register_owner(OWNER, NOW) == 0
    assert await store.heartbeat(OWNER, NOW, STALE) == Sweep(released=0)
    created = [await one(store) for _ in range(3)]
    done, *unfinished = await claim(store)
    await store.finish_attempts([result(done)], NOW + 1)

    assert await store.release_owner(OWNER) == 2
    # Due as they were, for anyone, at once; the finished one stays finished.
    assert ids(await claim(store, NOW + 2, owner=OTHER_OWNER)) == ids(unfinished)
    assert sorted([done.delivery_id, *ids(unfinished)]) == sorted(created)
    assert await status_of(store, done.delivery_id) == DELIVERED
    assert await store.release_owner(OWNER) == 0


@contract
async def test_a_killed_owners_claims_come_back_when_the_next_process_starts(
    store: Store,
) -> None:
    await store.register_owner(OWNER, NOW)
    created = sorted([await one(store) for _ in range(2)])
    assert sorted(ids(await claim(store))) == created
    assert (await store.take_slots(NS, "ep-1", OWNER, 0, 1, 1)).granted == 1
    await store.close()  # killed mid-attempt

    successor = same_database(store)
    await successor.open()
    try:
        released = await successor.register_owner(OTHER_OWNER, NOW + 1)
        sweep = await successor.heartbeat(OTHER_OWNER, NOW + 1, STALE)
        assert released + sweep.released == 2
        assert not sweep.rejoined
        # Its concurrency slots too.
        assert (await successor.take_slots(NS, "ep-1", OTHER_OWNER, 0, 1, 1)).granted == 1
        # Long before the lease would have run out.
        assert sorted(ids(await claim(successor, NOW + 1, owner=OTHER_OWNER))) == created
        # Claims of the live successor are its own: a heartbeat gives back nothing.
        assert (await successor.heartbeat(OTHER_OWNER, NOW + 2, STALE)).released == 0
        assert await claim(successor, NOW + 2, owner=OWNER) == []
    finally:
        await successor.close()


@contract
async def test_a_restarted_owner_takes_back_its_own_claims(store: Store) -> None:
    """An owner name kept across restarts (a pod name, say) is fine: the new process
    holds the name, so whatever is leased in it is the old one's."""
    await store.register_owner(OWNER, NOW)
    dlv = await one(store)
    assert ids(await claim(store)) == [dlv]
    await store.close()

    again = same_database(store)
    await again.open()
    try:
        assert await again.register_owner(OWNER, NOW + 1) == 1
        assert ids(await claim(again, NOW + 1)) == [dlv]
    finally:
        await again.close()


def test_sqlite_one_process_claims_from_a_file(tmp_path: Path) -> None:
    """A second service on the same file waits until the first is gone, and meanwhile
    takes none of its claims."""

    async def scenario() -> None:
        first, second = SQLiteStore(str(tmp_path / "s.db")), SQLiteStore(str(tmp_path / "s.db"))
        await first.open()
        await second.open()
        try:
            await first.register_owner(OWNER, NOW)
            dlv = await one(first)
            assert ids(await claim(first)) == [dlv]
            waiting = asyncio.create_task(second.register_owner(OTHER_OWNER, NOW + 1))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            assert await status_of(second, dlv) == PENDING  # reading needs no lock
            await first.close()  # gone without giving anything back
            assert await asyncio.wait_for(waiting, 5) == 1
            assert ids(await claim(second, NOW + 1, owner=OTHER_OWNER)) == [dlv]
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_postgres_a_live_owner_keeps_its_claims_until_its_heartbeat_stops(
    fresh_pg_dsn: str,
) -> None:
    async def scenario() -> None:
        hung, sibling = PostgresStore(fresh_pg_dsn, max_size=2), PostgresStore(fresh_pg_dsn)
        await hung.open()
        await sibling.open()
        try:
            await hung.register_owner(OWNER, NOW)
            await sibling.register_owner(OTHER_OWNER, NOW)
            dlv = await one(hung)
            [mine] = await claim(hung)
            assert (await hung.heartbeat(OWNER, NOW + 5, STALE)).released == 0
            # Alive (its lock is held) and heard from within STALE: nothing is taken.
            assert await sibling.heartbeat(OTHER_OWNER, NOW + 5 + STALE - 1, STALE) == Sweep(0)
            assert await claim(sibling, NOW + 5 + STALE - 1, owner=OTHER_OWNER) == []

            # Its session is still there, but it has not been heard from for too long.
            taken_at = NOW + 5 + STALE + 1
            assert (await sibling.heartbeat(OTHER_OWNER, taken_at, STALE)).released == 1
            [theirs] = await claim(sibling, taken_at, owner=OTHER_OWNER)
            assert theirs.delivery_id == dlv

            # It wakes: told it had been presumed gone, and its late result changes nothing.
            assert await hung.heartbeat(OWNER, taken_at + 1, STALE) == Sweep(0, rejoined=True)
            await hung.finish_attempts([result(mine, owner=OWNER)], taken_at + 1)
            assert await status_of(hung, dlv) == PENDING
            await sibling.finish_attempts([result(theirs, owner=OTHER_OWNER)], taken_at + 2)
            assert await status_of(hung, dlv) == DELIVERED
            # Registered again, alive and heard from: the sibling leaves it alone.
            assert (await sibling.heartbeat(OTHER_OWNER, taken_at + 2, STALE)).released == 0
            dlv2 = await one(hung)
            assert ids(await claim(hung, taken_at + 2)) == [dlv2]
            assert (await sibling.heartbeat(OTHER_OWNER, taken_at + 3, STALE)).released == 0
        finally:
            await hung.close()
            await sibling.close()

    asyncio.run(scenario())


def test_postgres_two_live_processes_cannot_share_an_owner_name(fresh_pg_dsn: str) -> None:
    async def scenario() -> None:
        first, second = PostgresStore(fresh_pg_dsn), PostgresStore(fresh_pg_dsn)
        await first.open()
        await second.open()
        try:
            await first.register_owner(OWNER, NOW)
            with pytest.raises(OwnerInUse, match=OWNER):
                await second.register_owner(OWNER, NOW)
            await first.release_owner(OWNER)
            assert await second.register_owner(OWNER, NOW + 1) == 0
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


# -- factory ----------------------------------------------------------------------------


def test_open_store_picks_the_backend_from_the_url() -> None:
    sqlite_urls = {
        "sqlite:///webhook-operator.db": "webhook-operator.db",
        "sqlite:////var/lib/webhooks/store.db": "/var/lib/webhooks/store.db",
        "/data/store.db": "/data/store.db",
    }
    for url, path in sqlite_urls.items():
        found = open_store(url)
        assert isinstance(found, SQLiteStore)
        assert found.path == path
    for url in ("postgresql://u@127.0.0.1/db", "postgres://u@localhost:5433/db"):
        found_pg = open_store(url)
        assert isinstance(found_pg, PostgresStore)
        assert found_pg.dsn == url
    for bad in ("mysql://localhost/db", "sqlite://relative.db", "sqlite:///"):
        with pytest.raises(ValueError, match="store URL"):
            open_store(bad)


@contract
async def test_a_claim_carries_its_events_trace_context(store: Store) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = NewEvent(event_id(NOW), NS, APP, "order.created", "{}", None, NOW, trace)
    plain = NewEvent(event_id(NOW), NS, APP, "order.created", "{}", "k", NOW)
    for event in (traced, plain):  # a plain batch and one with a key: both statements
        await store.create_events([(event, [NewDelivery(delivery_id(NOW), "ep-1", PENDING, NOW)])])
    found = {c.event_id: c.traceparent for c in await claim(store)}
    assert found == {traced.id: trace, plain.id: None}


@contract
async def test_create_events_in_one_batch(store: Store) -> None:
    first = NewEvent(event_id(NOW), NS, APP, "order.created", "{}", "k-1", NOW)
    second = NewEvent(event_id(NOW), NS, APP, "order.created", "{}", None, NOW)
    repeat = NewEvent(event_id(NOW), NS, APP, "order.created", "{}", "k-1", NOW)
    results = await store.create_events(
        [
            (first, [NewDelivery(delivery_id(NOW), "ep-1", PENDING, NOW)]),
            (second, []),
            (repeat, [NewDelivery(delivery_id(NOW), "ep-1", PENDING, NOW)]),
        ]
    )
    assert results == [(first.id, 1, False), (second.id, 0, False), (first.id, 1, True)]
    assert len(await ids_of(store, DeliveryQuery(NS, app=APP))) == 1


@contract
async def test_endpoints_with_open_deliveries(store: Store) -> None:
    await add(store, "ep-1", "ep-2")
    assert sorted(await store.endpoints_with_open_deliveries()) == [(NS, "ep-1"), (NS, "ep-2")]
    await store.cancel_endpoint(NS, "ep-1", NOW)
    assert await store.endpoints_with_open_deliveries() == [(NS, "ep-2")]


@contract
async def test_an_event_the_database_refuses_fails_alone(store: Store) -> None:
    # What each database cannot hold: SQLite cannot encode a lone surrogate, PostgreSQL
    # cannot store a NUL in text. Ingest refuses both earlier; the store must still isolate.
    good = [NewEvent(event_id(NOW), NS, APP, "order.created", "{}", None, NOW) for _ in range(3)]
    bad = [
        NewEvent(event_id(NOW), NS, APP, "order.\ud800", '{"a":"\ud800"}', None, NOW),
        NewEvent(event_id(NOW), NS, APP, "order.a\x00b", "{}", None, NOW),
    ]
    batch = [good[0], bad[0], good[1], bad[1], good[2]]
    outcomes = await store.create_events(
        [(e, [NewDelivery(delivery_id(NOW), "ep-1", PENDING, NOW)]) for e in batch]
    )
    assert [o for i, o in enumerate(outcomes) if i in (0, 2, 4)] == [(e.id, 1, False) for e in good]
    assert isinstance(outcomes[1], Exception)
    stored = await ids_of(store, DeliveryQuery(NS, app=APP))
    assert len(stored) == 3 + (0 if isinstance(outcomes[3], Exception) else 1)


def test_postgres_replicas_expiring_at_once_expire_each_delivery_once(fresh_pg_dsn: str) -> None:
    """Every replica sweeps the same endpoints at the same moment: each held delivery
    expires once, no sweep fails (no deadlock), and the counts add up."""
    endpoints = [f"ep-{i}" for i in range(5)]

    async def scenario() -> list[int]:
        replicas = [PostgresStore(fresh_pg_dsn, max_size=4) for _ in range(2)]
        for replica in replicas:
            await replica.open()
        try:
            for n in range(40):
                await add(replicas[0], *endpoints, at=NOW - 2 * HOUR - n, status=HELD)
            sweeps = [
                replica.expire_held(NS, endpoint, HOUR, NOW)
                for endpoint in endpoints
                for replica in replicas
            ]
            counts = list(await asyncio.gather(*sweeps))
            assert await replicas[1].held_endpoints() == []
            return counts
        finally:
            for replica in replicas:
                await replica.close()

    counts = asyncio.run(scenario())
    assert sum(counts) == 40 * len(endpoints)
