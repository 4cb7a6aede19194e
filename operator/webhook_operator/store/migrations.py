"""Versioned schema migrations for both store backends.

The schema lives in SQL files, `migrations/<dialect>/NNNN_name.sql`, read as package
data. `schema_migrations(version, applied_at)` records what a database has; opening a
store applies the missing files in version order, each in its own transaction together
with its `schema_migrations` row, so a file is applied exactly once or not at all.
PostgreSQL replicas that start together serialize on an advisory lock while migrating.

A SQLite file that changes a table SQLite cannot ALTER (a CHECK constraint, say) rebuilds
it: create the new table, copy, drop the old one, rename, recreate its indexes
(https://sqlite.org/lang_altertable.html#otheralter). Dropping a table other tables
reference would delete their rows through ON DELETE CASCADE while foreign keys are
enforced, and the pragma that stops enforcement is ignored inside a transaction. Such a
file starts with the line `-- rebuilds tables` (REBUILDS): the runner turns enforcement
off before its transaction, checks every foreign key before committing, and turns it
back on after.

The SQL directory deliberately has no `__init__.py`: a regular package of that name
would shadow this module."""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from psycopg import AsyncConnection


SQLITE: Final = "sqlite"
POSTGRES: Final = "postgres"

CREATE_SCHEMA_MIGRATIONS: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    applied_at double precision NOT NULL
)
"""

SELECT_APPLIED: Final = "SELECT version FROM schema_migrations"
SELECT_SCHEMA_VERSION: Final = "SELECT coalesce(max(version), 0) FROM schema_migrations"
SQLITE_RECORD: Final = "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"
POSTGRES_RECORD: Final = "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)"

# Session-level advisory lock held while migrating ("webhook" in ASCII); any constant
# works as long as nothing else in the database uses it.
POSTGRES_LOCK_ID: Final = 0x776562686F6F6B

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")

# The first line of a SQLite migration that drops and recreates referenced tables.
REBUILDS: Final = "-- rebuilds tables"


class ForeignKeyViolation(RuntimeError):
    """A table rebuild left rows whose references point nowhere; nothing was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def rebuilds(self) -> bool:
        return self.sql.startswith(REBUILDS)


def load(dialect: str) -> list[Migration]:
    """The dialect's migration files in version order."""
    folder = resources.files("webhook_operator.store").joinpath("migrations", dialect)
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two {dialect} migrations with version {version}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    if not found:
        raise RuntimeError(f"no {dialect} migrations found in {folder}")
    return [found[v] for v in sorted(found)]


def latest_version(dialect: str) -> int:
    return load(dialect)[-1].version


# -- SQLite -----------------------------------------------------------------------------


def migrate_sqlite(conn: sqlite3.Connection, up_to: int | None = None) -> int:
    """Apply pending migrations (those up to version `up_to` only, when given: a database
    as an older release left it); returns the schema version. `conn` must be in
    autocommit mode (isolation_level=None) and outside a transaction."""
    conn.execute(CREATE_SCHEMA_MIGRATIONS)
    applied = {row[0] for row in conn.execute(SELECT_APPLIED)}
    for migration in load(SQLITE):
        if up_to is not None and migration.version > up_to:
            break
        if migration.version not in applied:
            _apply_sqlite(conn, migration)
    return sqlite_schema_version(conn)


def _apply_sqlite(conn: sqlite3.Connection, migration: Migration) -> None:
    enforced = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
    if migration.rebuilds and enforced:
        conn.execute("PRAGMA foreign_keys = OFF")
    # executescript commits any open transaction before it runs, so the BEGIN goes into
    # the script; the transaction is still open when it returns.
    try:
        conn.executescript(f"BEGIN IMMEDIATE;\n{migration.sql}")
        if migration.rebuilds:
            _check_foreign_keys(conn, migration)
        conn.execute(SQLITE_RECORD, (migration.version, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        if migration.rebuilds and enforced:
            conn.execute("PRAGMA foreign_keys = ON")


def _check_foreign_keys(conn: sqlite3.Connection, migration: Migration) -> None:
    """What enforcement would have refused during the rebuild, refused now, before the
    commit (https://sqlite.org/pragma.html#pragma_foreign_key_check)."""
    broken = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
    if broken:
        raise ForeignKeyViolation(
            f"migration {migration.version:04d}_{migration.name} leaves rows with broken"
            f" references (table, rowid, referenced table, key): {broken}"
        )


def sqlite_schema_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute(SELECT_SCHEMA_VERSION).fetchone()[0]
    return version


# -- PostgreSQL -------------------------------------------------------------------------


async def migrate_postgres(conn: AsyncConnection[Any], up_to: int | None = None) -> int:
    """Apply pending migrations (up to version `up_to` only, when given); returns the
    schema version. `conn` must be in autocommit mode. Holds the migration lock
    throughout, so a second replica waits, then finds nothing left to do."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (POSTGRES_LOCK_ID,))
    try:
        await conn.execute(CREATE_SCHEMA_MIGRATIONS)
        cur = await conn.execute(SELECT_APPLIED)
        applied = {row[0] for row in await cur.fetchall()}
        for migration in load(POSTGRES):
            if up_to is not None and migration.version > up_to:
                break
            if migration.version not in applied:
                await _apply_postgres(conn, migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (POSTGRES_LOCK_ID,))
    return await postgres_schema_version(conn)


async def _apply_postgres(conn: AsyncConnection[Any], migration: Migration) -> None:
    async with conn.transaction():
        # As bytes: the query is a file's text, not a literal. Without parameters psycopg
        # sends it as one simple query, so a file may hold several statements.
        await conn.execute(migration.sql.encode())
        await conn.execute(POSTGRES_RECORD, (migration.version, time.time()))


async def postgres_schema_version(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute(SELECT_SCHEMA_VERSION)
    row = await cur.fetchone()
    return int(row[0]) if row else 0
