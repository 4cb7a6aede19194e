"""Both migration sets make the same schema.

The store's statements are written once (store/sql/queries.sql) for two schemas, each
built by its own migrations (store/migrations/sqlite, store/migrations/postgres). This
migrates a SQLite file and a PostgreSQL database the way the stores open them, reads
back what each has (tables, columns, column types by family, nullability, primary keys,
indexes with their columns, foreign keys) and compares. The differences that are meant
are listed below, each with its reason; anything else fails, so a column or an index
added to one set only is caught here rather than by a statement failing at run time."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests import pg
from webhook_operator.store import migrations
from webhook_operator.store.postgres import PostgresStore
from webhook_operator.store.sqlite import SQLiteStore

# Tables only one database has, and why.
ONLY_SQLITE = {
    # SQLite has no sequences: the endpoint-state version is a one-row counter table
    # (PostgreSQL: the sequence of the same name, checked below).
    "endpoint_state_version",
}
ONLY_POSTGRES = {
    # Replicas' claim owners and heartbeats; on SQLite one process claims from a file,
    # under a file lock, so there is no owner to record.
    "lease_owners",
}
# Columns whose families differ on purpose: (table, column) -> (SQLite, PostgreSQL).
FAMILY_EXCEPTIONS = {
    # SQLite has no boolean type: 0/1 in an INTEGER column.
    ("attempts", "success"): ("integer", "boolean"),
}


@dataclass(frozen=True)
class Column:
    family: str
    not_null: bool


@dataclass(frozen=True)
class Index:
    table: str
    columns: tuple[str, ...]
    unique: bool
    partial: bool


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    references: str  # table.column
    on_delete: str


@dataclass
class Schema:
    columns: dict[str, dict[str, Column]]  # table -> column -> Column
    primary_keys: dict[str, tuple[str, ...]]
    indexes: dict[str, Index]  # by name, primary keys not included
    foreign_keys: set[ForeignKey]


# -- reading SQLite ---------------------------------------------------------------------


def sqlite_family(declared: str) -> str:
    """SQLite's own affinity rules (https://sqlite.org/datatype3.html, 3.1), named as
    the families below."""
    name = declared.upper()
    if "INT" in name:
        return "integer"
    if any(word in name for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in name or not name:
        return "blob"
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "numeric"


def read_sqlite(path: Path) -> Schema:
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        schema = Schema({}, {}, {}, set())
        for table in tables:
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            # A primary key column is NOT NULL in PostgreSQL; SQLite's text primary keys
            # accept NULL only through a historical quirk the store never relies on.
            schema.columns[table] = {
                name: Column(sqlite_family(declared), bool(not_null or pk))
                for _, name, declared, not_null, _, pk in info
            }
            keyed = sorted((pk, name) for _, name, _, _, _, pk in info if pk)
            schema.primary_keys[table] = tuple(name for _, name in keyed)
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                if origin == "pk":
                    continue
                columns = tuple(row[2] for row in conn.execute(f"PRAGMA index_info({name})"))
                schema.indexes[name] = Index(table, columns, bool(unique), bool(partial))
            for row in conn.execute(f"PRAGMA foreign_key_list({table})"):
                _, _, target, column, target_column, _, on_delete, _ = row
                schema.foreign_keys.add(
                    ForeignKey(table, column, f"{target}.{target_column}", on_delete.lower())
                )
    return schema


# -- reading PostgreSQL -----------------------------------------------------------------

PG_FAMILIES = {
    "text": "text",
    "character varying": "text",
    "integer": "integer",
    "bigint": "integer",
    "smallint": "integer",
    "double precision": "real",
    "real": "real",
    "numeric": "numeric",
    "boolean": "boolean",
    "bytea": "blob",
}

PG_COLUMNS = """
SELECT table_name, column_name, data_type, is_nullable
FROM information_schema.columns
WHERE table_schema = 'public'
"""

PG_INDEXES = """
SELECT t.relname, i.relname, ix.indisprimary, ix.indisunique, ix.indpred IS NOT NULL,
       array_agg(a.attname ORDER BY k.ord)
FROM pg_index AS ix
JOIN pg_class AS i ON i.oid = ix.indexrelid
JOIN pg_class AS t ON t.oid = ix.indrelid
JOIN pg_namespace AS n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = 'public'
GROUP BY t.relname, i.relname, ix.indisprimary, ix.indisunique, ix.indpred IS NOT NULL
"""

PG_FOREIGN_KEYS = """
SELECT src.relname, a.attname, dst.relname, af.attname, c.confdeltype
FROM pg_constraint AS c
JOIN pg_class AS src ON src.oid = c.conrelid
JOIN pg_class AS dst ON dst.oid = c.confrelid
CROSS JOIN LATERAL unnest(c.conkey, c.confkey) AS k(col, ref)
JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.col
JOIN pg_attribute AS af ON af.attrelid = c.confrelid AND af.attnum = k.ref
WHERE c.contype = 'f'
"""

# pg_constraint.confdeltype, in SQLite's words.
PG_ON_DELETE = {
    "a": "no action",
    "r": "restrict",
    "c": "cascade",
    "n": "set null",
    "d": "set default",
}


def read_postgres(dsn: str) -> tuple[Schema, set[str]]:
    """The schema, and the names of the sequences."""
    schema = Schema({}, {}, {}, set())
    with psycopg.connect(dsn) as conn:
        for table, column, data_type, nullable in conn.execute(PG_COLUMNS):
            family = PG_FAMILIES.get(data_type, data_type)
            schema.columns.setdefault(table, {})[column] = Column(family, nullable == "NO")
        for table, name, primary, unique, partial, columns in conn.execute(PG_INDEXES):
            if primary:
                schema.primary_keys[table] = tuple(columns)
            else:
                schema.indexes[name] = Index(table, tuple(columns), unique, partial)
        for table, column, target, target_column, on_delete in conn.execute(PG_FOREIGN_KEYS):
            schema.foreign_keys.add(
                ForeignKey(table, column, f"{target}.{target_column}", PG_ON_DELETE[on_delete])
            )
        sequences = {
            name
            for (name,) in conn.execute(
                "SELECT sequence_name FROM information_schema.sequences"
                " WHERE sequence_schema = 'public'"
            )
        }
    for table in schema.columns:
        schema.primary_keys.setdefault(table, ())
    return schema, sequences


# -- the comparison ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def schemas(
    postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Schema, Schema, set[str]]]:
    """Both stores' schemas, each made by opening a store on an empty database."""
    path = tmp_path_factory.mktemp("schema") / "store.db"
    dsn = pg.create_database(postgres_dsn, "store_schema")
    try:
        for store in (SQLiteStore(str(path)), PostgresStore(dsn)):
            asyncio.run(_open_and_close(store))
        postgres, sequences = read_postgres(dsn)
        yield read_sqlite(path), postgres, sequences
    finally:
        pg.drop_database(postgres_dsn, dsn)


async def _open_and_close(store: SQLiteStore | PostgresStore) -> None:
    await store.open()
    await store.close()


def test_the_same_tables(schemas: tuple[Schema, Schema, set[str]]) -> None:
    sqlite, postgres, sequences = schemas
    assert set(sqlite.columns) - set(postgres.columns) == ONLY_SQLITE
    assert set(postgres.columns) - set(sqlite.columns) == ONLY_POSTGRES
    assert "endpoint_state_version" in sequences  # SQLite's counter table, as a sequence
    assert {"events", "deliveries", "attempts", "endpoint_states"} <= set(sqlite.columns)


def test_the_same_columns_types_and_nullability(
    schemas: tuple[Schema, Schema, set[str]],
) -> None:
    sqlite, postgres, _ = schemas
    for table in set(sqlite.columns) & set(postgres.columns):
        assert sorted(sqlite.columns[table]) == sorted(postgres.columns[table]), table
        for name, mine in sqlite.columns[table].items():
            theirs = postgres.columns[table][name]
            families = (mine.family, theirs.family)
            expected = FAMILY_EXCEPTIONS.get((table, name))
            if expected is None:
                assert mine.family == theirs.family, (table, name, families)
            else:
                assert families == expected, (table, name, families)
            assert mine.not_null == theirs.not_null, (table, name, "NOT NULL")
    # Every listed exception is still a real difference (no stale entries).
    for table, name in FAMILY_EXCEPTIONS:
        assert sqlite.columns[table][name].family != postgres.columns[table][name].family


def test_the_same_primary_keys(schemas: tuple[Schema, Schema, set[str]]) -> None:
    sqlite, postgres, _ = schemas
    for table in set(sqlite.columns) & set(postgres.columns):
        assert sqlite.primary_keys[table] == postgres.primary_keys[table], table


def test_the_same_indexes(schemas: tuple[Schema, Schema, set[str]]) -> None:
    """By name, on the same table and columns in the same order, unique and partial alike
    (the partial predicates themselves are written in each dialect's SQL)."""
    sqlite, postgres, _ = schemas
    shared = set(sqlite.columns) & set(postgres.columns)

    def on_shared(schema: Schema) -> dict[str, Index]:
        return {name: ix for name, ix in schema.indexes.items() if ix.table in shared}

    assert on_shared(sqlite) == on_shared(postgres)
    assert "deliveries_due" in sqlite.indexes


def test_the_same_foreign_keys(schemas: tuple[Schema, Schema, set[str]]) -> None:
    sqlite, postgres, _ = schemas
    assert sqlite.foreign_keys == postgres.foreign_keys
    assert ForeignKey("deliveries", "event_id", "events.id", "cascade") in sqlite.foreign_keys


# -- upgrading a database with rows in it -------------------------------------------------

# The schema version an older release left: deliveries could not yet be 'expired'.
BEFORE_EXPIRED = 5
OLD_STATUSES = ("pending", "failed", "delivered", "exhausted", "held", "cancelled")
T = 1_800_000_000.0

OLD_EVENT = (
    "INSERT INTO events VALUES ('evt_1', 'ns', 'shop', 'order.created', '{}', NULL, 6, ?, NULL)"
)
OLD_DELIVERY = (
    "INSERT INTO deliveries VALUES"
    " (?, 'evt_1', 'ns', 'shop', 'ep', 'order.created', ?, 1, ?, ?, ?, NULL, NULL, 500, 'HTTP 500')"
)
OLD_ATTEMPT = "INSERT INTO attempts VALUES (?, 1, 'ns', 'ep', ?, 12.5, 500, 'HTTP 500', 'no', ?)"
READ_DELIVERIES = (
    "SELECT id, event_id, namespace, app, endpoint, event_type, status, attempts, created_at,"
    " updated_at, next_attempt_at, lease_owner, lease_until, last_http_status, last_error"
    " FROM deliveries ORDER BY id"
)
READ_ATTEMPTS = "SELECT delivery_id, attempt, http_status FROM attempts ORDER BY delivery_id"


def old_rows(placeholder: str) -> list[tuple[str, tuple[object, ...]]]:
    """One event with a delivery in every status an older release knew, each attempted."""
    statements: list[tuple[str, tuple[object, ...]]] = [(OLD_EVENT, (T,))]
    for n, status in enumerate(OLD_STATUSES):
        due = T + 60 if status in ("pending", "failed") else None
        statements.append((OLD_DELIVERY, (f"dlv_{n}", status, T + n, T + n, due)))
        statements.append((OLD_ATTEMPT, (f"dlv_{n}", T + n, n % 2 == 0)))
    return [(sql.replace("?", placeholder), params) for sql, params in statements]


def kept(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Every column but those expiry changes (status and updated_at)."""
    return [row[:6] + row[7:9] + row[10:] for row in rows]


def test_sqlite_upgrade_keeps_every_delivery_and_attempt(tmp_path: Path) -> None:
    """0006 rebuilds the deliveries table (SQLite cannot alter a CHECK constraint): the
    rows and the attempts that reference them survive, foreign keys are enforced again
    after, and the new status is accepted."""
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        assert migrations.migrate_sqlite(conn, up_to=BEFORE_EXPIRED) == BEFORE_EXPIRED
        for statement, params in old_rows("?"):
            conn.execute(statement, params)
        before = conn.execute(READ_DELIVERIES).fetchall(), conn.execute(READ_ATTEMPTS).fetchall()
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE deliveries SET status = 'expired' WHERE id = 'dlv_4'")

    asyncio.run(_expire_one(SQLiteStore(str(path))))

    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        after = conn.execute(READ_DELIVERIES).fetchall(), conn.execute(READ_ATTEMPTS).fetchall()
        assert after[1] == before[1]
        assert [row[6] for row in after[0]] == [*OLD_STATUSES[:4], "expired", "cancelled"]
        assert kept(after[0]) == kept(before[0])
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute("UPDATE deliveries SET status = 'lost' WHERE id = 'dlv_0'")
        # The references still cascade: deleting the event takes everything with it.
        conn.execute("DELETE FROM events")
        assert conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == 0


def test_postgres_upgrade_keeps_every_delivery_and_the_check(postgres_dsn: str) -> None:
    dsn = pg.create_database(postgres_dsn, "store_upgrade")
    try:
        asyncio.run(_migrate_postgres(dsn, BEFORE_EXPIRED))
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement, params in old_rows("%s"):
                conn.execute(statement, params)  # type: ignore[arg-type]
            before = conn.execute(READ_DELIVERIES).fetchall()
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("UPDATE deliveries SET status = 'expired' WHERE id = 'dlv_4'")

        asyncio.run(_expire_one(PostgresStore(dsn)))

        with psycopg.connect(dsn, autocommit=True) as conn:
            after = conn.execute(READ_DELIVERIES).fetchall()
            assert [row[6] for row in after] == [*OLD_STATUSES[:4], "expired", "cancelled"]
            assert kept(after) == kept(before)
            assert len(conn.execute(READ_ATTEMPTS).fetchall()) == len(OLD_STATUSES)
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("UPDATE deliveries SET status = 'lost' WHERE id = 'dlv_0'")
    finally:
        pg.drop_database(postgres_dsn, dsn)


async def _migrate_postgres(dsn: str, up_to: int) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        assert await migrations.migrate_postgres(conn, up_to=up_to) == up_to


async def _expire_one(store: SQLiteStore | PostgresStore) -> None:
    """Open (the upgrade), then expire the held delivery (created at T + 4)."""
    await store.open()
    try:
        assert await store.schema_version() == migrations.latest_version(
            migrations.SQLITE if isinstance(store, SQLiteStore) else migrations.POSTGRES
        )
        assert await store.expire_held("ns", "ep", 60.0, T + 3600) == 1
    finally:
        await store.close()


def test_a_rebuild_that_breaks_references_is_rolled_back(tmp_path: Path) -> None:
    """With enforcement off during a rebuild, the runner's own check is what stops rows
    whose references point nowhere: nothing of the file is applied or recorded."""
    with closing(sqlite3.connect(tmp_path / "store.db", isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        latest = migrations.migrate_sqlite(conn)
        for statement, params in old_rows("?"):
            conn.execute(statement, params)
        broken = migrations.Migration(
            99, "broken", f"{migrations.REBUILDS}\nDELETE FROM deliveries;"
        )
        with pytest.raises(migrations.ForeignKeyViolation, match="0099_broken"):
            migrations._apply_sqlite(conn, broken)
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == len(OLD_STATUSES)
        assert migrations.sqlite_schema_version(conn) == latest
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
