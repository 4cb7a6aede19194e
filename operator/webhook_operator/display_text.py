"""Untrusted text made safe to show on a terminal.

Receivers choose their reason phrases and response bodies, producers their event types,
and old rows in the store hold whatever was accepted then. That text reaches people through
`kubectl describe` (status messages, `lastError`, Events) and `kubectl webhooks` (tables
and detail views). Printed raw, `\\x1b]0;...\\x07` retitles the reader's terminal,
`\\x1b[31m` recolours it, a newline forges a table row and a right-to-left override (U+202E)
makes text read differently from what it is.

The text is stored as received; it is escaped where it is shown. Every character a
terminal may act on instead of printing becomes a visible escape: C0 and C1 controls and
DEL as `\\x1b`, bidirectional controls, line and paragraph separators and lone surrogates
as `\\u202e`. Single-line places (table cells, condition and Event messages, status
fields) escape newlines and tabs too (`\\n`, `\\t`); multi-line places keep them.

A backslash already in the text is left as it is: text that spells `\\x1b` looks the same
as an escaped ESC, which is harmless and keeps ordinary messages (Windows paths, JSON
with escapes) readable. The result contains none of the characters above, so escaping it
again changes nothing, and a length cap never cuts an escape in half.

`json_text` does the same for serialized JSON: the escapes are JSON's own (`\\u009b`), so
the document still parses to exactly the same values."""

from __future__ import annotations

ELLIPSIS = "…"

# Bidirectional controls: embeddings and overrides (U+202A-202E), isolates (U+2066-2069)
# and the invisible marks (ALM, LRM, RLM), the characters of "Trojan Source" text.
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
# Line and paragraph separators: line breaks to Unicode-aware programs.
_SEPARATORS = (0x2028, 0x2029)
_SURROGATES = range(0xD800, 0xE000)
_C0, _DEL, _C1 = range(0x00, 0x20), 0x7F, range(0x80, 0xA0)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_MULTI_LINE: dict[int, str] = {
    code: _escape(code) for code in (*_C0, _DEL, *_C1, *_BIDI, *_SEPARATORS, *_SURROGATES)
}
del _MULTI_LINE[ord("\n")], _MULTI_LINE[ord("\t")]
_ONE_LINE: dict[int, str] = {**_MULTI_LINE, ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}
_MULTI_LINE[ord("\r")] = "\\r"

# JSON text: C0 controls are escaped by every serializer already, and quotes and
# backslashes must stay as the serializer wrote them.
_JSON: dict[int, str] = {
    code: f"\\u{code:04x}" for code in (_DEL, *_C1, *_BIDI, *_SEPARATORS, *_SURROGATES)
}


def one_line(text: str, limit: int | None = None) -> str:
    """For single-line places: newlines and tabs escaped too. With `limit`, at most that
    many characters, the last one `…` when something was cut."""
    return _capped(text, _ONE_LINE, limit)


def multi_line(text: str, limit: int | None = None) -> str:
    """For places that show several lines: newlines and tabs kept, everything else a
    terminal acts on escaped."""
    return _capped(text, _MULTI_LINE, limit)


def json_text(serialized: str) -> str:
    """Serialized JSON with the characters a terminal acts on written as JSON escapes;
    it parses to the same values."""
    return serialized.translate(_JSON)


def _capped(text: str, table: dict[int, str], limit: int | None) -> str:
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    escaped = text.translate(table)
    if limit is None or len(escaped) <= limit:
        return escaped
    # Cut between whole escapes: walk the original until the next piece would not fit.
    room = limit - len(ELLIPSIS)
    pieces: list[str] = []
    used = 0
    for ch in text:
        piece = table.get(ord(ch), ch)
        if used + len(piece) > room:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces) + ELLIPSIS
