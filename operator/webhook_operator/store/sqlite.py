"""The SQLite store: the delivery service's storage when one replica runs.

sqlite3 is called straight from the async methods, with no thread hop: every call is one
short transaction on a local file (WAL, synchronous=NORMAL), which costs less than
handing it to a thread on a small machine. Because nothing awaits inside a transaction,
coroutines of this process cannot interleave within one, and `BEGIN IMMEDIATE` takes the
write lock up front so a transaction never fails half-way on a busy database.

One process claims from a file at a time: `register_owner` takes an exclusive lock on
`<file>.claim.lock` (flock, held until the store closes; the kernel drops it when the
process dies), and a second delivery service on the same file waits for it, saying so in
its log. So every lease found at registration was left by an earlier process that is gone
(killed mid-attempt, or stopped before it could give its claims back): all are given back
at once instead of waiting out `lease_until`. Other readers of the file (tools, tests)
take no lock. The lock is only as good as the file system's flock: keep the file on a
local volume, as SQLite itself requires."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from webhook_operator import ids
from webhook_operator.store import migrations
from webhook_operator.store.base import (
    ActivityBucket,
    AttemptResult,
    AttemptRow,
    Claimed,
    DeliveryDetail,
    DeliveryQuery,
    DeliveryRow,
    DeliveryStatus,
    EndpointState,
    NewDelivery,
    NewEvent,
    QueueStats,
    Sweep,
    activity_first_id,
    activity_series,
    endpoint_state_updates,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS: Final = 5000
# How often a second service retries the claim lock, and how often it says it is waiting.
CLAIM_LOCK_POLL: Final = 0.2
CLAIM_LOCK_LOG_EVERY: Final = 10.0

PRAGMAS: Final = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys = ON",
)

# -- events -----------------------------------------------------------------------------

FIND_DUPLICATE: Final = """
SELECT id, delivery_count
FROM events
WHERE namespace = :namespace
  AND app = :app
  AND idempotency_key = :key
  AND created_at >= :since
ORDER BY created_at DESC
LIMIT 1
"""

INSERT_EVENT: Final = """
INSERT INTO events (id, namespace, app, type, payload, idempotency_key, delivery_count, created_at)
VALUES (:id, :namespace, :app, :type, :payload, :idempotency_key, :delivery_count, :created_at)
"""

INSERT_DELIVERY: Final = """
INSERT INTO deliveries (
    id, event_id, namespace, app, endpoint, event_type, status, attempts,
    created_at, updated_at, next_attempt_at
)
VALUES (
    :id, :event_id, :namespace, :app, :endpoint, :event_type, :status, 0,
    :now, :now, :next_attempt_at
)
"""

# -- claim and results ------------------------------------------------------------------

# The status predicate repeats the deliveries_due index's word for word.
SELECT_DUE: Final = """
SELECT d.id, d.event_id, d.namespace, d.app, d.endpoint, e.type, e.payload, d.attempts,
       e.created_at
FROM deliveries AS d
JOIN events AS e ON e.id = d.event_id
WHERE d.status IN ('pending', 'failed')
  AND d.next_attempt_at <= :now
  AND (d.lease_until IS NULL OR d.lease_until <= :now)
ORDER BY d.next_attempt_at, d.id
LIMIT :limit
"""

TAKE_LEASE: Final = "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id = ?"

# Applies only while `owner` is still the lease holder (nobody claimed the delivery since,
# even if the lease ran out) and no later attempt was recorded.
FINISH_DELIVERY: Final = """
UPDATE deliveries
SET status = :status,
    attempts = :attempt,
    next_attempt_at = :next_attempt_at,
    last_http_status = :http_status,
    last_error = :error,
    updated_at = :now,
    lease_owner = NULL,
    lease_until = NULL
WHERE id = :delivery_id
  AND lease_owner = :owner
  AND attempts = :attempt - 1
  AND status IN ('pending', 'failed')
"""

INSERT_ATTEMPT: Final = """
INSERT INTO attempts (
    delivery_id, attempt, namespace, endpoint, started_at, duration_ms,
    http_status, error, response_snippet, success
)
VALUES (
    :delivery_id, :attempt, :namespace, :endpoint, :started_at, :duration_ms,
    :http_status, :error, :response_snippet, :success
)
"""

DEFER: Final = """
UPDATE deliveries
SET next_attempt_at = ?, lease_owner = NULL, lease_until = NULL
WHERE id = ? AND lease_owner = ? AND status IN ('pending', 'failed')
"""

HOLD: Final = """
UPDATE deliveries
SET status = 'held', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL
WHERE id = ? AND lease_owner = ? AND status IN ('pending', 'failed')
RETURNING namespace, endpoint
"""

# Every released delivery is due at the same moment, so claim's id tiebreak sends them
# oldest first.
RELEASE_HELD: Final = """
UPDATE deliveries
SET status = 'pending', next_attempt_at = :now, updated_at = :now
WHERE namespace = :namespace AND endpoint = :endpoint AND status = 'held'
"""

CANCEL_ENDPOINT: Final = """
UPDATE deliveries
SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,
    updated_at = :now
WHERE namespace = :namespace AND endpoint = :endpoint AND status IN ('pending', 'failed', 'held')
"""

# Endpoints that still have work queued: at start-up, those deleted meanwhile are cancelled.
OPEN_ENDPOINTS: Final = """
SELECT DISTINCT namespace, endpoint FROM deliveries
WHERE status IN ('pending', 'failed', 'held')
"""

# Leases exist only on open deliveries (every other transition clears them), and the status
# predicate repeats the deliveries_due index's, so these read that small index.
RELEASE_ALL_LEASES: Final = """
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
WHERE status IN ('pending', 'failed') AND lease_owner IS NOT NULL
"""

RELEASE_OWNER_LEASES: Final = """
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
WHERE status IN ('pending', 'failed') AND lease_owner = ?
"""

# -- endpoint state ---------------------------------------------------------------------

BUMP_VERSION: Final = "UPDATE endpoint_state_version SET value = value + 1"

# One attempt's outcome. The inserted row's consecutive_failures is 0 for a success and 1
# for a failure; an existing row resets or adds one. A disabled endpoint keeps the reason
# and time it was first disabled with.
RECORD_ATTEMPT_STATE: Final = """
INSERT INTO endpoint_states AS s (
    namespace, endpoint, version, last_delivery_time, last_success_time, last_failure_time,
    last_http_status, last_error, consecutive_failures, disabled_reason, disabled_at
)
VALUES (
    :namespace, :endpoint, (SELECT value FROM endpoint_state_version), :ended_at,
    :success_time, :failure_time, :http_status, :error, :failures, :disable_reason,
    :disabled_at
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
    :namespace, :endpoint, (SELECT value FROM endpoint_state_version), :reason, :now
)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    disabled_reason = excluded.disabled_reason,
    disabled_at = excluded.disabled_at
"""

# Without a new enable token, the one last acted on stays recorded.
ENABLE: Final = """
INSERT INTO endpoint_states AS s (namespace, endpoint, version, enable_token)
VALUES (:namespace, :endpoint, (SELECT value FROM endpoint_state_version), :enable_token)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    disabled_reason = NULL,
    disabled_at = NULL,
    consecutive_failures = 0,
    enable_token = coalesce(excluded.enable_token, s.enable_token)
"""

# Held or released deliveries change an endpoint's counts without an attempt: a new
# version makes stats_since report it (with a row, even before its first attempt).
TOUCH_STATE: Final = """
INSERT INTO endpoint_states AS s (namespace, endpoint, version)
VALUES (:namespace, :endpoint, (SELECT value FROM endpoint_state_version))
ON CONFLICT (namespace, endpoint) DO UPDATE SET version = excluded.version
"""

STATE_COLUMNS: Final = """
    s.namespace, s.endpoint, s.version, s.last_delivery_time, s.last_success_time,
    s.last_failure_time, s.last_http_status, s.last_error, s.consecutive_failures,
    s.disabled_reason, s.disabled_at, s.enable_token
"""

SELECT_STATE: Final = f"""
SELECT {STATE_COLUMNS}
FROM endpoint_states AS s
WHERE s.namespace = ? AND s.endpoint = ?
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
       AND d.status = 'delivered' AND d.updated_at >= :since) AS delivered,
    (SELECT count(*) FROM attempts AS a
     WHERE a.namespace = s.namespace AND a.endpoint = s.endpoint
       AND a.success = 0 AND a.started_at >= :since) AS failed,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'exhausted' AND d.updated_at >= :since) AS exhausted,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status IN ('pending', 'failed')) AS pending,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'held') AS held
FROM endpoint_states AS s
WHERE s.version > :cursor
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
LIMIT :limit
"""

SELECT_DELIVERY: Final = f"""
SELECT {DELIVERY_COLUMNS}, e.payload
FROM deliveries AS d
JOIN events AS e ON e.id = d.event_id
WHERE d.namespace = ? AND d.id = ?
"""

SELECT_ATTEMPTS: Final = """
SELECT attempt, started_at, duration_ms, http_status, error, response_snippet, success
FROM attempts
WHERE delivery_id = ?
ORDER BY attempt
"""

# An app's deliveries per bucket of creation time. The id bound lets the deliveries_app
# index (namespace, app, id) read only the window; created_at decides exactly.
ACTIVITY: Final = """
SELECT CAST((d.created_at - :since) / :bucket AS INTEGER) AS slot,
    sum(d.status = 'delivered') AS delivered,
    sum(d.status IN ('failed', 'exhausted')) AS failed
FROM deliveries AS d
WHERE d.namespace = :namespace AND d.app = :app AND d.id >= :first_id
  AND d.created_at >= :since AND d.created_at < :now
GROUP BY slot
"""

# -- resend, replay, housekeeping -------------------------------------------------------

COPY_DELIVERY: Final = """
INSERT INTO deliveries (
    id, event_id, namespace, app, endpoint, event_type, status, attempts,
    created_at, updated_at, next_attempt_at
)
SELECT :new_id, event_id, namespace, app, endpoint, event_type, 'pending', 0,
       :now, :now, :now
FROM deliveries
WHERE namespace = :namespace AND id = :id
"""

# {statuses} is a list of placeholders, one per requested status.
SELECT_REPLAYABLE: Final = """
SELECT id
FROM deliveries
WHERE namespace = :namespace AND endpoint = :endpoint
  AND status IN ({statuses})
  AND created_at >= :since
  AND (:until IS NULL OR created_at < :until)
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
      AND next_attempt_at <= :now
      AND (lease_until IS NULL OR lease_until <= :now)
) AS due
"""

# Deliveries and attempts go with their event (ON DELETE CASCADE).
PURGE: Final = """
DELETE FROM events
WHERE created_at < :before
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS d
      WHERE d.event_id = events.id AND d.status IN ('pending', 'failed', 'held')
  )
"""

STATE_COUNT_KEYS: Final = ("delivered", "failed", "exhausted", "pending", "held")


class SQLiteStore:
    """`Store` on one SQLite file, owned by a single process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._claim_lock: int | None = None  # fd of the held <file>.claim.lock

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE ... COMMIT below.
        conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        try:
            migrations.migrate_sqlite(conn)
        except BaseException:
            conn.close()
            raise
        self._db = conn

    async def close(self) -> None:
        self._unlock_claims()
        if self._db is not None:
            # SQLite never gathers planner statistics by itself; this refreshes stale ones.
            self._db.execute("PRAGMA optimize")
            self._db.close()
            self._db = None

    async def schema_version(self) -> int:
        return migrations.sqlite_schema_version(self._conn)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SQLiteStore is not open")
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at once."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- events ---------------------------------------------------------------------------

    async def create_event(
        self, event: NewEvent, deliveries: list[NewDelivery], dedupe_window: float = 86400.0
    ) -> tuple[str, int, bool]:
        (outcome,) = await self.create_events([(event, deliveries)], dedupe_window)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def create_events(
        self, batch: list[tuple[NewEvent, list[NewDelivery]]], dedupe_window: float = 86400.0
    ) -> list[tuple[str, int, bool] | Exception]:
        # One commit for the whole batch: the commit, not the inserts, is the cost. Each
        # event has its own savepoint, so one that cannot be written fails alone.
        outcomes: list[tuple[str, int, bool] | Exception] = []
        with self._write() as conn:
            for event, deliveries in batch:
                conn.execute("SAVEPOINT event")
                try:
                    outcomes.append(_insert_event(conn, event, deliveries, dedupe_window))
                except (sqlite3.DataError, sqlite3.IntegrityError, UnicodeEncodeError) as exc:
                    conn.execute("ROLLBACK TO event")
                    outcomes.append(exc)
                conn.execute("RELEASE event")
        return outcomes

    # -- claim and results ----------------------------------------------------------------

    async def claim(
        self, now: float, limit: int, lease_seconds: float, owner: str
    ) -> list[Claimed]:
        if limit <= 0:
            return []
        with self._write() as conn:
            rows = conn.execute(SELECT_DUE, {"now": now, "limit": limit}).fetchall()
            lease_until = now + lease_seconds
            conn.executemany(TAKE_LEASE, [(owner, lease_until, row[0]) for row in rows])
        return [Claimed(*row) for row in rows]  # SELECT_DUE's columns are Claimed's fields

    async def register_owner(self, owner: str, now: float) -> int:
        if self._claim_lock is None and self.path != ":memory:":
            self._claim_lock = await _lock_claims(f"{self.path}.claim.lock", owner)
        with self._write() as conn:
            return conn.execute(RELEASE_ALL_LEASES).rowcount

    async def heartbeat(self, owner: str, now: float, stale_after: float) -> Sweep:
        # Nobody else claims from this file, so there is nobody to renew for or take from.
        return Sweep(released=0)

    async def release_owner(self, owner: str) -> int:
        with self._write() as conn:
            released = conn.execute(RELEASE_OWNER_LEASES, (owner,)).rowcount
        self._unlock_claims()
        return released

    def _unlock_claims(self) -> None:
        if self._claim_lock is not None:
            os.close(self._claim_lock)  # closing the only descriptor drops the flock
            self._claim_lock = None

    async def finish_attempts(self, results: list[AttemptResult], now: float) -> None:
        if not results:
            return
        with self._write() as conn:
            kept = [
                r for r in results if conn.execute(FINISH_DELIVERY, finish_params(r, now)).rowcount
            ]
            if not kept:
                return
            conn.executemany(INSERT_ATTEMPT, [attempt_params(r) for r in kept])
            # One version for the whole batch: readers see the transaction whole or not at all.
            conn.execute(BUMP_VERSION)
            conn.executemany(
                RECORD_ATTEMPT_STATE,
                [attempt_state_params(r, now) for r in endpoint_state_updates(kept)],
            )

    async def defer(self, delivery_ids: list[str], owner: str, until: float) -> None:
        if not delivery_ids:
            return
        with self._write() as conn:
            conn.executemany(DEFER, [(until, i, owner) for i in delivery_ids])

    async def hold(self, delivery_ids: list[str], owner: str) -> None:
        if not delivery_ids:
            return
        with self._write() as conn:
            touched = {row for i in delivery_ids for row in conn.execute(HOLD, (i, owner))}
            _touch(conn, touched)

    async def release_held(self, namespace: str, endpoint: str, now: float) -> int:
        params = {"namespace": namespace, "endpoint": endpoint, "now": now}
        with self._write() as conn:
            released: int = conn.execute(RELEASE_HELD, params).rowcount
            if released:
                _touch(conn, {(namespace, endpoint)})
            return released

    async def endpoints_with_open_deliveries(self) -> list[tuple[str, str]]:
        return [(ns, ep) for ns, ep in self._conn.execute(OPEN_ENDPOINTS)]

    async def cancel_endpoint(self, namespace: str, endpoint: str, now: float) -> int:
        params = {"namespace": namespace, "endpoint": endpoint, "now": now}
        with self._write() as conn:
            return conn.execute(CANCEL_ENDPOINT, params).rowcount

    # -- endpoint state -------------------------------------------------------------------

    async def set_disabled(
        self,
        namespace: str,
        endpoint: str,
        reason: str | None,
        now: float,
        enable_token: str | None = None,
    ) -> None:
        with self._write() as conn:
            conn.execute(BUMP_VERSION)
            if reason is not None:
                params = {"namespace": namespace, "endpoint": endpoint, "reason": reason}
                conn.execute(DISABLE, {**params, "now": now})
            else:
                params = {"namespace": namespace, "endpoint": endpoint}
                conn.execute(ENABLE, {**params, "enable_token": enable_token})

    async def endpoint_state(self, namespace: str, endpoint: str) -> EndpointState | None:
        row = self._conn.execute(SELECT_STATE, (namespace, endpoint)).fetchone()
        return None if row is None else state_row(row)

    async def disabled_endpoints(self) -> list[EndpointState]:
        return [state_row(row) for row in self._conn.execute(SELECT_DISABLED)]

    async def stats_since(
        self, cursor: int, now: float, window: float = 86400.0
    ) -> tuple[list[EndpointState], int]:
        rows = self._conn.execute(SELECT_STATS, {"cursor": cursor, "since": now - window})
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
        rows = [
            delivery_row(r) for r in self._conn.execute(sql, {**params, "limit": query.limit + 1})
        ]
        page = rows[: query.limit]
        return page, page[-1].id if len(rows) > query.limit else None

    async def get_delivery(self, namespace: str, delivery_id: str) -> DeliveryDetail | None:
        row = self._conn.execute(SELECT_DELIVERY, (namespace, delivery_id)).fetchone()
        if row is None:
            return None
        attempts = self._conn.execute(SELECT_ATTEMPTS, (delivery_id,)).fetchall()
        return DeliveryDetail(delivery_row(row[:13]), [attempt_row(a) for a in attempts], row[13])

    async def activity(
        self, namespace: str, app: str, since: float, now: float, bucket: float = 3600.0
    ) -> list[ActivityBucket]:
        rows = self._conn.execute(ACTIVITY, activity_params(namespace, app, since, now, bucket))
        return activity_series(since, now, bucket, rows)

    # -- resend, replay, housekeeping -----------------------------------------------------

    async def resend(self, namespace: str, delivery_id: str, now: float, new_id: str) -> str | None:
        params = {"namespace": namespace, "id": delivery_id, "new_id": new_id, "now": now}
        with self._write() as conn:
            copied = conn.execute(COPY_DELIVERY, params).rowcount
        return new_id if copied else None

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
        placeholders = ", ".join(f":status{i}" for i in range(len(statuses)))
        sql = SELECT_REPLAYABLE.format(statuses=placeholders)
        params: dict[str, Any] = {
            "namespace": namespace,
            "endpoint": endpoint,
            "since": since,
            "until": until,
        }
        params.update({f"status{i}": s.value for i, s in enumerate(statuses)})
        with self._write() as conn:
            sources = [row[0] for row in conn.execute(sql, params)]
            targets = replay_ids(len(sources), now, new_ids)
            conn.executemany(
                COPY_DELIVERY,
                [
                    {"namespace": namespace, "id": source, "new_id": target, "now": now}
                    for source, target in zip(sources, targets, strict=True)
                ],
            )
        return len(sources)

    async def queue_stats(self, now: float) -> QueueStats:
        return queue_stats(self._conn.execute(QUEUE_STATS, {"now": now}).fetchone(), now)

    async def purge(self, before: float) -> int:
        with self._write() as conn:
            deleted = conn.execute(PURGE, {"before": before}).rowcount
        # Housekeeping runs rarely and follows big changes: a good time to refresh the
        # planner statistics a long-running service would otherwise never update.
        self._conn.execute("PRAGMA optimize")
        return deleted


# -- parameters and rows ----------------------------------------------------------------
# Shared with the PostgreSQL store: both schemas have the same columns, and both drivers
# take the same named parameters.


def event_params(event: NewEvent, delivery_count: int) -> dict[str, Any]:
    return {
        "id": event.id,
        "namespace": event.namespace,
        "app": event.app,
        "type": event.type,
        "payload": event.payload,
        "idempotency_key": event.idempotency_key,
        "delivery_count": delivery_count,
        "created_at": event.created_at,
    }


def delivery_params(event: NewEvent, delivery: NewDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": event.id,
        "namespace": event.namespace,
        "app": event.app,
        "endpoint": delivery.endpoint,
        "event_type": event.type,
        "status": delivery.status.value,
        "now": event.created_at,
        "next_attempt_at": delivery.next_attempt_at,
    }


def finish_params(result: AttemptResult, now: float) -> dict[str, Any]:
    return {
        "delivery_id": result.delivery_id,
        "owner": result.owner,
        "attempt": result.attempt,
        "status": result.status.value,
        "next_attempt_at": result.next_attempt_at,
        "http_status": result.http_status,
        "error": result.error,
        "now": now,
    }


def attempt_params(result: AttemptResult) -> dict[str, Any]:
    return {
        "delivery_id": result.delivery_id,
        "attempt": result.attempt,
        "namespace": result.namespace,
        "endpoint": result.endpoint,
        "started_at": result.started_at,
        "duration_ms": result.duration_ms,
        "http_status": result.http_status,
        "error": result.error,
        "response_snippet": result.response_snippet,
        "success": result.success,
    }


def attempt_state_params(result: AttemptResult, now: float) -> dict[str, Any]:
    # Endpoint times are when the attempt ended.
    ended_at = result.started_at + result.duration_ms / 1000
    return {
        "namespace": result.namespace,
        "endpoint": result.endpoint,
        "ended_at": ended_at,
        "success_time": ended_at if result.success else None,
        "failure_time": None if result.success else ended_at,
        "http_status": result.http_status,
        "error": result.error,
        "failures": 0 if result.success else 1,
        "disable_reason": result.disable_reason,
        "disabled_at": now if result.disable_reason else None,
    }


def activity_params(
    namespace: str, app: str, since: float, now: float, bucket: float
) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "app": app,
        "since": since,
        "now": now,
        "bucket": bucket,
        "first_id": activity_first_id(since),
    }


def _list_filters(query: DeliveryQuery) -> tuple[list[str], dict[str, Any]]:
    filters = ["d.namespace = :namespace"]
    params: dict[str, Any] = {"namespace": query.namespace}
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
        names = [f"status{i}" for i in range(len(query.statuses))]
        filters.append(f"d.status IN ({', '.join(':' + n for n in names)})")
        params.update({n: s.value for n, s in zip(names, query.statuses, strict=True)})
    if query.event_types:
        names = [f"type{i}" for i in range(len(query.event_types))]
        filters.append(f"d.event_type IN ({', '.join(':' + n for n in names)})")
        params.update(dict(zip(names, query.event_types, strict=True)))
    return filters, params


def queue_stats(row: Sequence[Any], now: float) -> QueueStats:
    due, oldest, scheduled, held = row
    age = max(now - oldest, 0.0) if oldest is not None else 0.0
    return QueueStats(due=due, oldest_due_age=age, scheduled=scheduled, held=held)


def replay_ids(count: int, now: float, new_ids: list[str] | None) -> list[str]:
    if new_ids is None:
        # Sorted, so the copies keep their originals' order within the same millisecond.
        return sorted(ids.delivery_id(now) for _ in range(count))
    if len(new_ids) < count:
        raise ValueError(f"replay needs {count} new ids, got {len(new_ids)}")
    return new_ids[:count]


def delivery_row(row: Sequence[Any]) -> DeliveryRow:
    return DeliveryRow(
        id=row[0],
        event_id=row[1],
        namespace=row[2],
        app=row[3],
        endpoint=row[4],
        event_type=row[5],
        status=DeliveryStatus(row[6]),
        attempts=row[7],
        created_at=row[8],
        updated_at=row[9],
        next_attempt_at=row[10],
        last_http_status=row[11],
        last_error=row[12],
    )


def attempt_row(row: Sequence[Any]) -> AttemptRow:
    return AttemptRow(
        attempt=row[0],
        started_at=row[1],
        duration_ms=row[2],
        http_status=row[3],
        error=row[4],
        response_snippet=row[5],
        success=bool(row[6]),
    )


def state_row(row: Sequence[Any], counts: dict[str, int] | None = None) -> EndpointState:
    return EndpointState(
        namespace=row[0],
        endpoint=row[1],
        version=row[2],
        last_delivery_time=row[3],
        last_success_time=row[4],
        last_failure_time=row[5],
        last_http_status=row[6],
        last_error=row[7],
        consecutive_failures=row[8],
        disabled_reason=row[9],
        disabled_at=row[10],
        enable_token=row[11],
        counts=counts or {},
    )


async def _lock_claims(path: str, owner: str) -> int:
    """An exclusive flock on `path`, waited for as long as another process holds it;
    returns the descriptor that holds it. The holder writes its name into the file so a
    waiting process can say whom it waits for."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        waited, next_log = 0.0, 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited >= next_log:
                    holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
                    log.warning(
                        "waiting %.0fs so far for %s: another delivery service (%s) is "
                        "claiming deliveries from this SQLite file; one process at a time may",
                        waited,
                        path,
                        holder,
                    )
                    next_log += CLAIM_LOCK_LOG_EVERY
                await asyncio.sleep(CLAIM_LOCK_POLL)
                waited += CLAIM_LOCK_POLL
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"owner {owner}, pid {os.getpid()}\n".encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _insert_event(
    conn: sqlite3.Connection, event: NewEvent, deliveries: list[NewDelivery], window: float
) -> tuple[str, int, bool]:
    if event.idempotency_key is not None:
        earlier = conn.execute(
            FIND_DUPLICATE,
            {
                "namespace": event.namespace,
                "app": event.app,
                "key": event.idempotency_key,
                "since": event.created_at - window,
            },
        ).fetchone()
        if earlier is not None:
            return earlier[0], earlier[1], True
    conn.execute(INSERT_EVENT, event_params(event, len(deliveries)))
    conn.executemany(INSERT_DELIVERY, [delivery_params(event, d) for d in deliveries])
    _touch(
        conn, {(event.namespace, d.endpoint) for d in deliveries if d.status == DeliveryStatus.HELD}
    )
    return event.id, len(deliveries), False


def _touch(conn: sqlite3.Connection, endpoints: set[tuple[str, str]]) -> None:
    """A new version for endpoints whose held deliveries changed (see TOUCH_STATE)."""
    if endpoints:
        conn.execute(BUMP_VERSION)
        conn.executemany(
            TOUCH_STATE, [{"namespace": ns, "endpoint": ep} for ns, ep in sorted(endpoints)]
        )
