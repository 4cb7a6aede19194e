"""The PostgreSQL store: the delivery service's storage when several replicas run.

Replicas share one database, so what the SQLite store gets from being the only writer
is done with locks here:

- claim leases due deliveries with `FOR UPDATE SKIP LOCKED`: concurrent claimers skip
  each other's rows instead of waiting, and a row another claimer just leased fails the
  lease check when it is re-read, so no delivery is handed out twice while its lease holds;
- an idempotency key is checked and used under a transaction-level advisory lock on that
  key, so two replicas accepting the same submission store it once; a batch of events
  takes its keys' locks in one statement, in one order, so two batches never deadlock;
- endpoint state versions come from a sequence, taken under a transaction-level advisory
  lock so they also commit in order: a reader that has seen version N will never later
  find a newly committed N-1 behind its stats cursor;
- claim owners: each process holds a session advisory lock on its owner name, on a
  connection of its own, for as long as it claims, and keeps a row in `lease_owners` with
  a heartbeat. PostgreSQL drops a session's locks when the session ends (a killed
  process's socket closes at once), so an owner whose lock another session can take is
  provably gone; its leases are given back in the transaction that holds that lock,
  whoever runs it first: its successor registering, or any replica's heartbeat. An owner
  whose session lingers (its node vanished without closing the socket) or whose process
  hangs stops renewing its heartbeat, and after `stale_after` seconds its leases are
  given back too; when it wakes it finds its row gone and registers again. The lock also
  keeps two live processes from sharing an owner name.

The owner lock needs a real session: behind PgBouncer, use session pooling for the
delivery service (transaction pooling would drop the lock after every statement).

psycopg 3 async with a connection pool; connections are in autocommit mode, so a lone
statement is its own transaction and several run inside `conn.transaction()`. What the
store does is `core.StoreCore`, as for SQLite; this is its connector, and
`sql/postgres.sql` holds the statements only PostgreSQL runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar, Final

import orjson
import psycopg
from psycopg import AsyncConnection, AsyncCursor, OperationalError
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from webhook_operator.store import migrations, queries
from webhook_operator.store.base import UNAVAILABLE, OwnerInUse, Sweep
from webhook_operator.store.core import DialectQueries, StoreCore, Tx
from webhook_operator.store.rows import Params, Row

log = logging.getLogger(__name__)
UNAVAILABLE.extend((OperationalError, PoolTimeout))  # down, restarting, no connection

APPLICATION_NAME: Final = "webhook-operator"
# A predecessor's session under the same name may take a moment to end; so may a reaper's
# transaction holding the lock of an owner that is reconnecting.
OWNER_LOCK_TRIES: Final = 10
OWNER_LOCK_RETRY: Final = 0.2

Connection = AsyncConnection[TupleRow]


@dataclass(frozen=True)
class PostgresQueries(DialectQueries):
    """The statements of sql/postgres.sql (see there)."""

    claim: str
    lock_idempotency_keys: str
    lock_owner: str
    register_owner: str
    beat: str
    reap_owners: str
    unregister_owner: str
    release_leases: str
    release_slots: str
    lock_endpoint_slots: str
    add_events: str
    finish: str


QUERIES: Final = queries.bind(PostgresQueries, queries.load("postgres", queries.PYFORMAT))


class PostgresStore(StoreCore):
    """`Store` on a PostgreSQL database that several replicas may share."""

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        super().__init__(PostgresConnector(dsn, min_size, max_size))


class PostgresConnector:
    """A pool of autocommit connections as `core.Connector`, and this process's owner
    session."""

    paramstyle: ClassVar[queries.Paramstyle] = queries.PYFORMAT
    refused: ClassVar[tuple[type[Exception], ...]] = (
        psycopg.DataError,
        psycopg.IntegrityError,
        UnicodeEncodeError,
        orjson.JSONEncodeError,  # text JSON cannot hold (a lone surrogate)
    )

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.q = QUERIES
        self._pool: AsyncConnectionPool[Connection] | None = None
        # The session holding this process's owner lock, and who may use it.
        self._owner_conn: Connection | None = None
        self._owner_guard = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            kwargs={"autocommit": True, "application_name": APPLICATION_NAME},
            open=False,
        )
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                await migrations.migrate_postgres(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        async with self._owner_guard:
            await self._end_owner_session()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def schema_version(self) -> int:
        async with self._pooled() as conn:
            return await migrations.postgres_schema_version(conn)

    async def refresh_statistics(self) -> None:
        """Autovacuum keeps PostgreSQL's statistics."""

    # -- statements (core.Tx), each on a pooled connection of its own ---------------------

    async def execute(self, sql: str, params: Params) -> int:
        async with self.connection() as tx:
            return await tx.execute(sql, params)

    async def executemany(self, sql: str, params: Sequence[Params]) -> None:
        async with self.connection() as tx:
            await tx.executemany(sql, params)

    async def fetchone(self, sql: str, params: Params) -> Row | None:
        async with self.connection() as tx:
            return await tx.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params) -> list[Row]:
        async with self.connection() as tx:
            return await tx.fetchall(sql, params)

    async def execute_each(self, sql: str, params: Sequence[Params]) -> list[int]:
        async with self.connection() as tx:
            return await tx.execute_each(sql, params)

    async def fetch_each(self, sql: str, params: Sequence[Params]) -> list[list[Row]]:
        async with self.connection() as tx:
            return await tx.fetch_each(sql, params)

    # -- connections and transactions -----------------------------------------------------

    @asynccontextmanager
    async def _pooled(self) -> AsyncIterator[Connection]:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open")
        async with self._pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[CursorTx]:
        async with self._pooled() as conn, conn.cursor() as cur:
            yield CursorTx(cur)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[CursorTx]:
        async with self._pooled() as conn, conn.transaction(), conn.cursor() as cur:
            yield CursorTx(cur)

    async def add_events(
        self, tx: Tx | None, events: list[Params], deliveries: list[Params]
    ) -> None:
        params = {"events": as_json(events), "deliveries": as_json(deliveries)}
        await (tx or self).execute(self.q.add_events, params)

    async def finish(self, tx: Tx, finishes: list[Params], attempts: list[Params]) -> list[bool]:
        applied = [False] * len(finishes)
        for part in distinct_deliveries(finishes):
            params = {
                "finishes": as_json([finishes[i] for i in part]),
                "attempts": as_json([attempts[i] for i in part]),
            }
            done = {row[0] for row in await tx.fetchall(self.q.finish, params)}
            for index in part:
                applied[index] = finishes[index]["delivery_id"] in done
        return applied

    async def next_version(self, tx: Tx) -> int:
        row = await tx.fetchone(self.q.next_version, {})
        assert row is not None  # a SELECT without FROM filter answers one row
        return int(row[0])

    async def lock_endpoint_slots(self, tx: Tx, key: str) -> None:
        await tx.execute(self.q.lock_endpoint_slots, {"lock_key": key})

    async def lock_idempotency_keys(self, tx: Tx, keys: list[str]) -> None:
        await tx.execute(self.q.lock_idempotency_keys, {"lock_keys": keys})

    # -- claims and their owners ----------------------------------------------------------

    async def claim(self, now: float, limit: int, lease_until: float, owner: str) -> list[Row]:
        params = {"now": now, "limit": limit, "owner": owner, "lease_until": lease_until}
        rows = await self.fetchall(self.q.claim, params)
        rows.sort(key=lambda row: (row[10], row[0]))
        return rows

    async def register_owner(self, owner: str, now: float) -> int:
        async with self._owner_guard:
            conn = await self._owner_session(owner)
            await conn.execute(self.q.register_owner, {"owner": owner, "now": now})
        # This session holds the name's lock and has claimed nothing yet: leases and slots
        # in this name are a previous life's.
        async with self.transaction() as tx:
            await tx.execute(self.q.release_slots, {"owners": [owner]})
            return await tx.execute(self.q.release_leases, {"owners": [owner]})

    async def heartbeat(self, owner: str, now: float, stale_after: float) -> Sweep:
        async with self._owner_guard:
            registered = await self._beat(owner, now)
        if not registered:
            log.warning(
                "owner %s had been presumed gone (no heartbeat for %gs, or its session"
                " lost): its claims were given back; registered again",
                owner,
                stale_after,
            )
        released = await self._reap(owner, now - stale_after)
        return Sweep(released=released, rejoined=not registered)

    async def release_owner(self, owner: str) -> int:
        async with self.transaction() as tx:
            released = await tx.execute(self.q.release_leases, {"owners": [owner]})
            await tx.execute(self.q.release_slots, {"owners": [owner]})
            await tx.execute(self.q.unregister_owner, {"owner": owner})
        async with self._owner_guard:
            await self._end_owner_session()
        return released

    async def _beat(self, owner: str, now: float) -> bool:
        """Renew the heartbeat; False when the row was gone (re-registered now)."""
        params = {"owner": owner, "now": now}
        try:
            conn = await self._owner_session(owner)
            cur = await conn.execute(self.q.beat, params)
        except OperationalError:
            # The session ended (a database restart, the network): the lock went with it.
            # A new session takes it again; the row says whether anyone noticed meanwhile.
            # While the database is down this raises again, and the caller says so once.
            await self._end_owner_session()
            conn = await self._owner_session(owner)
            cur = await conn.execute(self.q.beat, params)
            log.warning("the owner session of %s had ended; a new one holds its lock", owner)
        if cur.rowcount:
            return True
        await conn.execute(self.q.register_owner, params)
        return False

    async def _reap(self, owner: str, stale_before: float) -> int:
        async with self.transaction() as tx:
            params = {"owner": owner, "stale_before": stale_before}
            gone = [row[0] for row in await tx.fetchall(self.q.reap_owners, params)]
            if not gone:
                return 0
            released = await tx.execute(self.q.release_leases, {"owners": gone})
            await tx.execute(self.q.release_slots, {"owners": gone})
        log.info("gave back %d leases of gone or silent owners: %s", released, ", ".join(gone))
        return released

    async def _owner_session(self, owner: str) -> Connection:
        """The open session holding `owner`'s lock; opened and locked when there is none.
        Call with `_owner_guard` held."""
        if self._owner_conn is not None and not self._owner_conn.closed:
            return self._owner_conn
        conn = await AsyncConnection.connect(
            self.dsn, autocommit=True, application_name=APPLICATION_NAME
        )
        try:
            for attempt in range(OWNER_LOCK_TRIES):
                cur = await conn.execute(self.q.lock_owner, {"owner": owner})
                row = await cur.fetchone()
                if row is not None and row[0]:
                    break
                if attempt + 1 == OWNER_LOCK_TRIES:
                    raise OwnerInUse(
                        f"another live session holds the lock of claim owner {owner!r}: "
                        "two processes use this owner name, and each needs its own"
                    )
                await asyncio.sleep(OWNER_LOCK_RETRY)
        except BaseException:
            await conn.close()
            raise
        self._owner_conn = conn
        return conn

    async def _end_owner_session(self) -> None:
        """Close the owner session, which drops its lock. Call with `_owner_guard` held."""
        conn, self._owner_conn = self._owner_conn, None
        if conn is not None:
            with contextlib.suppress(OperationalError):
                await conn.close()


def as_json(rows: list[Params]) -> str:
    """Rows as one JSON array of objects, for statements that read it with
    json_to_recordset: a batch as one parameter."""
    return orjson.dumps(rows).decode()


def distinct_deliveries(finishes: list[Params]) -> list[list[int]]:
    """The batch's indexes in consecutive parts, each naming a delivery at most once (a
    late result and a newer attempt's may meet in one batch), in order."""
    parts: list[list[int]] = [[]]
    seen: set[str] = set()
    for index, params in enumerate(finishes):
        if params["delivery_id"] in seen:
            parts.append([])
            seen = set()
        seen.add(params["delivery_id"])
        parts[-1].append(index)
    return parts


class CursorTx:
    """`core.Tx` on a psycopg cursor."""

    def __init__(self, cur: AsyncCursor[TupleRow]) -> None:
        self.cur = cur

    async def execute(self, sql: str, params: Params) -> int:
        await self.cur.execute(sql, params)
        return self.cur.rowcount

    async def executemany(self, sql: str, params: Sequence[Params]) -> None:
        if params:
            await self.cur.executemany(sql, params)

    async def fetchone(self, sql: str, params: Params) -> Row | None:
        await self.cur.execute(sql, params)
        return await self.cur.fetchone()

    async def fetchall(self, sql: str, params: Params) -> list[Row]:
        await self.cur.execute(sql, params)
        return await self.cur.fetchall()

    async def execute_each(self, sql: str, params: Sequence[Params]) -> list[int]:
        if not params:
            return []
        # In pipeline mode; with returning=True each statement keeps its own result.
        await self.cur.executemany(sql, params, returning=True)
        counts = [self.cur.rowcount]
        while self.cur.nextset():
            counts.append(self.cur.rowcount)
        return counts

    async def fetch_each(self, sql: str, params: Sequence[Params]) -> list[list[Row]]:
        if not params:
            return []
        # In pipeline mode: the statements go out together, their results come back in order.
        await self.cur.executemany(sql, params, returning=True)
        found: list[list[Row]] = []
        while True:
            found.append(list(await self.cur.fetchall()))
            if not self.cur.nextset():
                return found
