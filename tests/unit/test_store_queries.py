"""The store's SQL loader: named blocks, `:name` parameters turned into psycopg's style
without touching casts, strings or comments, and every statement the store expects
present in the files for both databases."""

from __future__ import annotations

import dataclasses
import re

import pytest

from webhook_operator.store import queries
from webhook_operator.store.core import DialectQueries, SharedQueries
from webhook_operator.store.postgres import PostgresQueries
from webhook_operator.store.sqlite import SQLiteQueries


def test_parse_reads_named_blocks_without_comments() -> None:
    text = """
-- A file comment.

-- name: first
-- What it does.
SELECT 1
FROM t  -- trailing words
WHERE a = :a;

-- name: second
/* a block comment */ UPDATE t SET b = :b;
"""
    assert queries.parse(text) == {
        "first": "SELECT 1\nFROM t\nWHERE a = :a",
        "second": "UPDATE t SET b = :b",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1;\n-- name: a\nSELECT 2", "before the first"),
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2", "defined twice"),
        ("-- name: a\n-- only a comment\n", "empty"),
        ("-- name: Bad-Name\nSELECT 1", "bad statement name"),
    ],
)
def test_parse_refuses_what_it_cannot_read(text: str, message: str) -> None:
    with pytest.raises(queries.SQLFileError, match=message):
        queries.parse(text, "test.sql")


def test_to_pyformat_converts_parameters_only() -> None:
    sql = (
        "SELECT floor((x - :since) / :bucket)::bigint, ':not_a_param', \"col:umn\", 'a%b'"
        " FROM t WHERE y = :y AND z LIKE '%' || :z AND arr[1:2] = a AND w = :w::text"
    )
    assert queries.to_pyformat(sql) == (
        "SELECT floor((x - %(since)s) / %(bucket)s)::bigint, ':not_a_param', \"col:umn\","
        " 'a%%b' FROM t WHERE y = %(y)s AND z LIKE '%%' || %(z)s AND arr[1:2] = a"
        " AND w = %(w)s::text"
    )


def test_strings_with_quotes_and_comment_lookalikes_are_kept() -> None:
    sql = "SELECT 'it''s -- not a comment :x' AS s, :y -- a comment :z"
    assert queries.strip_comments(sql) == "SELECT 'it''s -- not a comment :x' AS s, :y"
    assert queries.to_pyformat(queries.strip_comments(sql)) == (
        "SELECT 'it''s -- not a comment :x' AS s, %(y)s"
    )


def test_named_style_is_left_as_written() -> None:
    assert queries.convert("SELECT :a", queries.NAMED) == "SELECT :a"


@dataclasses.dataclass(frozen=True)
class _Two:
    a: str
    b: str


def test_bind_wants_exactly_the_expected_statements() -> None:
    assert queries.bind(_Two, {"a": "SELECT 1", "b": "SELECT 2"}) == _Two("SELECT 1", "SELECT 2")
    with pytest.raises(queries.SQLFileError, match=r"missing \['b'\], unexpected \['c'\]"):
        queries.bind(_Two, {"a": "SELECT 1", "c": "SELECT 3"})


@pytest.mark.parametrize(
    ("file", "cls"),
    [("sqlite", SQLiteQueries), ("postgres", PostgresQueries)],
)
def test_the_package_files_hold_every_statement(file: str, cls: type[DialectQueries]) -> None:
    style = queries.PYFORMAT if file == "postgres" else queries.NAMED
    shared = queries.bind(SharedQueries, queries.load("queries", style))
    own = queries.bind(cls, queries.load(file, style))
    # Shared statements are written once: a dialect file never redefines one.
    assert not set(queries.load(file, style)) & set(queries.load("queries", style))
    statements = [*dataclasses.astuple(shared), *dataclasses.astuple(own)]
    leftover = re.compile(r"(?<![\w:]):[A-Za-z_]")
    for sql in statements:
        assert "--" not in sql
        if style == queries.PYFORMAT:
            assert not leftover.search(sql.replace("::", "")), sql


def test_postgres_add_events_reads_every_parameter_of_a_row() -> None:
    # add_events sends a batch as JSON objects read back by column name: a parameter
    # added to the row mappers but not to the statement would be dropped silently.
    from webhook_operator.store import postgres, rows
    from webhook_operator.store.base import DeliveryStatus, NewDelivery, NewEvent

    event = NewEvent("evt_1", "ns", "app", "order.created", "{}", "key", 1.0)
    delivery = NewDelivery("dlv_1", "ep", DeliveryStatus.PENDING, 1.0)
    events, deliveries = rows.batch_params([(event, [delivery])])
    statement = postgres.QUERIES.add_events
    record_types = re.findall(r"AS \w \(([^)]*)\)", statement)
    declared = [{column.split()[0] for column in found.split(",")} for found in record_types]
    assert declared == [set(events[0]), set(deliveries[0])]
