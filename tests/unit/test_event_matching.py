"""Which event types a subscription pattern matches."""

from __future__ import annotations

import pytest

from webhook_operator.event_matching import matches, subscribed, unknown_subscriptions

CATALOG = ["invoice.paid", "invoice.line.added", "customer.created"]


@pytest.mark.parametrize(
    ("pattern", "event_type"),
    [
        ("*", "invoice.paid"),
        ("*", "anything"),
        ("invoice.paid", "invoice.paid"),
        ("invoice.*", "invoice.paid"),
        ("invoice.*", "invoice.line.added"),
        ("invoice.line.*", "invoice.line.added"),
    ],
)
def test_matches(pattern: str, event_type: str) -> None:
    assert matches(pattern, event_type)


@pytest.mark.parametrize(
    ("pattern", "event_type"),
    [
        ("invoice.paid", "invoice.paid.late"),
        ("invoice.paid", "invoice"),
        ("invoice.paid", "Invoice.paid"),
        ("invoice.*", "invoice"),
        ("invoice.*", "invoice."),
        ("invoice.*", "invoices.paid"),
        ("invoice.*", "customer.created"),
        ("invoice.line.*", "invoice.paid"),
        ("invoice*", "invoice.paid"),
        ("*.paid", "invoice.paid"),
        ("invoice.*.added", "invoice.line.added"),
        ("", "invoice.paid"),
    ],
)
def test_does_not_match(pattern: str, event_type: str) -> None:
    assert not matches(pattern, event_type)


def test_subscribed() -> None:
    assert subscribed(["customer.created", "invoice.*"], "invoice.paid")
    assert not subscribed(["customer.created", "invoice.*"], "customer.deleted")
    assert not subscribed([], "invoice.paid")
    assert subscribed(iter(["*"]), "invoice.paid")


def test_unknown_subscriptions_in_input_order() -> None:
    patterns = ["invoices.*", "invoice.*", "customer.deleted", "*", "customer.created", "x"]
    assert unknown_subscriptions(patterns, CATALOG) == ["invoices.*", "customer.deleted", "x"]


def test_no_catalog_means_nothing_is_unknown() -> None:
    assert unknown_subscriptions(["invoices.*", "typo"], []) == []
    assert unknown_subscriptions(["invoices.*", "typo"], set()) == []


def test_star_is_never_unknown_with_a_catalog() -> None:
    assert unknown_subscriptions(["*"], {"ping"}) == []


def test_wildcard_that_only_matches_the_prefix_itself_is_unknown() -> None:
    assert unknown_subscriptions(["invoice.*"], ["invoice"]) == ["invoice.*"]


def test_accepts_any_iterable() -> None:
    assert unknown_subscriptions((p for p in ["a", "invoice.paid"]), frozenset(CATALOG)) == ["a"]
