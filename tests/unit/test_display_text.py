"""Untrusted text as people see it: every character a terminal would act on shows as a
visible escape, nothing else changes, and caps never cut an escape in half. The hostile
inputs are tables: adding a case is one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from webhook_operator.conditions import make
from webhook_operator.controller.reconcile_endpoint import delivery_fields, event_message, readable
from webhook_operator.display_text import json_text, multi_line, one_line
from webhook_operator.health import DeliveryState
from webhook_operator.plugin import render

# Characters a terminal (or a Unicode-aware viewer) acts on instead of printing. Defined
# here independently of the module under test.
ACTED_ON = {
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
    *range(0xD800, 0xE000),
}


def raw_controls(text: str) -> list[str]:
    return [f"U+{ord(ch):04X}" for ch in text if ord(ch) in ACTED_ON]


# (what it is, as received, as shown on one line)
HOSTILE = [
    ("terminal title (OSC)", "500 \x1b]0;pwned\x07", "500 \\x1b]0;pwned\\x07"),
    ("OSC ended by ST", "\x1b]0;pwned\x1b\\ok", "\\x1b]0;pwned\\x1b\\ok"),
    ("colour (CSI)", "\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("clear screen", "\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
    ("8-bit CSI (C1)", "\x9b31mred", "\\x9b31mred"),
    ("NEL (C1 newline)", "a\x85b", "a\\x85b"),
    ("DEL", "a\x7fb", "a\\x7fb"),
    ("NUL", "a\x00b", "a\\x00b"),
    ("bell", "ding\x07", "ding\\x07"),
    ("backspace overwrites", "paid\b\b\b\bfail", "paid\\x08\\x08\\x08\\x08fail"),
    ("carriage return overwrites", "ok\rFAILED", "ok\\rFAILED"),
    ("forged table row", "invoice.paid\ndlv_x  ep  ok", "invoice.paid\\ndlv_x  ep  ok"),
    ("CRLF", "a\r\nb", "a\\r\\nb"),
    ("tab", "a\tb", "a\\tb"),
    ("vertical tab, form feed", "a\x0bb\x0cc", "a\\x0bb\\x0cc"),
    ("right-to-left override", "invoice.\u202ediap", "invoice.\\u202ediap"),
    ("every bidi embedding", "\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("bidi isolates", "\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
    ("bidi marks", "\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),
    ("line separator", "a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("lone surrogates", "a\ud800b\udfffc", "a\\ud800b\\udfffc"),
]

# Text that must come through exactly as it is.
HARMLESS = [
    "503 Service Unavailable",
    "timed out after 10s",
    'body {"error": "quota"}',
    "C:\\temp\\x1b is a path, not an escape",
    "é ü ß 日本語 emoji 🎉 and U+FFFD \ufffd",
    "zero\u200bwidth space and BOM \ufeff are not acted on",
    "",
]


@pytest.mark.parametrize(("what", "received", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_one_line_shows_controls_as_escapes(what: str, received: str, shown: str) -> None:
    assert one_line(received) == shown
    assert raw_controls(one_line(received)) == []


@pytest.mark.parametrize(("what", "received", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_escaping_twice_changes_nothing(what: str, received: str, shown: str) -> None:
    # Status written by an older operator and re-read must not grow backslashes.
    assert one_line(one_line(received)) == one_line(received)
    assert multi_line(multi_line(received)) == multi_line(received)


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert one_line(text) == text
    assert multi_line(text) == text


def test_multi_line_keeps_newlines_and_tabs_only() -> None:
    received = "line one\n\tindented \x1b[31mred\r\nend\u202e"
    assert multi_line(received) == "line one\n\tindented \\x1b[31mred\\r\nend\\u202e"
    assert raw_controls(multi_line(received).replace("\n", "").replace("\t", "")) == []


# (received, limit, shown)
CAPPED = [
    ("short", 10, "short"),
    ("exactly ten", 11, "exactly ten"),
    ("a" * 20, 10, "a" * 9 + "…"),
    # The escape of ESC is four characters: it fits whole or not at all.
    ("ab\x1bcd", 6, "ab…"),
    ("ab\x1bcd", 7, "ab\\x1b…"),
    ("\u202e" * 3, 13, "\\u202e\\u202e…"),
    ("x", 1, "x"),
    ("xy", 1, "…"),
]


@pytest.mark.parametrize(("received", "limit", "shown"), CAPPED)
def test_caps_count_what_is_shown_and_never_cut_an_escape(
    received: str, limit: int, shown: str
) -> None:
    assert one_line(received, limit=limit) == shown
    assert len(one_line(received, limit=limit)) <= limit


def test_a_cap_holds_however_much_escaping_grows_the_text() -> None:
    received = "\x1b" * 2000
    shown = one_line(received, limit=1024)
    assert len(shown) <= 1024
    assert shown.endswith("\\x1b…")
    assert one_line(shown, limit=1024) == shown


def test_a_cap_below_one_is_a_bug_and_says_so() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        one_line("x", limit=0)


@pytest.mark.parametrize(("what", "received", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_json_output_is_escaped_and_still_the_same_values(
    what: str, received: str, shown: str
) -> None:
    value = {"lastError": received, "items": [{"eventType": received}]}
    serialized = json.dumps(value, indent=2, ensure_ascii=False)
    safe = json_text(serialized)
    assert raw_controls(safe.replace("\n", "")) == []
    assert json.loads(safe) == value


def test_json_output_keeps_readable_unicode_as_it_is() -> None:
    serialized = json.dumps({"note": 'é 日本語 \\ "'}, ensure_ascii=False)
    assert json_text(serialized) == serialized


# -- what `kubectl webhooks` prints --------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def hostile_delivery(received: str) -> dict[str, Any]:
    return {
        "id": "dlv_1",
        "eventId": "evt_1",
        "eventType": received,
        "app": "billing",
        "endpoint": "ep",
        "namespace": "shop",
        "status": "failed",
        "attempts": 1,
        "createdAt": "2026-11-25T11:59:00Z",
        "lastHttpStatus": 500,
        "lastError": f"500 {received}",
        "attemptLog": [
            {
                "attempt": 1,
                "startedAt": "2026-11-25T11:59:00Z",
                "durationMs": 12,
                "httpStatus": 500,
                "success": False,
                "error": f"500 {received}",
                "responseSnippet": received,
            }
        ],
    }


@pytest.mark.parametrize(("what", "received", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_tables_and_detail_views_print_escapes(
    what: str, received: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record = hostile_delivery(received)
    render.show(render.deliveries_table([record], NOW))
    table = capsys.readouterr().out
    assert raw_controls(table.replace("\n", "")) == []
    assert len(table.splitlines()) == 2  # the header and one row: none forged
    assert f"500 {shown}" in table

    fields_grid, attempts = render.delivery_view(record, NOW)
    render.show(fields_grid, "", attempts)
    view = capsys.readouterr().out
    assert raw_controls(view.replace("\n", "")) == []
    fields = dict(line.split(":", 1) for line in view.split("\n\n")[0].splitlines())
    assert fields["Event type"].strip() == shown
    assert fields["Last error"].strip() == f"500 {shown}"


@pytest.mark.parametrize(("what", "received", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_messages_and_errors_print_escapes(
    what: str, received: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    render.say(f"ping to ep failed (exhausted): 500 {received}")
    render.error(f"the delivery service answered 400: {received}")
    out, err = capsys.readouterr()
    assert out == f"ping to ep failed (exhausted): 500 {shown}\n"
    assert err == f"error: the delivery service answered 400: {shown}\n"


@pytest.mark.parametrize(("what", "received", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_json_output_prints_escapes_and_keeps_the_values(
    what: str, received: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    record = hostile_delivery(received)
    render.print_json(record)
    out = capsys.readouterr().out
    assert raw_controls(out.replace("\n", "")) == []
    assert json.loads(out) == record


# -- what `kubectl describe` shows: the operator's status and Events ----------------------


@pytest.mark.parametrize(("what", "received", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_endpoint_status_shows_delivery_errors_escaped(
    what: str, received: str, shown: str
) -> None:
    state = DeliveryState(
        last_delivery_time=NOW,
        last_failure_time=NOW,
        last_error=f"500 {received}",
        disabled_reason=received,
        counts={"failed": 1},
        window=received,
    )
    fields = delivery_fields(True, state)
    assert fields["lastError"] == f"500 {shown}"
    assert fields["disabledReason"] == shown
    assert fields["deliveries"]["window"] == shown


def test_status_last_error_fits_the_crd_however_long_the_answer() -> None:
    state = DeliveryState(last_failure_time=NOW, last_error="\x1b[31m" * 1024)
    shown = delivery_fields(True, state)["lastError"]
    assert len(shown) <= 1024  # the CRD's maxLength: longer would fail the status write
    # Escapes stay whole; ordinary characters are cut where the cap falls.
    assert shown == ("\\x1b[31m" * 1024)[:1023] + "…"


# Kubernetes objects cannot hold lone surrogates (the apiserver decodes them as U+FFFD).
IN_OBJECTS = [h for h in HOSTILE if h[0] != "lone surrogates"]


@pytest.mark.parametrize(("what", "received", "shown"), IN_OBJECTS, ids=[h[0] for h in IN_OBJECTS])
def test_condition_messages_and_events_show_escapes(what: str, received: str, shown: str) -> None:
    condition = make("Ready", False, "InvalidSpec", f"bad spec: {received}", 1, NOW)
    (readable_condition,) = readable([condition])
    assert readable_condition.message == f"bad spec: {shown}"
    assert event_message(f"bad spec: {received}") == f"bad spec: {shown}"
