"""The PostgreSQL store: the delivery service's storage when several replicas run.

Replicas share one database, so what the SQLite store gets from being the only writer
is done with locks here:

- claim leases due deliveries with `FOR UPDATE SKIP LOCKED`: concurrent claimers skip
  each other's rows instead of waiting, and a row another claimer just leased fails the
  lease check when it is re-read, so no delivery is handed out twice while its lease holds;
- an idempotency key is checked and used under a transaction-level advisory lock on that
  key, so two replicas accepting the same submission store it once;
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
statement is its own transaction and several run inside `conn.transaction()`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection, AsyncCursor, OperationalError
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from webhook_operator.store import migrations
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
    OwnerInUse,
    QueueStats,
    Sweep,
    activity_series,
    endpoint_state_updates,
)
from webhook_operator.store.sqlite import (
    STATE_COUNT_KEYS,
    activity_params,
    attempt_params,
    attempt_row,
    attempt_state_params,
    delivery_params,
    delivery_row,
    event_params,
    finish_params,
    queue_stats,
    replay_ids,
    state_row,
)

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
APPLICATION_NAME: Final = "webhook-operator"
# A predecessor's session under the same name may take a moment to end; so may a reaper's
# transaction holding the lock of an owner that is reconnecting.
OWNER_LOCK_TRIES: Final = 10
OWNER_LOCK_RETRY: Final = 0.2

# -- locks ------------------------------------------------------------------------------
# Transaction-level advisory locks, two-key form: the first key is a class of our own,
# apart from the migration lock (one-key form) and anything else using advisory locks.

LOCK_IDEMPOTENCY_KEY: Final = "SELECT pg_advisory_xact_lock(1001, hashtext(%(lock_key)s))"
LOCK_VERSIONS: Final = "SELECT pg_advisory_xact_lock(1002, 0)"
# Held by the owner's own session for as long as it claims (see the module docstring).
LOCK_OWNER: Final = "SELECT pg_try_advisory_lock(1003, hashtext(%(owner)s))"

# -- events -----------------------------------------------------------------------------

FIND_DUPLICATE: Final = """
SELECT id, delivery_count
FROM events
WHERE namespace = %(namespace)s
  AND app = %(app)s
  AND idempotency_key = %(key)s
  AND created_at >= %(since)s
ORDER BY created_at DESC
LIMIT 1
"""

INSERT_EVENT: Final = """
INSERT INTO events (id, namespace, app, type, payload, idempotency_key, delivery_count, created_at)
VALUES (
    %(id)s, %(namespace)s, %(app)s, %(type)s, %(payload)s, %(idempotency_key)s,
    %(delivery_count)s, %(created_at)s
)
"""

INSERT_DELIVERY: Final = """
INSERT INTO deliveries (
    id, event_id, namespace, app, endpoint, event_type, status, attempts,
    created_at, updated_at, next_attempt_at
)
VALUES (
    %(id)s, %(event_id)s, %(namespace)s, %(app)s, %(endpoint)s, %(event_type)s, %(status)s, 0,
    %(now)s, %(now)s, %(next_attempt_at)s
)
"""

# -- claim and results ------------------------------------------------------------------

# The inner SELECT walks the deliveries_due index in order and locks what it picks,
# skipping rows other claimers hold. next_attempt_at is returned to restore that order,
# which RETURNING does not keep.
CLAIM: Final = """
UPDATE deliveries AS d
SET lease_owner = %(owner)s, lease_until = %(lease_until)s
FROM events AS e
WHERE e.id = d.event_id
  AND d.id IN (
      SELECT id
      FROM deliveries
      WHERE status IN ('pending', 'failed')
        AND next_attempt_at <= %(now)s
        AND (lease_until IS NULL OR lease_until <= %(now)s)
      ORDER BY next_attempt_at, id
      LIMIT %(limit)s
      FOR UPDATE SKIP LOCKED
  )
RETURNING d.id, d.event_id, d.namespace, d.app, d.endpoint, e.type, e.payload, d.attempts,
          e.created_at, d.next_attempt_at
"""

# Applies only while `owner` is still the lease holder (nobody claimed the delivery since,
# even if the lease ran out) and no later attempt was recorded.
FINISH_DELIVERY: Final = """
UPDATE deliveries
SET status = %(status)s,
    attempts = %(attempt)s,
    next_attempt_at = %(next_attempt_at)s,
    last_http_status = %(http_status)s,
    last_error = %(error)s,
    updated_at = %(now)s,
    lease_owner = NULL,
    lease_until = NULL
WHERE id = %(delivery_id)s
  AND lease_owner = %(owner)s
  AND attempts = %(attempt)s - 1
  AND status IN ('pending', 'failed')
RETURNING id
"""

INSERT_ATTEMPT: Final = """
INSERT INTO attempts (
    delivery_id, attempt, namespace, endpoint, started_at, duration_ms,
    http_status, error, response_snippet, success
)
VALUES (
    %(delivery_id)s, %(attempt)s, %(namespace)s, %(endpoint)s, %(started_at)s,
    %(duration_ms)s, %(http_status)s, %(error)s, %(response_snippet)s, %(success)s
)
"""

DEFER: Final = """
UPDATE deliveries
SET next_attempt_at = %(until)s, lease_owner = NULL, lease_until = NULL
WHERE id = ANY(%(ids)s) AND lease_owner = %(owner)s AND status IN ('pending', 'failed')
"""

HOLD: Final = """
UPDATE deliveries
SET status = 'held', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL
WHERE id = ANY(%(ids)s) AND lease_owner = %(owner)s AND status IN ('pending', 'failed')
RETURNING namespace, endpoint
"""

# Every released delivery is due at the same moment, so claim's id tiebreak sends them
# oldest first.
RELEASE_HELD: Final = """
UPDATE deliveries
SET status = 'pending', next_attempt_at = %(now)s, updated_at = %(now)s
WHERE namespace = %(namespace)s AND endpoint = %(endpoint)s AND status = 'held'
"""

# Held or released deliveries change an endpoint's counts without an attempt: a new
# version makes stats_since report it (with a row, even before its first attempt).
TOUCH_STATE: Final = """
INSERT INTO endpoint_states AS s (namespace, endpoint, version)
VALUES (%(namespace)s, %(endpoint)s, nextval('endpoint_state_version'))
ON CONFLICT (namespace, endpoint) DO UPDATE SET version = excluded.version
"""

CANCEL_ENDPOINT: Final = """
UPDATE deliveries
SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,
    updated_at = %(now)s
WHERE namespace = %(namespace)s AND endpoint = %(endpoint)s
  AND status IN ('pending', 'failed', 'held')
"""

# Endpoints that still have work queued: at start-up, those deleted meanwhile are cancelled.
OPEN_ENDPOINTS: Final = """
SELECT DISTINCT namespace, endpoint FROM deliveries
WHERE status IN ('pending', 'failed', 'held')
"""

# -- claim owners -----------------------------------------------------------------------

REGISTER_OWNER: Final = """
INSERT INTO lease_owners (owner, started_at, heartbeat_at)
VALUES (%(owner)s, %(now)s, %(now)s)
ON CONFLICT (owner) DO UPDATE SET
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at
"""

BEAT: Final = "UPDATE lease_owners SET heartbeat_at = %(now)s WHERE owner = %(owner)s"

# Owners that are gone (their lock can be taken: the session that held it has ended) or
# silent. The lock taken here is held until commit, so a gone owner's leases are given
# back by one transaction only. A row renewed by a concurrent heartbeat is re-read before
# it is deleted, and kept: its owner is alive after all.
REAP_OWNERS: Final = """
DELETE FROM lease_owners
WHERE owner <> %(owner)s
  AND (heartbeat_at < %(stale_before)s OR pg_try_advisory_xact_lock(1003, hashtext(owner)))
RETURNING owner
"""

UNREGISTER_OWNER: Final = "DELETE FROM lease_owners WHERE owner = %(owner)s"

# Leases exist only on open deliveries (every other transition clears them); the status
# predicate repeats the deliveries_due index's, so this reads that index, not the table.
RELEASE_LEASES: Final = """
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
WHERE status IN ('pending', 'failed') AND lease_owner = ANY(%(owners)s)
"""

# -- endpoint state ---------------------------------------------------------------------

# One attempt's outcome. The inserted row's consecutive_failures is 0 for a success and 1
# for a failure; an existing row resets or adds one. A disabled endpoint keeps the reason
# and time it was first disabled with.
RECORD_ATTEMPT_STATE: Final = """
INSERT INTO endpoint_states AS s (
    namespace, endpoint, version, last_delivery_time, last_success_time, last_failure_time,
    last_http_status, last_error, consecutive_failures, disabled_reason, disabled_at
)
VALUES (
    %(namespace)s, %(endpoint)s, nextval('endpoint_state_version'), %(ended_at)s,
    %(success_time)s, %(failure_time)s, %(http_status)s, %(error)s, %(failures)s,
    %(disable_reason)s, %(disabled_at)s
)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    last_delivery_time = excluded.last_delivery_time,
    last_success_time = coalesce(excluded.last_success_time, s.last_success_time),
    last_failure_time = coalesce(excluded.last_failure_time, s.last_failure_time),
    last_http_status = excluded.last_http_status,
    last_error = excluded.last_error,
    consecutive_failures = CASE
        WHEN excluded.consecutive_failures = 0 THEN 0
        ELSE s.consecutive_failures + 1
    END,
    disabled_reason = coalesce(s.disabled_reason, excluded.disabled_reason),
    disabled_at = coalesce(s.disabled_at, excluded.disabled_at)
"""

DISABLE: Final = """
INSERT INTO endpoint_states AS s (namespace, endpoint, version, disabled_reason, disabled_at)
VALUES (
    %(namespace)s, %(endpoint)s, nextval('endpoint_state_version'), %(reason)s, %(now)s
)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    disabled_reason = excluded.disabled_reason,
    disabled_at = excluded.disabled_at
"""

# Without a new enable token, the one last acted on stays recorded.
ENABLE: Final = """
INSERT INTO endpoint_states AS s (namespace, endpoint, version, enable_token)
VALUES (%(namespace)s, %(endpoint)s, nextval('endpoint_state_version'), %(enable_token)s)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    disabled_reason = NULL,
    disabled_at = NULL,
    consecutive_failures = 0,
    enable_token = coalesce(excluded.enable_token, s.enable_token)
"""

STATE_COLUMNS: Final = """
    s.namespace, s.endpoint, s.version, s.last_delivery_time, s.last_success_time,
    s.last_failure_time, s.last_http_status, s.last_error, s.consecutive_failures,
    s.disabled_reason, s.disabled_at, s.enable_token
"""

SELECT_STATE: Final = f"""
SELECT {STATE_COLUMNS}
FROM endpoint_states AS s
WHERE s.namespace = %(namespace)s AND s.endpoint = %(endpoint)s
"""

SELECT_DISABLED: Final = f"""
SELECT {STATE_COLUMNS}
FROM endpoint_states AS s
WHERE s.disabled_reason IS NOT NULL
ORDER BY s.namespace, s.endpoint
"""

# Changed endpoints with their counts; each count reads one index range.
SELECT_STATS: Final = f"""
SELECT {STATE_COLUMNS},
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'delivered' AND d.updated_at >= %(since)s) AS delivered,
    (SELECT count(*) FROM attempts AS a
     WHERE a.namespace = s.namespace AND a.endpoint = s.endpoint
       AND NOT a.success AND a.started_at >= %(since)s) AS failed,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'exhausted' AND d.updated_at >= %(since)s) AS exhausted,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status IN ('pending', 'failed')) AS pending,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'held') AS held
FROM endpoint_states AS s
WHERE s.version > %(cursor)s
ORDER BY s.version
"""

# -- reading deliveries -----------------------------------------------------------------

DELIVERY_COLUMNS: Final = """
    d.id, d.event_id, d.namespace, d.app, d.endpoint, d.event_type, d.status, d.attempts,
    d.created_at, d.updated_at, d.next_attempt_at, d.last_http_status, d.last_error
"""

# {filters} is built from the fixed conditions in _list_filters, never from input.
LIST_DELIVERIES: Final = f"""
SELECT {DELIVERY_COLUMNS}
FROM deliveries AS d
WHERE {{filters}}
ORDER BY d.id DESC
LIMIT %(limit)s
"""

SELECT_DELIVERY: Final = f"""
SELECT {DELIVERY_COLUMNS}, e.payload
FROM deliveries AS d
JOIN events AS e ON e.id = d.event_id
WHERE d.namespace = %(namespace)s AND d.id = %(id)s
"""

SELECT_ATTEMPTS: Final = """
SELECT attempt, started_at, duration_ms, http_status, error, response_snippet, success
FROM attempts
WHERE delivery_id = %(id)s
ORDER BY attempt
"""

# An app's deliveries per bucket of creation time. The id bound lets the deliveries_app
# index (namespace, app, id) read only the window; created_at decides exactly.
ACTIVITY: Final = """
SELECT floor((d.created_at - %(since)s) / %(bucket)s)::bigint AS slot,
    count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
    count(*) FILTER (WHERE d.status IN ('failed', 'exhausted')) AS failed
FROM deliveries AS d
WHERE d.namespace = %(namespace)s AND d.app = %(app)s AND d.id >= %(first_id)s
  AND d.created_at >= %(since)s AND d.created_at < %(now)s
GROUP BY slot
"""

# -- resend, replay, housekeeping -------------------------------------------------------

COPY_DELIVERY: Final = """
INSERT INTO deliveries (
    id, event_id, namespace, app, endpoint, event_type, status, attempts,
    created_at, updated_at, next_attempt_at
)
SELECT %(new_id)s, event_id, namespace, app, endpoint, event_type, 'pending', 0,
       %(now)s, %(now)s, %(now)s
FROM deliveries
WHERE namespace = %(namespace)s AND id = %(id)s
"""

SELECT_REPLAYABLE: Final = """
SELECT id
FROM deliveries
WHERE namespace = %(namespace)s AND endpoint = %(endpoint)s
  AND status = ANY(%(statuses)s)
  AND created_at >= %(since)s
  AND (%(until)s::double precision IS NULL OR created_at < %(until)s)
ORDER BY id
"""

# One statement, so the numbers come from one snapshot.
QUEUE_STATS: Final = """
SELECT due.count, due.oldest,
    (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed')) AS scheduled,
    (SELECT count(*) FROM deliveries WHERE status = 'held') AS held
FROM (
    SELECT count(*) AS count, min(next_attempt_at) AS oldest
    FROM deliveries
    WHERE status IN ('pending', 'failed')
      AND next_attempt_at <= %(now)s
      AND (lease_until IS NULL OR lease_until <= %(now)s)
) AS due
"""

# Deliveries and attempts go with their event (ON DELETE CASCADE).
PURGE: Final = """
DELETE FROM events
WHERE created_at < %(before)s
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS d
      WHERE d.event_id = events.id AND d.status IN ('pending', 'failed', 'held')
  )
"""

Connection = AsyncConnection[TupleRow]


class PostgresStore:
    """`Store` on a PostgreSQL database that several replicas may share."""

    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
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
        async with self._connection() as conn:
            return await migrations.postgres_schema_version(conn)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open")
        async with self._pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncCursor[TupleRow]]:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    async def _fetchall(self, sql: str, params: dict[str, Any]) -> list[Row]:
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _fetchone(self, sql: str, params: dict[str, Any]) -> Row | None:
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def _rowcount(self, sql: str, params: dict[str, Any]) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    # -- events ---------------------------------------------------------------------------

    async def create_event(
        self, event: NewEvent, deliveries: list[NewDelivery], dedupe_window: float = 86400.0
    ) -> tuple[str, int, bool]:
        async with self._transaction() as cur:
            if event.idempotency_key is not None:
                earlier = await _find_duplicate(cur, event, event.idempotency_key, dedupe_window)
                if earlier is not None:
                    return earlier[0], earlier[1], True
            await cur.execute(INSERT_EVENT, event_params(event, len(deliveries)))
            if deliveries:
                await cur.executemany(
                    INSERT_DELIVERY, [delivery_params(event, d) for d in deliveries]
                )
            held = {
                (event.namespace, d.endpoint) for d in deliveries if d.status == DeliveryStatus.HELD
            }
            await self._touch(cur, held)
        return event.id, len(deliveries), False

    async def create_events(
        self, batch: list[tuple[NewEvent, list[NewDelivery]]], dedupe_window: float = 86400.0
    ) -> list[tuple[str, int, bool] | Exception]:
        # One transaction each: a batch would hold several idempotency-key locks at once,
        # and two replicas taking them in different orders could deadlock. An event that
        # cannot be written fails alone.
        outcomes: list[tuple[str, int, bool] | Exception] = []
        for event, deliveries in batch:
            try:
                outcomes.append(await self.create_event(event, deliveries, dedupe_window))
            except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
                outcomes.append(exc)
        return outcomes

    # -- claim and results ----------------------------------------------------------------

    async def claim(
        self, now: float, limit: int, lease_seconds: float, owner: str
    ) -> list[Claimed]:
        if limit <= 0:
            return []
        params = {"now": now, "limit": limit, "owner": owner, "lease_until": now + lease_seconds}
        rows = await self._fetchall(CLAIM, params)
        rows.sort(key=lambda row: (row[9], row[0]))
        return [Claimed(*row[:9]) for row in rows]  # CLAIM's first columns are Claimed's fields

    async def register_owner(self, owner: str, now: float) -> int:
        async with self._owner_guard:
            conn = await self._owner_session(owner)
            await conn.execute(REGISTER_OWNER, {"owner": owner, "now": now})
        # This session holds the name's lock and has claimed nothing yet: leases in this
        # name are a previous life's.
        return await self._rowcount(RELEASE_LEASES, {"owners": [owner]})

    async def heartbeat(self, owner: str, now: float, stale_after: float) -> Sweep:
        async with self._owner_guard:
            registered = await self._beat(owner, now)
        if not registered:
            log.warning(
                "owner %s had been presumed gone (no heartbeat for %gs): its claims were "
                "given back; registered again",
                owner,
                stale_after,
            )
        released = await self._reap(owner, now - stale_after)
        return Sweep(released=released, rejoined=not registered)

    async def release_owner(self, owner: str) -> int:
        async with self._transaction() as cur:
            await cur.execute(RELEASE_LEASES, {"owners": [owner]})
            released = cur.rowcount
            await cur.execute(UNREGISTER_OWNER, {"owner": owner})
        async with self._owner_guard:
            await self._end_owner_session()
        return released

    async def _beat(self, owner: str, now: float) -> bool:
        """Renew the heartbeat; False when the row was gone (re-registered now)."""
        params = {"owner": owner, "now": now}
        try:
            conn = await self._owner_session(owner)
            cur = await conn.execute(BEAT, params)
        except OperationalError:
            # The session ended (a database restart, the network): the lock went with it.
            # A new session takes it again; the row says whether anyone noticed meanwhile.
            log.warning("owner session of %s lost; opening a new one", owner, exc_info=True)
            await self._end_owner_session()
            conn = await self._owner_session(owner)
            cur = await conn.execute(BEAT, params)
        if cur.rowcount:
            return True
        await conn.execute(REGISTER_OWNER, params)
        return False

    async def _reap(self, owner: str, stale_before: float) -> int:
        async with self._transaction() as cur:
            await cur.execute(REAP_OWNERS, {"owner": owner, "stale_before": stale_before})
            gone = [row[0] for row in await cur.fetchall()]
            if not gone:
                return 0
            await cur.execute(RELEASE_LEASES, {"owners": gone})
            released = cur.rowcount
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
                cur = await conn.execute(LOCK_OWNER, {"owner": owner})
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

    async def finish_attempts(self, results: list[AttemptResult], now: float) -> None:
        if not results:
            return
        async with self._transaction() as cur:
            await cur.executemany(
                FINISH_DELIVERY, [finish_params(r, now) for r in results], returning=True
            )
            applied = await _returned_ids(cur)
            kept = [r for r in results if r.delivery_id in applied]
            if not kept:
                return
            await cur.executemany(INSERT_ATTEMPT, [attempt_params(r) for r in kept])
            await cur.execute(LOCK_VERSIONS)
            await cur.executemany(
                RECORD_ATTEMPT_STATE,
                [attempt_state_params(r, now) for r in endpoint_state_updates(kept)],
            )

    async def defer(self, delivery_ids: list[str], owner: str, until: float) -> None:
        if delivery_ids:
            await self._rowcount(DEFER, {"ids": delivery_ids, "owner": owner, "until": until})

    async def hold(self, delivery_ids: list[str], owner: str) -> None:
        if not delivery_ids:
            return
        async with self._transaction() as cur:
            await cur.execute(HOLD, {"ids": delivery_ids, "owner": owner})
            await self._touch(cur, {(row[0], row[1]) for row in await cur.fetchall()})

    async def release_held(self, namespace: str, endpoint: str, now: float) -> int:
        params = {"namespace": namespace, "endpoint": endpoint, "now": now}
        async with self._transaction() as cur:
            await cur.execute(RELEASE_HELD, params)
            released = cur.rowcount
            if released:
                await self._touch(cur, {(namespace, endpoint)})
        return released

    @staticmethod
    async def _touch(cur: Any, endpoints: set[tuple[str, str]]) -> None:
        if endpoints:
            await cur.execute(LOCK_VERSIONS)
            for namespace, endpoint in sorted(endpoints):
                await cur.execute(TOUCH_STATE, {"namespace": namespace, "endpoint": endpoint})

    async def endpoints_with_open_deliveries(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in await self._fetchall(OPEN_ENDPOINTS, {})]

    async def cancel_endpoint(self, namespace: str, endpoint: str, now: float) -> int:
        params = {"namespace": namespace, "endpoint": endpoint, "now": now}
        return await self._rowcount(CANCEL_ENDPOINT, params)

    # -- endpoint state -------------------------------------------------------------------

    async def set_disabled(
        self,
        namespace: str,
        endpoint: str,
        reason: str | None,
        now: float,
        enable_token: str | None = None,
    ) -> None:
        params: dict[str, Any] = {"namespace": namespace, "endpoint": endpoint}
        async with self._transaction() as cur:
            await cur.execute(LOCK_VERSIONS)
            if reason is not None:
                await cur.execute(DISABLE, {**params, "reason": reason, "now": now})
            else:
                await cur.execute(ENABLE, {**params, "enable_token": enable_token})

    async def endpoint_state(self, namespace: str, endpoint: str) -> EndpointState | None:
        row = await self._fetchone(SELECT_STATE, {"namespace": namespace, "endpoint": endpoint})
        return None if row is None else state_row(row)

    async def disabled_endpoints(self) -> list[EndpointState]:
        return [state_row(row) for row in await self._fetchall(SELECT_DISABLED, {})]

    async def stats_since(
        self, cursor: int, now: float, window: float = 86400.0
    ) -> tuple[list[EndpointState], int]:
        rows = await self._fetchall(SELECT_STATS, {"cursor": cursor, "since": now - window})
        states = [
            state_row(row[:12], dict(zip(STATE_COUNT_KEYS, row[12:], strict=True))) for row in rows
        ]
        return states, max((s.version for s in states), default=cursor)

    # -- reading deliveries ---------------------------------------------------------------

    async def list_deliveries(self, query: DeliveryQuery) -> tuple[list[DeliveryRow], str | None]:
        if query.limit < 1:
            raise ValueError("limit must be at least 1")
        filters, params = _list_filters(query)
        sql = LIST_DELIVERIES.format(filters=" AND ".join(filters))
        # One row more than asked says whether another page follows.
        rows = await self._fetchall(sql, {**params, "limit": query.limit + 1})
        page = [delivery_row(r) for r in rows[: query.limit]]
        return page, page[-1].id if len(rows) > query.limit else None

    async def get_delivery(self, namespace: str, delivery_id: str) -> DeliveryDetail | None:
        async with self._connection() as conn:
            cur = await conn.execute(SELECT_DELIVERY, {"namespace": namespace, "id": delivery_id})
            row = await cur.fetchone()
            if row is None:
                return None
            cur = await conn.execute(SELECT_ATTEMPTS, {"id": delivery_id})
            attempts = await cur.fetchall()
        return DeliveryDetail(delivery_row(row[:13]), [attempt_row(a) for a in attempts], row[13])

    async def activity(
        self, namespace: str, app: str, since: float, now: float, bucket: float = 3600.0
    ) -> list[ActivityBucket]:
        params = activity_params(namespace, app, since, now, bucket)
        rows = await self._fetchall(ACTIVITY, params)
        return activity_series(since, now, bucket, rows)

    # -- resend, replay, housekeeping -----------------------------------------------------

    async def resend(self, namespace: str, delivery_id: str, now: float, new_id: str) -> str | None:
        params = {"namespace": namespace, "id": delivery_id, "new_id": new_id, "now": now}
        return new_id if await self._rowcount(COPY_DELIVERY, params) else None

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
        params = {
            "namespace": namespace,
            "endpoint": endpoint,
            "since": since,
            "until": until,
            "statuses": [s.value for s in statuses],
        }
        async with self._transaction() as cur:
            await cur.execute(SELECT_REPLAYABLE, params)
            sources = [row[0] for row in await cur.fetchall()]
            if not sources:
                return 0
            targets = replay_ids(len(sources), now, new_ids)
            await cur.executemany(
                COPY_DELIVERY,
                [
                    {"namespace": namespace, "id": source, "new_id": target, "now": now}
                    for source, target in zip(sources, targets, strict=True)
                ],
            )
        return len(sources)

    async def queue_stats(self, now: float) -> QueueStats:
        row = await self._fetchone(QUEUE_STATS, {"now": now})
        assert row is not None  # an aggregate always answers one row
        return queue_stats(row, now)

    async def purge(self, before: float) -> int:
        return await self._rowcount(PURGE, {"before": before})


async def _find_duplicate(
    cur: AsyncCursor[TupleRow], event: NewEvent, key: str, window: float
) -> Row | None:
    """The earlier event with this key, if any; holds the key's lock until commit so a
    concurrent submission with the same key waits and then finds this one."""
    # Namespace and app names cannot contain "/", so the joined string is unambiguous.
    await cur.execute(LOCK_IDEMPOTENCY_KEY, {"lock_key": f"{event.namespace}/{event.app}/{key}"})
    params = {
        "namespace": event.namespace,
        "app": event.app,
        "key": key,
        "since": event.created_at - window,
    }
    await cur.execute(FIND_DUPLICATE, params)
    return await cur.fetchone()


async def _returned_ids(cur: AsyncCursor[TupleRow]) -> set[str]:
    """The ids an executemany(..., returning=True) of `... RETURNING id` gave back."""
    found: set[str] = set()
    while True:
        found.update(row[0] for row in await cur.fetchall())
        if not cur.nextset():
            return found


def _list_filters(query: DeliveryQuery) -> tuple[list[str], dict[str, Any]]:
    filters = ["d.namespace = %(namespace)s"]
    params: dict[str, Any] = {"namespace": query.namespace}
    if query.app is not None:
        filters.append("d.app = %(app)s")
        params["app"] = query.app
    if query.endpoint is not None:
        filters.append("d.endpoint = %(endpoint)s")
        params["endpoint"] = query.endpoint
    if query.cursor is not None:
        filters.append("d.id < %(cursor)s")
        params["cursor"] = query.cursor
    if query.statuses:
        filters.append("d.status = ANY(%(statuses)s)")
        params["statuses"] = [s.value for s in query.statuses]
    if query.event_types:
        filters.append("d.event_type = ANY(%(event_types)s)")
        params["event_types"] = list(query.event_types)
    return filters, params
