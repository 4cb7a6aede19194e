"""Named SQL statements, read from the package's `sql/*.sql` files.

The SQL lives in files a reader (and an editor's SQL mode) sees whole, not in Python
strings: `sql/queries.sql` holds the statements both databases run as they are, and
`sql/sqlite.sql` / `sql/postgres.sql` only the ones that truly differ. A file is a series
of blocks, each opened by a `-- name: <statement>` line; comments and blank lines are
dropped, so the statement sent is the SQL alone.

Parameters are written once, `:name`, which is sqlite3's own style. For psycopg they
become `%(name)s` and a literal `%` becomes `%%`, leaving string literals, quoted
identifiers and PostgreSQL's `::type` casts alone. The conversion runs when a file is
loaded, never per statement; `to_pyformat` is also what turns SQL built at run time (list
filters) into psycopg's style, cached by its text.

A dataclass names the statements a caller expects (`bind`): a statement missing from
the files, or one in the files that nobody expects, fails at load, not on first use."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final, Literal, TypeVar

Paramstyle = Literal["named", "pyformat"]
NAMED: Final = "named"  # sqlite3: :name
PYFORMAT: Final = "pyformat"  # psycopg: %(name)s

_NAME_LINE = re.compile(r"^--\s*name:\s*(\S+)\s*$")
_STATEMENT_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

# One token at a time, in order of precedence: what must pass unchanged (string
# literals, quoted identifiers, casts), comments (dropped), parameters, and percent
# signs (doubled for psycopg). Anything else is copied as it is.
_TOKENS = re.compile(
    r"""
      (?P<string>'(?:[^']|'')*')
    | (?P<ident>"(?:[^"]|"")*")
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<cast>::)
    | (?P<param>(?<![\w:]):(?P<name>[A-Za-z_]\w*))
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)

T = TypeVar("T")


class SQLFileError(ValueError):
    """A statement file that cannot be read as named blocks."""


def parse(text: str, source: str = "<sql>") -> dict[str, str]:
    """The named blocks of `text`, name -> statement (comments and blank lines dropped,
    trailing `;` removed). Only comments and blank lines may stand before the first name."""
    statements: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def close_block() -> None:
        if name is None:
            return
        body = strip_comments("\n".join(lines)).strip().rstrip(";").strip()
        if not body:
            raise SQLFileError(f"{source}: statement {name!r} is empty")
        statements[name] = body

    for number, line in enumerate(text.splitlines(), start=1):
        header = _NAME_LINE.match(line.strip())
        if header is None:
            if name is None and line.strip() and not line.strip().startswith("--"):
                raise SQLFileError(f"{source}:{number}: SQL before the first '-- name:' line")
            lines.append(line)
            continue
        close_block()
        name, lines = header.group(1), []
        if not _STATEMENT_NAME.match(name):
            raise SQLFileError(f"{source}:{number}: bad statement name {name!r}")
        if name in statements:
            raise SQLFileError(f"{source}:{number}: statement {name!r} defined twice")
    close_block()
    return statements


def strip_comments(sql: str) -> str:
    """`sql` without its comments (not those look-alikes inside strings), blank lines
    dropped and trailing spaces trimmed."""

    def keep(match: re.Match[str]) -> str:
        if match.lastgroup in ("line_comment", "block_comment"):
            return ""
        return match.group(0)

    stripped = _TOKENS.sub(keep, sql)
    return "\n".join(line.rstrip() for line in stripped.splitlines() if line.strip())


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`sql` with `:name` parameters as psycopg's `%(name)s` and literal `%` doubled
    (psycopg reads `%` everywhere, literals included)."""

    def convert(match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind == "param":
            return f"%({match.group('name')})s"
        if kind in ("string", "ident", "line_comment", "block_comment"):
            return match.group(0).replace("%", "%%")
        if kind == "percent":
            return "%%"
        return match.group(0)  # a cast

    return _TOKENS.sub(convert, sql)


def convert(sql: str, paramstyle: Paramstyle) -> str:
    return to_pyformat(sql) if paramstyle == PYFORMAT else sql


@functools.cache
def load(file: str, paramstyle: Paramstyle) -> Mapping[str, str]:
    """The statements of `sql/<file>.sql`, in the driver's parameter style."""
    source = resources.files("webhook_operator.store").joinpath("sql", f"{file}.sql")
    parsed = parse(source.read_text(encoding="utf-8"), f"sql/{file}.sql")
    return {name: convert(sql, paramstyle) for name, sql in parsed.items()}


def bind(cls: type[T], statements: Mapping[str, str]) -> T:
    """An instance of the dataclass `cls`, one field per statement: every field must have
    a statement and every statement a field."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    expected = {f.name for f in dataclasses.fields(cls)}
    missing, unexpected = expected - statements.keys(), statements.keys() - expected
    if missing or unexpected:
        raise SQLFileError(
            f"{cls.__name__}: statements missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    values: dict[str, Any] = {name: statements[name] for name in expected}
    return cls(**values)
