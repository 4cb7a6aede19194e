"""Go-style durations ("30s", "5m", "1h30m", "1.5h", "250ms") as the CRDs spell them.

Kubernetes users know this notation from core resources, so the custom resources use it
for timeouts and retry delays. The CRD schema already rejects malformed values with the
pattern below; this module turns accepted values into `timedelta`s and back, and rejects
the same strings the apiserver would so values from other sources (flags, defaults) get
the same treatment. Only the units ms, s, m and h exist: smaller ones make no sense for
webhook deliveries, and Go itself has nothing larger.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

# Must stay equivalent to the `pattern` the CRD schema declares.
CRD_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

_WHOLE = re.compile(r"([0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+")
# "ms" comes before "m" so "250ms" is not read as 250 minutes followed by a stray "s".
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")

_MICROSECONDS = {
    "ms": Decimal(1_000),
    "s": Decimal(1_000_000),
    "m": Decimal(60_000_000),
    "h": Decimal(3_600_000_000),
}


def _invalid(text: str) -> ValueError:
    return ValueError(f"{text!r} is not a duration such as 30s, 5m or 2h")


def parse_duration(text: str) -> timedelta:
    """The `timedelta` a Go-style duration stands for; ValueError for anything else."""
    # fullmatch, not the pattern's `$`, which would also accept a trailing newline.
    if not _WHOLE.fullmatch(text):
        raise _invalid(text)
    # Decimal keeps "1.1h" exact; binary floats would be a microsecond off.
    total = sum(
        (Decimal(number) * _MICROSECONDS[unit] for number, unit in _PART.findall(text)),
        Decimal(0),
    )
    try:
        return timedelta(microseconds=int(total))
    except OverflowError:
        raise _invalid(text) from None


def _decimal_text(value: Decimal) -> str:
    # Avoids both exponent notation ("5E+2") and trailing zeros ("1.500").
    return format(value.normalize(), "f")


def format_duration(td: timedelta) -> str:
    """The Go-style text for a non-negative `timedelta`, shortest form.

    Like Go's `Duration.String()` the value is split into hours, minutes and seconds, but
    zero components are left out ("1h30m" rather than "1h30m0s"). A remainder under one
    second is written in milliseconds ("1h250ms"). The result always parses back to `td`.
    """
    if td < timedelta(0):
        raise ValueError(f"durations cannot be negative: {td}")
    if td == timedelta(0):
        return "0s"
    whole_seconds = td.days * 86_400 + td.seconds
    hours, rest = divmod(whole_seconds, 3_600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if seconds:
        return text + _decimal_text(Decimal(seconds) + Decimal(td.microseconds) / 1_000_000) + "s"
    if td.microseconds:
        return text + _decimal_text(Decimal(td.microseconds) / 1_000) + "ms"
    return text
