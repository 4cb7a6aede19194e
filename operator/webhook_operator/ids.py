"""Sortable identifiers: a prefix and a ULID-like body (48-bit millisecond time, 80 random
bits, Crockford base32), so ids order by creation time and make natural cursors.

Monotonic within a millisecond (the ULID spec's monotonic mode): an id made in the same
millisecond as the one before it is that id's random part plus one, so the events of one
batch list, newest first, in exactly the reverse of the order they were sent."""

from __future__ import annotations

import os
import random
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# Two base32 digits at a time: ids are made for every delivery, on the hot path.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
# Ids must be unique, not secret (they are sent to receivers); a seeded PRNG avoids a
# system call per id.
_random = random.Random(secrets.randbits(128))
# A forked child must not repeat its parent's sequence.
os.register_at_fork(after_in_child=lambda: _random.seed(secrets.randbits(128)))


def _encode(value: int, length: int) -> str:
    """`length` base32 digits of `value`, most significant first; `length` is even."""
    pairs = []
    for _ in range(length // 2):
        pairs.append(_PAIRS[value & 1023])
        value >>= 10
    return "".join(reversed(pairs))


_RANDOM_BITS = 80
_last_millis = -1
_last_random = 0


def new_id(prefix: str, now: float | None = None) -> str:
    global _last_millis, _last_random
    millis = int((time.time() if now is None else now) * 1000)
    if millis == _last_millis and _last_random + 1 < 1 << _RANDOM_BITS:
        _last_random += 1
    else:
        # Half the range leaves room for 2**79 ids in one millisecond before a wrap.
        _last_millis, _last_random = millis, _random.getrandbits(_RANDOM_BITS - 1)
    return f"{prefix}_{_encode(millis, 10)}{_encode(_last_random, 16)}"


def event_id(now: float | None = None) -> str:
    return new_id("evt", now)


def delivery_id(now: float | None = None) -> str:
    return new_id("dlv", now)
