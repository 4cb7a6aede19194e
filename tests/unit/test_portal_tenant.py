"""The tenant check: a ticket verified once is not verified again for each request, but
still expires on time and dies with its key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from webhook_operator.http_api.errors import ApiError
from webhook_operator.portal.directory import Directory
from webhook_operator.portal.tenant import RequestBudget, TenantAuth
from webhook_operator.portal.tickets import Scope, Ticket, encode, key_id

NOW = 1_800_000_000.0


class Keys:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def verification_keys(self) -> dict[str, bytes]:
        return {key_id(self.key): self.key}

    async def reload_if_due(self, least_interval: float = 1.0) -> bool:
        return False


def auth(keys: Keys, clock: list[float]) -> TenantAuth:
    return TenantAuth(keys, Directory(), RequestBudget(100.0), clock=lambda: clock[0])  # type: ignore[arg-type]


def token(key: bytes) -> str:
    ticket = Ticket("t", "ns", "shop", Scope.READ, "alice", int(NOW), int(NOW) + 60)
    return encode(key, ticket)


def verify(tenant: TenantAuth, raw: str) -> Any:
    return asyncio.run(tenant.verify(raw))


def test_a_verified_ticket_still_expires() -> None:
    clock = [NOW]
    keys = Keys(b"a" * 32)
    tenant = auth(keys, clock)
    raw = token(keys.key)
    assert verify(tenant, raw).app == "shop"
    assert verify(tenant, raw).app == "shop"
    clock[0] = NOW + 60
    with pytest.raises(ApiError) as refused:
        verify(tenant, raw)
    assert refused.value.reason == "ExpiredTicket"


def test_a_new_key_revokes_verified_tickets() -> None:
    clock = [NOW]
    keys = Keys(b"a" * 32)
    tenant = auth(keys, clock)
    raw = token(keys.key)
    verify(tenant, raw)
    keys.key = b"b" * 32
    with pytest.raises(ApiError) as refused:
        verify(tenant, raw)
    assert refused.value.status == 401
