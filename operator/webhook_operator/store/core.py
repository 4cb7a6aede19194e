"""The store, once: every `Store` method over a dialect connector.

What a method does (which statements, in which transaction, what it returns) is written
here for both databases; the statements are in `sql/queries.sql`, the row mapping in
`rows.py`. A connector (`sqlite.py`, `postgres.py`) brings the connection handling and
only what truly differs between the databases: how a claim takes its leases, where the
endpoint-state version comes from, the locks PostgreSQL replicas need, lease owners,
and the few statements written differently (`sql/sqlite.sql`, `sql/postgres.sql`).

The SQLite connector runs its statements straight from these coroutines, with no thread
hop: its `execute` and friends are coroutines that never suspend, so within one of its
transactions nothing awaits and no other coroutine of the process can interleave."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from webhook_operator import ids
from webhook_operator.store import queries, rows
from webhook_operator.store.base import (
    ActivityBucket,
    AttemptResult,
    Claimed,
    DeliveryDetail,
    DeliveryQuery,
    DeliveryRow,
    DeliveryStatus,
    EndpointState,
    NewDelivery,
    NewEvent,
    QueueStats,
    RateGrant,
    SlotGrant,
    Sweep,
    activity_series,
    endpoint_state_updates,
    slot_grant,
)
from webhook_operator.store.rows import Params, Row

EventOutcome = tuple[str, int, bool]
HELD = DeliveryStatus.HELD


@dataclass(frozen=True)
class SharedQueries:
    """The statements of sql/queries.sql (see there)."""

    find_duplicate: str
    defer: str
    hold: str
    release_held: str
    cancel_endpoint: str
    held_endpoints: str
    expire_held: str
    open_endpoints: str
    record_attempt_state: str
    disable: str
    enable: str
    enable_once: str
    touch_state: str
    select_state: str
    select_disabled: str
    select_stats: str
    list_deliveries: str
    select_delivery: str
    select_attempts: str
    copy_delivery: str
    select_replayable: str
    queue_stats: str
    purge: str
    purge_rates: str
    add_endpoint_rate: str
    rate_not_before: str
    slowed_endpoints: str
    select_slots: str
    set_slots: str
    drop_slots: str
    slot_contenders: str


@dataclass(frozen=True)
class DialectQueries:
    """What every dialect file (sql/<dialect>.sql) has, written its own way; a connector
    extends this with the statements only it runs."""

    next_version: str
    activity: str
    reserve_rate: str


class Tx(Protocol):
    """Statements on one connection: inside a transaction, or each its own."""

    async def execute(self, sql: str, params: Params) -> int:
        """Run one statement; the number of rows it changed."""

    async def executemany(self, sql: str, params: Sequence[Params]) -> None: ...

    async def fetchone(self, sql: str, params: Params) -> Row | None: ...

    async def fetchall(self, sql: str, params: Params) -> list[Row]: ...

    async def execute_each(self, sql: str, params: Sequence[Params]) -> list[int]:
        """Run a statement once per parameter set; the rows each changed."""

    async def fetch_each(self, sql: str, params: Sequence[Params]) -> list[list[Row]]:
        """Run a `... RETURNING` statement once per parameter set; the rows of each."""


class Connector(Tx, Protocol):
    """A database as the core needs it. Its own `Tx` methods run each statement alone."""

    paramstyle: ClassVar[queries.Paramstyle]
    # What a database raises for an event it cannot hold (bad text, a constraint).
    refused: ClassVar[tuple[type[Exception], ...]]

    @property
    def q(self) -> DialectQueries:
        """The dialect's own statements (sql/<dialect>.sql)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    def connection(self) -> AbstractAsyncContextManager[Tx]:
        """One connection for several reads, each statement its own transaction."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    async def add_events(
        self, tx: Tx | None, events: list[Params], deliveries: list[Params]
    ) -> None:
        """Insert events and their deliveries (rows.event_params, rows.delivery_params):
        inside `tx`, or when None atomically on their own."""

    async def finish(self, tx: Tx, finishes: list[Params], attempts: list[Params]) -> list[bool]:
        """Record attempt results (rows.finish_params, and rows.attempt_params in the same
        order) in `tx`; for each, whether it applied (sql: finish_delivery)."""

    async def lock_endpoint_slots(self, tx: Tx, key: str) -> None:
        """Hold the endpoint's concurrency slots until `tx` ends."""

    async def next_version(self, tx: Tx) -> int:
        """The endpoint-state version of `tx`'s changes, committed in version order."""

    async def lock_idempotency_keys(self, tx: Tx, keys: list[str]) -> None:
        """Hold `keys` until `tx` ends, where concurrent writers could both accept one;
        taken in one order by every writer, so two batches never wait for each other."""

    async def claim(self, now: float, limit: int, lease_until: float, owner: str) -> list[Row]:
        """Lease due deliveries: the claim rows (rows.claimed_row), in claim order."""

    async def register_owner(self, owner: str, now: float) -> int: ...

    async def heartbeat(self, owner: str, now: float, stale_after: float) -> Sweep: ...

    async def release_owner(self, owner: str) -> int: ...

    async def refresh_statistics(self) -> None:
        """After big deletions: let the planner see the table as it now is."""


class StoreCore:
    """`Store` over a connector; the backends are this with their connector."""

    def __init__(self, db: Connector) -> None:
        self.db = db
        self.q = queries.bind(SharedQueries, queries.load("queries", db.paramstyle))

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def schema_version(self) -> int:
        return await self.db.schema_version()

    # -- events ---------------------------------------------------------------------------

    async def create_event(
        self, event: NewEvent, deliveries: list[NewDelivery], dedupe_window: float = 86400.0
    ) -> EventOutcome:
        (outcome,) = await self.create_events([(event, deliveries)], dedupe_window)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def create_events(
        self, batch: list[tuple[NewEvent, list[NewDelivery]]], dedupe_window: float = 86400.0
    ) -> list[EventOutcome | Exception]:
        if not batch:
            return []
        try:
            if not all(plain_event(e, d) for e, d in batch):
                async with self.db.transaction() as tx:
                    return list(await self._insert_events(tx, batch, dedupe_window))
            # The common batch, with no key to look up and nothing held: no transaction
            # around it, a dialect's add_events is atomic on its own.
            await self.db.add_events(None, *rows.batch_params(batch))
            return [(e.id, len(d), False) for e, d in batch]
        except self.db.refused as exc:
            if len(batch) == 1:
                return [exc]
        # Some event of the batch cannot be stored: each in a transaction of its own, so
        # that one fails alone (rare: ingest refuses what the databases cannot hold).
        return [await self._create_alone(item, dedupe_window) for item in batch]

    async def _create_alone(
        self, item: tuple[NewEvent, list[NewDelivery]], window: float
    ) -> EventOutcome | Exception:
        try:
            async with self.db.transaction() as tx:
                (outcome,) = await self._insert_events(tx, [item], window)
        except self.db.refused as exc:
            return exc
        return outcome

    async def _insert_events(
        self, tx: Tx, batch: list[tuple[NewEvent, list[NewDelivery]]], window: float
    ) -> list[EventOutcome]:
        """A batch in one transaction: a statement per kind of row, not per event."""
        # Namespace and app names cannot contain "/", so the joined string is unambiguous.
        keyed = {
            f"{e.namespace}/{e.app}/{e.idempotency_key}": e
            for e, _ in batch
            if e.idempotency_key is not None
        }
        earlier: dict[str, EventOutcome] = {}
        if keyed:
            await self.db.lock_idempotency_keys(tx, sorted(keyed))
            found = await tx.fetch_each(
                self.q.find_duplicate,
                [rows.duplicate_params(e, e.idempotency_key or "", window) for e in keyed.values()],
            )
            for lock_key, hits in zip(keyed, found, strict=True):
                if hits:
                    earlier[lock_key] = (hits[0][0], hits[0][1], True)
        outcomes: list[EventOutcome] = []
        new: list[tuple[NewEvent, list[NewDelivery]]] = []
        for event, deliveries in batch:
            lock_key = f"{event.namespace}/{event.app}/{event.idempotency_key}"
            if event.idempotency_key is not None and lock_key in earlier:
                outcomes.append(earlier[lock_key])
                continue
            if event.idempotency_key is not None:
                # A later event of this batch with the same key is this one's duplicate.
                earlier[lock_key] = (event.id, len(deliveries), True)
            new.append((event, deliveries))
            outcomes.append((event.id, len(deliveries), False))
        if new:
            await self.db.add_events(tx, *rows.batch_params(new))
            await self._touch(
                tx, {(e.namespace, d.endpoint) for e, ds in new for d in ds if d.status == HELD}
            )
        return outcomes

    async def _touch(self, tx: Tx, endpoints: set[tuple[str, str]]) -> None:
        """A new version for endpoints whose held deliveries changed (sql: touch_state)."""
        if endpoints:
            version = await self.db.next_version(tx)
            await tx.executemany(
                self.q.touch_state,
                [
                    {"namespace": ns, "endpoint": ep, "version": version}
                    for ns, ep in sorted(endpoints)
                ],
            )

    # -- claim and results ----------------------------------------------------------------

    async def claim(
        self, now: float, limit: int, lease_seconds: float, owner: str
    ) -> list[Claimed]:
        if limit <= 0:
            return []
        claimed = await self.db.claim(now, limit, now + lease_seconds, owner)
        return [rows.claimed_row(row) for row in claimed]

    async def register_owner(self, owner: str, now: float) -> int:
        return await self.db.register_owner(owner, now)

    async def heartbeat(self, owner: str, now: float, stale_after: float) -> Sweep:
        return await self.db.heartbeat(owner, now, stale_after)

    async def release_owner(self, owner: str) -> int:
        return await self.db.release_owner(owner)

    async def finish_attempts(self, results: list[AttemptResult], now: float) -> None:
        if not results:
            return
        async with self.db.transaction() as tx:
            applied = await self.db.finish(
                tx,
                [rows.finish_params(r, now) for r in results],
                [rows.attempt_params(r) for r in results],
            )
            kept = [r for r, changed in zip(results, applied, strict=True) if changed]
            if not kept:
                return
            # One version for the whole batch: readers see the transaction whole or not at all.
            version = await self.db.next_version(tx)
            await tx.executemany(
                self.q.record_attempt_state,
                [rows.attempt_state_params(r, now, version) for r in endpoint_state_updates(kept)],
            )

    async def defer(self, delivery_ids: list[str], owner: str, until: float) -> None:
        if delivery_ids:
            async with self.db.transaction() as tx:
                await tx.executemany(
                    self.q.defer, [{"id": i, "owner": owner, "until": until} for i in delivery_ids]
                )

    async def hold(self, delivery_ids: list[str], owner: str) -> None:
        if not delivery_ids:
            return
        async with self.db.transaction() as tx:
            held = await tx.fetch_each(
                self.q.hold, [{"id": i, "owner": owner} for i in delivery_ids]
            )
            await self._touch(tx, {(row[0], row[1]) for returned in held for row in returned})

    async def release_held(self, namespace: str, endpoint: str, now: float) -> int:
        params = {"namespace": namespace, "endpoint": endpoint, "now": now}
        async with self.db.transaction() as tx:
            released = await tx.execute(self.q.release_held, params)
            if released:
                await self._touch(tx, {(namespace, endpoint)})
        return released

    async def held_endpoints(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in await self.db.fetchall(self.q.held_endpoints, {})]

    async def expire_held(self, namespace: str, endpoint: str, hold_for: float, now: float) -> int:
        if hold_for <= 0:
            return 0
        params = {"namespace": namespace, "endpoint": endpoint, "now": now}
        async with self.db.transaction() as tx:
            expired = await tx.execute(self.q.expire_held, {**params, "before": now - hold_for})
            if expired:
                # The counts changed without an attempt: stats_since must report it.
                await self._touch(tx, {(namespace, endpoint)})
        return expired

    async def endpoints_with_open_deliveries(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in await self.db.fetchall(self.q.open_endpoints, {})]

    async def cancel_endpoint(self, namespace: str, endpoint: str, now: float) -> int:
        params = {"namespace": namespace, "endpoint": endpoint, "now": now}
        return await self.db.execute(self.q.cancel_endpoint, params)

    # -- endpoint state -------------------------------------------------------------------

    async def set_disabled(
        self,
        namespace: str,
        endpoint: str,
        reason: str | None,
        now: float,
        enable_token: str | None = None,
    ) -> None:
        params: Params = {"namespace": namespace, "endpoint": endpoint}
        async with self.db.transaction() as tx:
            params["version"] = await self.db.next_version(tx)
            if reason is not None:
                await tx.execute(self.q.disable, {**params, "reason": reason, "now": now})
            else:
                await tx.execute(self.q.enable, {**params, "enable_token": enable_token})

    async def enable_once(self, namespace: str, endpoint: str, enable_token: str) -> bool:
        params: Params = {"namespace": namespace, "endpoint": endpoint}
        async with self.db.transaction() as tx:
            params["version"] = await self.db.next_version(tx)
            return (
                await tx.execute(self.q.enable_once, {**params, "enable_token": enable_token}) > 0
            )

    async def endpoint_state(self, namespace: str, endpoint: str) -> EndpointState | None:
        params = {"namespace": namespace, "endpoint": endpoint}
        row = await self.db.fetchone(self.q.select_state, params)
        return None if row is None else rows.state_row(row)

    async def disabled_endpoints(self) -> list[EndpointState]:
        return [rows.state_row(row) for row in await self.db.fetchall(self.q.select_disabled, {})]

    async def stats_since(
        self, cursor: int, now: float, window: float = 86400.0
    ) -> tuple[list[EndpointState], int]:
        params = {"cursor": cursor, "since": now - window}
        states = [
            rows.stats_row(row) for row in await self.db.fetchall(self.q.select_stats, params)
        ]
        return states, max((s.version for s in states), default=cursor)

    # -- rate budgets ---------------------------------------------------------------------

    async def reserve_rate(
        self,
        namespace: str,
        endpoint: str,
        now: float,
        rate: float,
        burst: float,
        want: int,
        horizon: float,
    ) -> RateGrant:
        interval = 1.0 / rate
        params: Params = {
            "namespace": namespace,
            "endpoint": endpoint,
            "now": now,
            "interval": interval,
            "tolerance": max(burst - 1.0, 0.0) * interval,
            "horizon": horizon,
            "want": max(want, 0),
        }
        row = await self.db.fetchone(self.db.q.reserve_rate, params)
        if row is None:
            # The endpoint's first reservation: its row, then the reservation (once).
            await self.db.execute(
                self.q.add_endpoint_rate, {"namespace": namespace, "endpoint": endpoint}
            )
            row = await self.db.fetchone(self.db.q.reserve_rate, params)
            assert row is not None  # rows are never deleted while the service runs
        tat, granted = float(row[0]), int(row[1])
        return RateGrant(tat - granted * interval, granted, interval, tat)

    async def rate_not_before(self, namespace: str, endpoint: str, until: float) -> None:
        params = {"namespace": namespace, "endpoint": endpoint, "until": until}
        await self.db.execute(self.q.rate_not_before, params)

    async def slowed_endpoints(self, now: float) -> dict[tuple[str, str], float]:
        found = await self.db.fetchall(self.q.slowed_endpoints, {"now": now})
        return {(row[0], row[1]): float(row[2]) for row in found}

    # -- concurrency slots ----------------------------------------------------------------

    async def take_slots(
        self,
        namespace: str,
        endpoint: str,
        owner: str,
        held: int,
        want: int,
        limit: int,
        spare: int = 0,
    ) -> SlotGrant:
        params: Params = {"namespace": namespace, "endpoint": endpoint, "owner": owner}
        async with self.db.transaction() as tx:
            await self.db.lock_endpoint_slots(tx, f"{namespace}/{endpoint}")
            others = await tx.fetchall(self.q.select_slots, params)
            found = [(int(h), int(w)) for h, w in others]
            grant = slot_grant(limit, held, want, found, spare)
            held, wanted = held + grant.granted, max(want - grant.granted, 0)
            if held or wanted:
                await tx.execute(self.q.set_slots, {**params, "held": held, "wanted": wanted})
            else:
                await tx.execute(self.q.drop_slots, params)
        return grant

    async def slot_contenders(self, owner: str) -> dict[tuple[str, str], int]:
        found = await self.db.fetchall(self.q.slot_contenders, {"owner": owner})
        return {(row[0], row[1]): int(row[2]) for row in found}

    # -- reading deliveries ---------------------------------------------------------------

    async def list_deliveries(self, query: DeliveryQuery) -> tuple[list[DeliveryRow], str | None]:
        if query.limit < 1:
            raise ValueError("limit must be at least 1")
        filters, params = list_filters(query)
        sql = self._with_filters(self.q.list_deliveries, filters)
        # One row more than asked says whether another page follows.
        found = await self.db.fetchall(sql, {**params, "limit": query.limit + 1})
        page = [rows.delivery_row(r) for r in found[: query.limit]]
        return page, page[-1].id if len(found) > query.limit else None

    async def get_delivery(self, namespace: str, delivery_id: str) -> DeliveryDetail | None:
        async with self.db.connection() as tx:
            row = await tx.fetchone(
                self.q.select_delivery, {"namespace": namespace, "id": delivery_id}
            )
            if row is None:
                return None
            attempts = await tx.fetchall(self.q.select_attempts, {"id": delivery_id})
        delivery = rows.delivery_row(row[: rows.DELIVERY_COLUMNS])
        return DeliveryDetail(delivery, [rows.attempt_row(a) for a in attempts], row[-1])

    async def activity(
        self, namespace: str, app: str, since: float, now: float, bucket: float = 3600.0
    ) -> list[ActivityBucket]:
        params = rows.activity_params(namespace, app, since, now, bucket)
        return activity_series(
            since, now, bucket, await self.db.fetchall(self.db.q.activity, params)
        )

    # -- resend, replay, housekeeping -----------------------------------------------------

    async def resend(self, namespace: str, delivery_id: str, now: float, new_id: str) -> str | None:
        params = {"namespace": namespace, "id": delivery_id, "new_id": new_id, "now": now}
        return new_id if await self.db.execute(self.q.copy_delivery, params) else None

    async def replay(
        self,
        namespace: str,
        endpoint: str,
        since: float,
        now: float,
        statuses: tuple[DeliveryStatus, ...],
        new_ids: list[str] | None = None,
        until: float | None = None,
    ) -> int:
        if not statuses:
            return 0
        params: Params = {"namespace": namespace, "endpoint": endpoint, "since": since}
        filters = [in_list("status", "status", [s.value for s in statuses], params)]
        if until is not None:
            filters.append("created_at < :until")
            params["until"] = until
        sql = self._with_filters(self.q.select_replayable, filters)
        async with self.db.transaction() as tx:
            sources = [row[0] for row in await tx.fetchall(sql, params)]
            if not sources:
                return 0
            targets = replay_ids(len(sources), now, new_ids)
            await tx.executemany(
                self.q.copy_delivery,
                [
                    {"namespace": namespace, "id": source, "new_id": target, "now": now}
                    for source, target in zip(sources, targets, strict=True)
                ],
            )
        return len(sources)

    async def queue_stats(self, now: float) -> QueueStats:
        row = await self.db.fetchone(self.q.queue_stats, {"now": now})
        assert row is not None  # an aggregate always answers one row
        return rows.queue_stats(row, now)

    async def purge(self, before: float) -> int:
        deleted = await self.db.execute(self.q.purge, {"before": before})
        await self.db.execute(self.q.purge_rates, {"before": before})
        # Housekeeping runs rarely and follows big changes: a good time for statistics.
        await self.db.refresh_statistics()
        return deleted

    def _with_filters(self, sql: str, filters: list[str]) -> str:
        """`sql` with its {filters} (conditions of our own, never input) in place."""
        return sql.replace("{filters}", queries.convert(" AND ".join(filters), self.db.paramstyle))


def plain_event(event: NewEvent, deliveries: list[NewDelivery]) -> bool:
    """Stored without reading or locking anything: no idempotency key, nothing held."""
    return event.idempotency_key is None and all(d.status != HELD for d in deliveries)


def in_list(column: str, prefix: str, values: Sequence[Any], params: Params) -> str:
    """`column IN (:prefix0, :prefix1, ...)`, the values added to `params`: one form that
    both databases plan with their indexes."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    params.update(zip(names, values, strict=True))
    return f"{column} IN ({', '.join(':' + n for n in names)})"


def list_filters(query: DeliveryQuery) -> tuple[list[str], Params]:
    filters = ["d.namespace = :namespace"]
    params: Params = {"namespace": query.namespace}
    if query.app is not None:
        filters.append("d.app = :app")
        params["app"] = query.app
    if query.endpoint is not None:
        filters.append("d.endpoint = :endpoint")
        params["endpoint"] = query.endpoint
    if query.cursor is not None:
        filters.append("d.id < :cursor")
        params["cursor"] = query.cursor
    if query.statuses:
        filters.append(in_list("d.status", "status", [s.value for s in query.statuses], params))
    if query.event_types:
        filters.append(in_list("d.event_type", "type", list(query.event_types), params))
    return filters, params


def replay_ids(count: int, now: float, new_ids: list[str] | None) -> list[str]:
    if new_ids is None:
        # Sorted, so the copies keep their originals' order within the same millisecond.
        return sorted(ids.delivery_id(now) for _ in range(count))
    if len(new_ids) < count:
        raise ValueError(f"replay needs {count} new ids, got {len(new_ids)}")
    return new_ids[:count]
