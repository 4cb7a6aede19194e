"""Endpoint payload filters (event_filter.py) and their place in ingest (ingest.build):
what compiles, what a filter answers for an event, and that a filter failing on one
event leaves that event out for that endpoint only, never failing the ingest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from webhook_operator import conditions as cond
from webhook_operator.api.v1alpha1 import MAX_FILTER_LENGTH, WebhookEndpointSpec
from webhook_operator.controller.reconcile_endpoint import filter_condition
from webhook_operator.delivery import ingest
from webhook_operator.delivery.registry import AppConfig, EndpointConfig, endpoint_config
from webhook_operator.event_filter import (
    Bindings,
    InvalidFilter,
    Verdict,
    check,
    compile_filter,
)

EUR = 'data.amount > 1000 && data.currency == "EUR"'


def event(data: Any, type_: str = "invoice.paid") -> Bindings:
    return Bindings(type_, "evt_1", "2026-12-02T13:00:00.000Z", data)


def invalid(source: str) -> str:
    with pytest.raises(InvalidFilter) as refused:
        check(source)
    return str(refused.value)


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        (EUR, {"amount": 1500, "currency": "EUR"}, True),
        (EUR, {"amount": 500, "currency": "EUR"}, False),
        (EUR, {"amount": 1500, "currency": "USD"}, False),
        # JSON numbers with a fraction are doubles: CEL compares them with ints.
        (EUR, {"amount": 1000.5, "currency": "EUR"}, True),
        ('type == "invoice.paid"', {}, True),
        ('type.startsWith("invoice.") && id == "evt_1"', None, True),
        ('timestamp(timestamp) > timestamp("2026-01-01T00:00:00Z")', None, True),
        ('has(data.customer) && data.customer.country in ["DE", "FR"]', {"x": 1}, False),
        ("data.lines.exists(l, l.quantity > 3)", {"lines": [{"quantity": 5}]}, True),
        ("size(data) == 2", [1, 2], True),
    ],
)
def test_a_filter_answers_for_the_event(source: str, data: Any, expected: bool) -> None:
    assert compile_filter(source).evaluate(event(data)) is expected


@pytest.mark.parametrize(
    "data",
    [
        {},  # no such field
        {"amount": "1500", "currency": "EUR"},  # a string where a number is compared
        [1, 2],  # data is not an object
        None,
        {"amount": 2**70, "currency": "EUR"},  # beyond CEL's 64-bit integers
    ],
)
def test_a_filter_that_fails_on_an_event_says_so(data: Any) -> None:
    assert compile_filter(EUR).evaluate(event(data)) is Verdict.ERROR


def test_a_filter_that_answers_no_bool_says_so() -> None:
    # data is dynamic: the checker cannot know the field is not a bool.
    assert compile_filter("data.flag").evaluate(event({"flag": "yes"})) is Verdict.NOT_BOOL
    assert compile_filter("data.flag").evaluate(event({"flag": True})) is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("dta.amount > 1", "1:4: undeclared reference to 'dta.amount'"),
        ("data.amount >", "1:14: Syntax error: mismatched input '<EOF>'"),
        ("data.amount + 1", "the filter must evaluate to a bool, not int"),
        (
            "size(data) > 'a'",
            "1:12: found no matching overload for '_>_' applied to '(int, string)'",
        ),
        ("x == y", "1:1: undeclared reference to 'x'; 1:6: undeclared reference to 'y'"),
        ("  ", "the filter is empty; remove the field to receive every event"),
        ("true" + " " * MAX_FILTER_LENGTH, "at most 4096"),
    ],
)
def test_a_filter_that_does_not_compile_gets_the_compilers_message(
    source: str, message: str
) -> None:
    said = invalid(source)
    assert message in said
    assert "\n" not in said  # a condition message is one line; no caret drawing
    assert "container" not in said  # how the variables are declared is not the user's


def test_a_filter_that_does_not_compile_matches_nothing() -> None:
    broken = compile_filter("data.amount >")
    assert broken.error is not None
    assert broken.evaluate(event({"amount": 1})) is Verdict.INVALID


def test_filters_compare_by_source_so_an_unchanged_endpoint_is_unchanged() -> None:
    assert compile_filter(EUR) == compile_filter(EUR)
    assert compile_filter(EUR) != compile_filter("true")


# -- in ingest --------------------------------------------------------------------------


def endpoint(name: str, filter_: str | None) -> EndpointConfig:
    spec: dict[str, Any] = {
        "appRef": {"name": "app"},
        "url": f"https://example.test/{name}",
        "events": ["*"],
    }
    if filter_ is not None:
        spec["filter"] = filter_
    config = endpoint_config({"metadata": {"namespace": "ns", "name": name}, "spec": spec}, None)
    assert config is not None
    return config


def test_the_registry_compiles_the_filter_of_an_endpoint() -> None:
    assert endpoint("a", None).filter is None
    compiled = endpoint("b", EUR).filter
    assert compiled is not None
    assert compiled.source == EUR
    assert compiled.error is None


def test_ingest_delivers_to_endpoints_whose_filter_passes_and_reports_the_failures() -> None:
    subscribers = [
        endpoint("plain", None),
        endpoint("eur", EUR),
        endpoint("usd", 'data.currency == "USD"'),
        endpoint("fails", "data.missing.deeper == 1"),
        endpoint("not-bool", "data.currency"),
        endpoint("broken", "data.amount >"),
    ]
    reported: list[tuple[str, Verdict]] = []
    submitted = ingest.Submitted("invoice.paid", None, {"amount": 1500, "currency": "EUR"})
    event_, deliveries = ingest.build(
        "ns",
        AppConfig("ns", "app", {}),
        submitted,
        subscribers,
        lambda _: False,
        1_800_000_000.0,
        lambda ep, verdict: reported.append((ep.name, verdict)),
    )
    assert [d.endpoint for d in deliveries] == ["plain", "eur"]
    assert reported == [
        ("fails", Verdict.ERROR),
        ("not-bool", Verdict.NOT_BOOL),
        ("broken", Verdict.INVALID),
    ]
    assert event_.type == "invoice.paid"


def test_the_filter_sees_the_events_id_and_timestamp_as_the_payload_carries_them() -> None:
    now = 1_800_000_000.0
    submitted = ingest.Submitted("t", None, {})
    probe = endpoint("probe", 'id.startsWith("evt_") && timestamp == "2027-01-15T08:00:00.000Z"')
    _, deliveries = ingest.build(
        "ns", AppConfig("ns", "app", {}), submitted, [probe], lambda _: False, now
    )
    assert [d.endpoint for d in deliveries] == ["probe"]


# -- in the operator ----------------------------------------------------------------------


def spec(filter_: str | None) -> WebhookEndpointSpec:
    return WebhookEndpointSpec.model_validate(
        {
            "appRef": {"name": "app"},
            "url": "https://example.test/",
            "events": ["*"],
            "filter": filter_,
        }
    )


def test_the_operator_says_whether_the_filter_compiles() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert filter_condition(spec(None), 3, now) is None
    valid = filter_condition(spec(EUR), 3, now)
    assert valid is not None
    assert (valid.type, valid.status, valid.reason) == ("FilterValid", "True", "FilterCompiled")
    broken = filter_condition(spec("dta.amount > 1"), 3, now)
    assert broken is not None
    assert (broken.status, broken.reason, broken.observed_generation) == (
        "False",
        "InvalidFilter",
        3,
    )
    assert broken.message == (
        "spec.filter does not compile, so no event is delivered:"
        " 1:4: undeclared reference to 'dta.amount'"
    )
    # Ready carries the first failing part's reason, so this one when the rest is fine.
    ready = cond.ready([valid, broken], 3, now)
    assert (ready.status, ready.reason) == ("False", "InvalidFilter")
