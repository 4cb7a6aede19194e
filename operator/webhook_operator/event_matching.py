"""Which event types a webhook subscription receives.

An endpoint subscribes with a list of patterns. Keeping the matching rules in one pure
module means the delivery service (routing events) and the operator (warning about
subscriptions that can never match the declared event catalog) agree on them.

A pattern is one of:
- `*`: every event type;
- an exact type such as `invoice.paid`;
- a prefix followed by a wildcard segment, such as `invoice.*`, which matches every type
  below `invoice.` (`invoice.paid`, `invoice.line.added`) but neither `invoice` itself nor
  `invoices.paid`.
A `*` anywhere else has no special meaning.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

WILDCARD = "*"
_WILDCARD_SEGMENT = ".*"


def matches(pattern: str, event_type: str) -> bool:
    """Whether one subscription pattern covers the event type."""
    if pattern == WILDCARD:
        return True
    if pattern.endswith(_WILDCARD_SEGMENT):
        # Keeping the dot in the prefix is what stops `invoice.*` matching `invoices.paid`;
        # the length check stops it matching the bare `invoice.`.
        prefix = pattern[:-1]
        return event_type.startswith(prefix) and len(event_type) > len(prefix)
    return pattern == event_type


def subscribed(patterns: Iterable[str], event_type: str) -> bool:
    """Whether any of an endpoint's patterns covers the event type."""
    return any(matches(pattern, event_type) for pattern in patterns)


def unknown_subscriptions(patterns: Iterable[str], catalog: Collection[str]) -> list[str]:
    """The patterns, in input order, that match no event type in the catalog.

    Such a subscription is most likely a typo. An empty catalog means none was declared,
    so nothing can be called unknown.
    """
    if not catalog:
        return []
    return [p for p in patterns if not any(matches(p, t) for t in catalog)]
