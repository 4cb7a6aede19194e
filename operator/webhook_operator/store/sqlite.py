"""The SQLite store: the delivery service's storage when one replica runs. What it does
is `core.StoreCore`, as for PostgreSQL; this is its connector, and `sql/sqlite.sql`
holds the statements only SQLite runs.

sqlite3 is called straight from the async methods, with no thread hop: every call is one
short transaction on a local file (WAL, synchronous=NORMAL), which costs less than
handing it to a thread on a small machine. The connector's statement methods are
coroutines that never suspend, so nothing awaits inside a transaction: coroutines of this
process cannot interleave within one, and `BEGIN IMMEDIATE` takes the write lock up front
so a transaction never fails half-way on a busy database.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

import orjson

from webhook_operator.store import migrations, queries
from webhook_operator.store.base import UNAVAILABLE, Sweep
from webhook_operator.store.core import DialectQueries, StoreCore
from webhook_operator.store.rows import Params, Row
from webhook_operator.store.sqlite_wal import WalCheckpointer

log = logging.getLogger(__name__)
UNAVAILABLE.append(sqlite3.OperationalError)  # locked past the busy timeout

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


@dataclass(frozen=True)
class SQLiteQueries(DialectQueries):
    """The statements of sql/sqlite.sql (see there)."""

    select_due: str
    take_lease: str
    release_all_leases: str
    release_owner_leases: str
    release_all_slots: str
    release_owner_slots: str
    insert_event: str
    insert_delivery: str
    finish_delivery: str
    insert_attempt: str


QUERIES: Final = queries.bind(SQLiteQueries, queries.load("sqlite", queries.NAMED))


class SQLiteStore(StoreCore):
    """`Store` on one SQLite file, owned by a single process. `:memory:` gives a private
    in-memory database (fast unit tests of what uses a store)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sqlite = SQLiteConnector(path)
        super().__init__(self.sqlite)

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.sqlite.conn


class SQLiteConnector:
    """The SQLite file as `core.Connector`: statements run on one connection, in
    autocommit mode, with explicit `BEGIN IMMEDIATE ... COMMIT` transactions."""

    paramstyle: ClassVar[queries.Paramstyle] = queries.NAMED
    refused: ClassVar[tuple[type[Exception], ...]] = (
        sqlite3.DataError,
        sqlite3.IntegrityError,
        UnicodeEncodeError,
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.q = QUERIES
        self._db: sqlite3.Connection | None = None
        self._claim_lock: int | None = None  # fd of the held <file>.claim.lock
        self._checkpointer: WalCheckpointer | None = None

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
        if self.path != ":memory:":
            # Checkpoints happen off the event loop (sqlite_wal.py), never in a COMMIT.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpointer = WalCheckpointer(self.path, self._checkpoint)
            self._checkpointer.start()

    def _checkpoint(self) -> tuple[int, int]:
        _, logged, copied = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(logged), int(copied)

    async def close(self) -> None:
        self._unlock_claims()
        if self._checkpointer is not None:
            await self._checkpointer.stop()
            self._checkpointer = None
        if self._db is not None:
            # SQLite never gathers planner statistics by itself; this refreshes stale ones.
            self._db.execute("PRAGMA optimize")
            self._db.close()
            self._db = None

    async def schema_version(self) -> int:
        return migrations.sqlite_schema_version(self.conn)

    async def refresh_statistics(self) -> None:
        self.conn.execute("PRAGMA optimize")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SQLiteStore is not open")
        return self._db

    # -- statements (core.Tx): straight on the connection, never suspending --------------

    async def execute(self, sql: str, params: Params) -> int:
        return self.conn.execute(sql, params).rowcount

    async def executemany(self, sql: str, params: Sequence[Params]) -> None:
        self.conn.executemany(sql, params)

    async def fetchone(self, sql: str, params: Params) -> Row | None:
        row: Row | None = self.conn.execute(sql, params).fetchone()
        return row

    async def fetchall(self, sql: str, params: Params) -> list[Row]:
        return self.conn.execute(sql, params).fetchall()

    async def execute_each(self, sql: str, params: Sequence[Params]) -> list[int]:
        conn = self.conn
        return [conn.execute(sql, p).rowcount for p in params]

    async def fetch_each(self, sql: str, params: Sequence[Params]) -> list[list[Row]]:
        conn = self.conn
        return [conn.execute(sql, p).fetchall() for p in params]

    # -- transactions ---------------------------------------------------------------------

    def connection(self) -> _Connection:
        return _Connection(self)

    def transaction(self) -> _Write:
        """One write transaction, taking the write lock at once."""
        return _Write(self)

    async def add_events(self, tx: object, events: list[Params], deliveries: list[Params]) -> None:
        if tx is None:
            async with self.transaction():
                await self.add_events(self, events, deliveries)
            return
        self.conn.executemany(self.q.insert_event, events)
        self.conn.executemany(self.q.insert_delivery, deliveries)

    async def finish(
        self, tx: object, finishes: list[Params], attempts: list[Params]
    ) -> list[bool]:
        conn = self.conn
        applied = [conn.execute(self.q.finish_delivery, p).rowcount > 0 for p in finishes]
        conn.executemany(
            self.q.insert_attempt, [a for a, kept in zip(attempts, applied, strict=True) if kept]
        )
        return applied

    async def next_version(self, tx: object) -> int:
        # The connection is the transaction: one writer at a time.
        version: int = self.conn.execute(self.q.next_version).fetchone()[0]
        return version

    async def lock_endpoint_slots(self, tx: object, key: str) -> None:
        """Nothing to lock, as for idempotency keys."""

    async def lock_idempotency_keys(self, tx: object, keys: list[str]) -> None:
        """Nothing to lock: the write transaction already excludes every other writer."""

    # -- claims and their owner -----------------------------------------------------------

    async def claim(self, now: float, limit: int, lease_until: float, owner: str) -> list[Row]:
        async with self.transaction():
            conn = self.conn
            rows = conn.execute(self.q.select_due, {"now": now, "limit": limit}).fetchall()
            if rows:
                ids = orjson.dumps([row[0] for row in rows]).decode()
                params = {"owner": owner, "lease_until": lease_until, "ids": ids}
                conn.execute(self.q.take_lease, params)
        return rows

    async def register_owner(self, owner: str, now: float) -> int:
        if self._claim_lock is None and self.path != ":memory:":
            self._claim_lock = await _lock_claims(f"{self.path}.claim.lock", owner)
        async with self.transaction():
            await self.execute(self.q.release_all_slots, {})
            return await self.execute(self.q.release_all_leases, {})

    async def heartbeat(self, owner: str, now: float, stale_after: float) -> Sweep:
        # Nobody else claims from this file, so there is nobody to renew for or take from.
        return Sweep(released=0)

    async def release_owner(self, owner: str) -> int:
        async with self.transaction():
            await self.execute(self.q.release_owner_slots, {"owner": owner})
            released = await self.execute(self.q.release_owner_leases, {"owner": owner})
        self._unlock_claims()
        return released

    def _unlock_claims(self) -> None:
        if self._claim_lock is not None:
            os.close(self._claim_lock)  # closing the only descriptor drops the flock
            self._claim_lock = None


class _Scope:
    """`async with` on the connection, running `begin` on entry. Classes, not generator
    context managers: one is entered on every claim, result and ingest batch."""

    begin = ""

    def __init__(self, db: SQLiteConnector) -> None:
        self.db = db

    async def __aenter__(self) -> SQLiteConnector:
        if self.begin:
            self.db.conn.execute(self.begin)
        return self.db

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        return None


class _Connection(_Scope):
    """`connection()`: the one connection, each statement its own transaction."""


class _Write(_Scope):
    """A write transaction holding the file's write lock from the start; ROLLBACK on an
    exception."""

    begin = "BEGIN IMMEDIATE"

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        conn = self.db.conn
        try:
            if exc_type is None:
                conn.execute("COMMIT")
                return
        except BaseException:
            _rollback(conn)
            raise
        _rollback(conn)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


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
