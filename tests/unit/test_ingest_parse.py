"""The ingest parser's rules at their edges (the HTTP-level table is in
tests/integration/test_hostile_input.py)."""

from __future__ import annotations

import json

import pytest

from webhook_operator.delivery import ingest


def body_with_depth(levels: int) -> bytes:
    return b'{"type":"a.b","data":' + b'{"x":' * (levels - 1) + b"{}" + b"}" * (levels - 1) + b"}"


def test_data_may_nest_64_levels_not_65() -> None:
    assert ingest.parse_body(body_with_depth(ingest.MAX_DATA_DEPTH)).type == "a.b"
    with pytest.raises(ingest.IngestError) as refused:
        ingest.parse_body(body_with_depth(ingest.MAX_DATA_DEPTH + 1))
    assert refused.value.reason == "TooDeep"


def test_many_brackets_side_by_side_are_not_depth() -> None:
    wide = json.dumps({"type": "a.b", "data": {"rows": [[i] for i in range(500)]}}).encode()
    assert len(ingest.parse_body(wide).data["rows"]) == 500


def test_large_integers_and_escaped_pairs_stay_exact() -> None:
    raw = b'{"type":"a.b","data":{"n":123456789012345678901234567890,"s":"\\ud83d\\ude00"}}'
    data = ingest.parse_body(raw).data
    assert data == {"n": 123456789012345678901234567890, "s": "\U0001f600"}


def test_nul_and_controls_in_data_are_kept() -> None:
    data = ingest.parse_body(b'{"type":"a.b","data":{"s":"a\\u0000\\u001b"}}').data
    assert data == {"s": "a\x00\x1b"}
    assert "\\u0000" in ingest.payload("evt_1", ingest.Submitted("a.b", None, data), 0.0)


@pytest.mark.parametrize("event_type", ["invoice.paid", "a", "a-b_c.d0", "x" * 256, "0.1"])
def test_dotted_names_are_event_types(event_type: str) -> None:
    assert ingest.parse_body(json.dumps({"type": event_type}).encode()).type == event_type


def test_trace_context_keeps_a_w3c_traceparent_and_reads_later_versions_as_00() -> None:
    from webhook_operator.delivery.ingest import trace_context

    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_context(None) is None
    assert trace_context(f" {trace} ") == trace
    # A later version's first four fields, as version 00 (what we understand and send on).
    later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-comes-next"
    assert trace_context(later) == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"
