"""Access tickets: what verifies, what is refused and why (pure: no apiserver, no clock)."""

from __future__ import annotations

import base64
import json

import pytest

from webhook_operator.portal.tickets import (
    InvalidTicket,
    Scope,
    Ticket,
    UnknownKey,
    decode,
    encode,
    key_id,
)

KEY = b"k" * 32
KEYS = {key_id(KEY): KEY}
NOW = 1_800_000_000


def ticket(**changes: object) -> Ticket:
    fields: dict[str, object] = {
        "id": "t1",
        "namespace": "shop-ns",
        "app": "shop",
        "scope": Scope.MANAGE,
        "subject": "acme/alice@example.com",
        "issued_at": NOW,
        "expires_at": NOW + 900,
    }
    fields.update(changes)
    return Ticket(**fields)  # type: ignore[arg-type]


def test_a_ticket_round_trips() -> None:
    assert decode(KEYS, encode(KEY, ticket()), NOW + 1) == ticket()


def test_expiry_is_decided_by_the_clock_given() -> None:
    token = encode(KEY, ticket())
    assert decode(KEYS, token, NOW + 899).id == "t1"
    with pytest.raises(InvalidTicket) as refused:
        decode(KEYS, token, NOW + 900)
    assert refused.value.reason == "ExpiredTicket"


def test_a_changed_claim_breaks_the_signature() -> None:
    header, payload, signature = encode(KEY, ticket()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["app"] = "someone-elses"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(InvalidTicket) as refused:
        decode(KEYS, f"{header}.{forged}.{signature}", NOW)
    assert refused.value.reason == "InvalidTicket"


def test_another_key_is_unknown_not_tampered() -> None:
    other = b"o" * 32
    with pytest.raises(UnknownKey):
        decode(KEYS, encode(other, ticket()), NOW)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000])
def test_garbage_is_malformed(token: str) -> None:
    with pytest.raises(InvalidTicket):
        decode(KEYS, token, NOW)


def test_an_unsigned_token_is_refused() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"x"}').decode().rstrip("=")
    payload = base64.urlsafe_b64encode(b'{"app":"shop"}').decode().rstrip("=")
    with pytest.raises(InvalidTicket) as refused:
        decode(KEYS, f"{header}.{payload}.", NOW)
    assert refused.value.reason == "InvalidTicket"
