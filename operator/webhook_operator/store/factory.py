"""Picks the store backend from the `--store` URL, so the service and CLI need not know
the implementations.

`sqlite:///relative/file.db`, `sqlite:////absolute/file.db` (SQLAlchemy's convention, as
the default `sqlite:///webhook-operator.db` expects) or a bare path give the SQLite store;
`postgresql://...` or `postgres://...` (a libpq URI) or a libpq key=value string
(`host=... dbname=...`) give the PostgreSQL one. The caller awaits `open()`."""

from __future__ import annotations

import re
from typing import Final

from webhook_operator.store.base import Store
from webhook_operator.store.sqlite import SQLiteStore

SQLITE_PREFIX: Final = "sqlite:///"
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
# "host=/run/pg dbname=hooks": a libpq connection string, never a sensible file name.
CONNINFO: Final = re.compile(r"^\s*[a-z_]+\s*=")


def open_store(url: str) -> Store:
    if url.startswith(POSTGRES_SCHEMES) or CONNINFO.match(url):
        # Imported here: psycopg adds ~11 MB to a process that uses SQLite.
        from webhook_operator.store.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith(SQLITE_PREFIX):
        path = url.removeprefix(SQLITE_PREFIX)
    elif "://" in url or url.startswith("sqlite:"):
        raise ValueError(
            f"unsupported store URL {url!r}: use sqlite:///path/file.db or postgresql://..."
        )
    else:
        path = url
    if not path:
        raise ValueError(f"store URL {url!r} names no file")
    return SQLiteStore(path)
