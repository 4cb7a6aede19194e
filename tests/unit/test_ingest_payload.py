"""What a producer posts is what the receiver gets: exact numbers, UTF-8 text, valid JSON."""

from __future__ import annotations

import json

import pytest

from webhook_operator.delivery import ingest


def delivered(raw: bytes) -> dict[str, object]:
    body: dict[str, object] = json.loads(ingest.payload("evt_1", ingest.parse_body(raw), 0.0))
    return body


def test_the_envelope_carries_the_data_unchanged() -> None:
    body = delivered('{"type":"invoice.paid","data":{"amount":12.5,"who":"Zoë"}}'.encode())
    assert body == {
        "id": "evt_1",
        "type": "invoice.paid",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "data": {"amount": 12.5, "who": "Zoë"},
    }


def test_integers_beyond_64_bits_stay_exact() -> None:
    big = 123456789012345678901234567890
    assert delivered(b'{"type":"t","data":{"n":%d}}' % big)["data"] == {"n": big}


def test_text_is_sent_as_utf8_not_escaped() -> None:
    out = ingest.payload("evt_1", ingest.parse_body('{"type":"t","data":{"s":"é"}}'.encode()), 0.0)
    assert '"data":{"s":"é"}' in out


@pytest.mark.parametrize("raw", [b'{"type":"t","data":NaN}', b'{"type":"t","data":1e400}'])
def test_numbers_json_cannot_carry_are_refused(raw: bytes) -> None:
    with pytest.raises(ingest.IngestError) as refused:
        ingest.parse_body(raw)
    assert refused.value.status == 400
    assert refused.value.reason == "MalformedJSON"
