"""Output: quiet `kubectl get`-style tables with rich, pretty JSON for `-o json`, and the
one-line notes and errors on stderr (so stdout stays clean for pipes and `jq`).

Much of what is printed was written by others: receivers' reason phrases and bodies,
producers' event types, the service's error messages. Every path out of this module
escapes the characters a terminal acts on (`display_text`), so such text cannot retitle
or recolour the terminal or forge rows; `-o json` keeps the exact values."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from webhook_operator.display_text import json_text, one_line
from webhook_operator.plugin.parsing import age

# The attempts table previews response bodies; `-o json` has them whole.
SNIPPET_WIDTH = 80
# Wide enough that ids and URLs are never cut when the output goes to a file or a pipe,
# where rich would otherwise assume 80 columns.
PIPE_WIDTH = 250

STATUS_STYLE = {
    "delivered": "green",
    "failed": "yellow",
    "exhausted": "red",
    "cancelled": "dim",
    "held": "cyan",
    "expired": "magenta",
    "pending": "",
}


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


def console(stderr: bool = False) -> Console:
    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, soft_wrap=False, width=PIPE_WIDTH)
    return out


def print_json(value: Any) -> None:
    # Plain print, not rich: JSON must reach `jq` with no markup parsing. The serializer
    # escapes C0 controls only; json_text writes the rest (DEL, C1, bidi controls, lone
    # surrogates) as JSON escapes, so the values are the same and the terminal is safe.
    sys.stdout.write(json_text(json.dumps(value, indent=2, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """One line of result on stdout, printed as plain text: messages quote names and
    errors such as "[Errno 111]" that rich would otherwise take for markup."""
    console().print(Text(one_line(message)), soft_wrap=True)


def show(*renderables: RenderableType) -> None:
    """Tables and grids on stdout. In a pipe, without the padding rich puts at the end of
    every line, so `grep`, `awk` and diffs see clean rows."""
    out = console()
    if out.is_terminal:
        out.print(*renderables)
        return
    with out.capture() as captured:
        for renderable in renderables:
            out.print(renderable)
    lines = captured.get().splitlines()
    sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))
    sys.stdout.flush()


def note(message: str) -> None:
    """A hint for the person at the terminal; on stderr so it never mixes into data."""
    # soft_wrap: one line, however long, so a hint holding a command can be copied whole.
    console(stderr=True).print(Text(one_line(message), style="dim"), soft_wrap=True)


def error(message: str) -> None:
    console(stderr=True).print(
        Text.assemble(("error: ", "bold red"), one_line(message)), soft_wrap=True
    )


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2))
    for column in columns:
        table.add_column(column, no_wrap=column != "ERROR", overflow="fold")
    return table


def _status(value: Any) -> Text:
    text = one_line(str(value or ""))
    return Text(text, style=STATUS_STYLE.get(text, ""))


def _cell(value: Any, limit: int | None = None) -> Text:
    # Text, not str: values from the service (errors, responses) are not rich markup.
    # One line each: a newline in a value would forge a row.
    return Text("" if value is None else one_line(str(value), limit))


def deliveries_table(items: list[dict[str, Any]], now: datetime) -> Table:
    table = _table("ID", "ENDPOINT", "EVENT TYPE", "STATUS", "ATTEMPTS", "HTTP", "AGE", "ERROR")
    for item in items:
        table.add_row(
            _cell(item.get("id")),
            _cell(item.get("endpoint")),
            _cell(item.get("eventType")),
            _status(item.get("status")),
            _cell(item.get("attempts")),
            _cell(item.get("lastHttpStatus")),
            _cell(age(item.get("createdAt"), now)),
            _cell(item.get("lastError")),
        )
    return table


def _field_grid(rows: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        if value not in (None, ""):
            grid.add_row(label, value if isinstance(value, Text) else _cell(value))
    return grid


def delivery_view(record: dict[str, Any], now: datetime) -> list[Table]:
    """The delivery as labelled fields, then one row per attempt."""
    created = record.get("createdAt")
    fields = _field_grid(
        [
            ("Delivery:", record.get("id")),
            ("Event:", record.get("eventId")),
            ("Event type:", record.get("eventType")),
            ("App:", record.get("app")),
            ("Endpoint:", record.get("endpoint")),
            ("Namespace:", record.get("namespace")),
            ("Status:", _status(record.get("status"))),
            ("Attempts:", record.get("attempts")),
            ("Created:", f"{created} ({age(created, now)} ago)" if created else None),
            ("Updated:", record.get("updatedAt")),
            ("Next attempt:", record.get("nextAttemptAt")),
            ("Last HTTP status:", record.get("lastHttpStatus")),
            ("Last error:", record.get("lastError")),
        ]
    )
    attempts = _table("#", "STARTED", "DURATION", "HTTP", "RESULT", "ERROR", "RESPONSE")
    for attempt in record.get("attemptLog") or []:
        duration = attempt.get("durationMs")
        attempts.add_row(
            _cell(attempt.get("attempt")),
            _cell(attempt.get("startedAt")),
            Text(f"{duration:.0f}ms" if isinstance(duration, int | float) else ""),
            _cell(attempt.get("httpStatus")),
            Text("ok", style="green") if attempt.get("success") else Text("failed", style="red"),
            _cell(attempt.get("error")),
            _cell(attempt.get("responseSnippet"), SNIPPET_WIDTH),
        )
    return [fields, attempts]


def decoded_payload(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its payload (the exact JSON text that was signed) decoded, so
    `-o json` shows it as nested JSON and `jq .payload.data` works."""
    payload = record.get("payload")
    if not isinstance(payload, str):
        return record
    try:
        return {**record, "payload": json.loads(payload)}
    except ValueError:
        return record
