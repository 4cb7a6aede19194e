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
