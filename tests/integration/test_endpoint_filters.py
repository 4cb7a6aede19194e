"""Endpoint payload filters (spec.filter) end to end: the real apiserver checks the field,
the real operator reports a filter that does not compile, and the real delivery service
sends an event only to the endpoints whose filter passes it, counting in its metrics the
events a filter failed on."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Receiver, eventually
from tests.integration.test_delivery import apply, emit, endpoint, get, setup_app
from tests.integration.test_operator import events

EUR = 'data.amount > 1000 && data.currency == "EUR"'


@pytest.fixture(autouse=True)
def _services(operator: OperatorProcess, delivery_service: DeliveryProcess) -> None:
    assert delivery_service.process is not None
    assert delivery_service.process.poll() is None, delivery_service.log()[-3000:]


def received_data(receiver: Receiver, path: str) -> list[Any]:
    return [json.loads(r["body"])["data"] for r in receiver.received(path)]


def filter_errors(svc: DeliveryProcess, namespace: str, endpoint_name: str, reason: str) -> float:
    text = httpx.get(svc.metrics_url, timeout=10).text
    pattern = (
        rf'^webhook_filter_errors_total\{{(?=[^}}]*namespace="{re.escape(namespace)}")'
        rf'(?=[^}}]*endpoint="{re.escape(endpoint_name)}")(?=[^}}]*reason="{reason}")'
        r"[^}]*\} (\S+)$"
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    status = get(cluster, namespace, "webhookendpoints", name).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def test_an_endpoint_receives_only_the_events_its_filter_passes(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("all", receiver.url("/all")),
        endpoint("big-eur", receiver.url("/big-eur"), filter=EUR),
        endpoint("paid", receiver.url("/paid"), filter='type == "invoice.paid"'),
    )
    assert condition(cluster, namespace, "big-eur", "FilterValid")["status"] == "True"  # type: ignore[index]
    sent = [
        ("invoice.paid", {"amount": 1500, "currency": "EUR"}, 3),
        ("invoice.paid", {"amount": 500, "currency": "EUR"}, 2),
        ("invoice.created", {"amount": 2000, "currency": "USD"}, 1),
        ("invoice.created", {"amount": 2000.5, "currency": "EUR"}, 2),
    ]
    for type_, data, expected in sent:
        response = emit(delivery_service, namespace, producer, type_, data)
        assert response.status_code == 202, response.text
        assert response.json()["deliveries"] == expected, (type_, data)

    eventually(lambda: len(receiver.received("/all")) == 4, what="every event at /all")
    eventually(lambda: len(receiver.received("/big-eur")) == 2, what="two at /big-eur")
    eventually(lambda: len(receiver.received("/paid")) == 2, what="two at /paid")
    assert sorted(d["amount"] for d in received_data(receiver, "/big-eur")) == [1500, 2000.5]
    assert filter_errors(delivery_service, namespace, "big-eur", "error") == 0


def test_a_filter_that_fails_on_one_event_drops_that_event_only(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("all", receiver.url("/all")),
        endpoint("big-eur", receiver.url("/big-eur"), filter=EUR),
        endpoint("flagged", receiver.url("/flagged"), filter="data.flag"),
    )
    events = [
        {"amount": 1500, "currency": "EUR", "flag": True},
        {"currency": "EUR", "flag": "yes"},  # no amount: fails; flag is no bool
        {"amount": "1500", "currency": "EUR"},  # a string compared with a number
        {"amount": 3000, "currency": "EUR", "flag": False},
    ]
    answers = [emit(delivery_service, namespace, producer, data=data) for data in events]
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert [a.json()["deliveries"] for a in answers] == [3, 1, 1, 2]

    eventually(lambda: len(receiver.received("/all")) == 4, what="every event at /all")
    eventually(lambda: len(receiver.received("/big-eur")) == 2, what="two at /big-eur")
    assert [d["amount"] for d in received_data(receiver, "/big-eur")] == [1500, 3000]
    eventually(lambda: len(receiver.received("/flagged")) == 1, what="one at /flagged")
    assert filter_errors(delivery_service, namespace, "big-eur", "error") == 2
    # The second event has no flag that is a bool; the third none at all.
    assert filter_errors(delivery_service, namespace, "flagged", "not_bool") == 1
    assert filter_errors(delivery_service, namespace, "flagged", "error") == 1
    said = [
        line
        for line in delivery_service.log().splitlines()
        if f"endpoint {namespace}/big-eur: its filter" in line
    ]
    assert len(said) == 1, said  # logged once, however many events it fails on
    assert "failed on an event" in said[0]
    assert "currency" not in said[0]  # never the producer's data


def test_a_filter_that_does_not_compile_sets_invalid_filter_and_receives_nothing(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("all", receiver.url("/all")))
    apply(
        cluster,
        namespace,
        endpoint("typo", receiver.url("/typo"), filter="dta.amount > 1000"),
    )

    def invalid() -> dict[str, Any] | None:
        ready = condition(cluster, namespace, "typo", "Ready")
        return ready if ready and ready["reason"] == "InvalidFilter" else None

    ready: dict[str, Any] = eventually(invalid, what="Ready=False/InvalidFilter")  # type: ignore[assignment]
    assert ready["status"] == "False"
    assert ready["message"] == (
        "spec.filter does not compile, so no event is delivered:"
        " 1:4: undeclared reference to 'dta.amount'"
    )
    filter_valid = condition(cluster, namespace, "typo", "FilterValid")
    assert filter_valid is not None
    assert (filter_valid["status"], filter_valid["reason"]) == ("False", "InvalidFilter")
    described = cluster.kubectl("describe", "whe", "typo", "-n", namespace).stdout
    assert "undeclared reference to 'dta.amount'" in described
    eventually(
        lambda: (
            ("Warning", "InvalidFilter", ready["message"]) in events(cluster, namespace, "typo")
        ),
        what="a Warning event InvalidFilter",
    )

    # The delivery service has the broken filter too once it counts it as such.
    def counted() -> bool:
        response = emit(delivery_service, namespace, producer, data={"amount": 5000})
        assert response.status_code == 202, response.text
        return filter_errors(delivery_service, namespace, "typo", "invalid") > 0

    eventually(counted, what="the delivery service counts the invalid filter")
    assert receiver.received("/typo") == []

    # Fixed, the endpoint turns Ready and receives what passes.
    cluster.kubectl(
        "patch", "whe", "typo", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"filter": "data.amount > 1000"}}),
    )  # fmt: skip
    eventually(
        lambda: (condition(cluster, namespace, "typo", "Ready") or {}).get("status") == "True",
        what="Ready again once fixed",
    )

    def delivered() -> bool:
        emit(delivery_service, namespace, producer, data={"amount": 5000})
        return bool(receiver.received("/typo"))

    eventually(delivered, interval=0.5, what="the fixed filter passes an event")

    # Without a filter, nothing is said about one.
    cluster.kubectl(
        "patch", "whe", "typo", "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/filter"}]),
    )  # fmt: skip
    eventually(
        lambda: condition(cluster, namespace, "typo", "FilterValid") is None,
        what="FilterValid gone with the filter",
    )


def test_the_apiserver_refuses_a_filter_over_4096_characters(
    cluster: Cluster, namespace: str, receiver: Receiver
) -> None:
    too_long = "true" + " && true" * 512
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=json.dumps(endpoint("long", receiver.url("/long"), filter=too_long)),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "spec.filter: Too long: may not be" in result.stderr
    assert "4096" in result.stderr


def test_kubectl_explain_describes_the_filter(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "webhookendpoint.spec.filter").stdout
    assert "CEL expression over the event" in out
    assert "InvalidFilter" in out
