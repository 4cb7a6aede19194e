"""Sortable identifiers: a prefix and a ULID-like body (48-bit millisecond time, 80 random
bits, Crockford base32), so ids order by creation time and make natural cursors."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str, now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000)
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def event_id(now: float | None = None) -> str:
    return new_id("evt", now)


def delivery_id(now: float | None = None) -> str:
    return new_id("dlv", now)
