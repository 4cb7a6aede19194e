"""The delivery service's history filtered by event type, and replay within a window
[since, until): through the real HTTP API, with a real receiver and store."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Producer, Receiver, eventually
from tests.integration.test_delivery import emit, endpoint, setup_app


@pytest.fixture(autouse=True)
def _services(operator: OperatorProcess, delivery_service: DeliveryProcess) -> None:
    assert delivery_service.process is not None
    assert delivery_service.process.poll() is None, delivery_service.log()[-3000:]


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def listing(
    svc: DeliveryProcess, namespace: str, producer: Producer, path: str, params: Any
) -> httpx.Response:
    return httpx.get(
        f"{svc.url}/v1/namespaces/{namespace}/{path}",
        params=params,
        headers=producer.headers,
        timeout=10,
    )


def types_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["eventType"] for item in response.json()["items"]]


def test_deliveries_filtered_by_event_type(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    for type_ in ("invoice.paid", "invoice.created", "invoice.paid"):
        assert emit(delivery_service, namespace, producer, type_).status_code == 202
    eventually(lambda: len(receiver.received("/hook")) == 3, timeout=20)

    for path in ("endpoints/ep/deliveries", "apps/billing/deliveries"):

        def types(params: Any, path: str = path) -> list[str]:
            return types_of(listing(delivery_service, namespace, producer, path, params))

        assert types({"eventType": "invoice.paid"}) == ["invoice.paid"] * 2
        assert types({"eventType": "invoice.created"}) == ["invoice.created"]
        both = ["invoice.paid", "invoice.created", "invoice.paid"]
        assert types({"eventType": "invoice.paid,invoice.created"}) == both
        assert types([("eventType", "invoice.paid"), ("eventType", "invoice.created")]) == both
        assert types({"eventType": "invoice.paid", "status": "failed"}) == []
        assert types({"eventType": "invoice.refunded"}) == []
        first = listing(
            delivery_service, namespace, producer, path, {"eventType": "invoice.paid", "limit": 1}
        ).json()
        rest = types({"eventType": "invoice.paid", "cursor": first["next"]})
        assert (len(first["items"]), rest) == (1, ["invoice.paid"])

        for bad in ("invoice.*", "Invoice.Paid", "", "invoice.paid,,", "a" * 257, "in voice"):
            refused = listing(delivery_service, namespace, producer, path, {"eventType": bad})
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["error"]["reason"] == "BadEventType"


def test_replay_within_a_window(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    before = time.time() - 1
    emit(delivery_service, namespace, producer, data={"invoiceId": "early"})
    eventually(lambda: len(receiver.received("/hook")) == 1, timeout=20)
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    emit(delivery_service, namespace, producer, data={"invoiceId": "late"})
    eventually(lambda: len(receiver.received("/hook")) == 2, timeout=20)

    def replay(body: Any) -> httpx.Response:
        return httpx.post(
            f"{delivery_service.url}/v1/namespaces/{namespace}/endpoints/ep/replay",
            json=body,
            headers=producer.headers,
            timeout=10,
        )

    window = {"since": rfc3339(before), "until": rfc3339(between), "statuses": ["delivered"]}
    answer = replay(window)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"replayed": 1}
    eventually(lambda: len(receiver.received("/hook")) == 3, timeout=20)
    again = json.loads(receiver.received("/hook")[-1]["body"])
    assert again["data"] == {"invoiceId": "early"}

    # Without until: everything since, the copy made just now included.
    answer = replay({"since": rfc3339(before), "statuses": ["delivered"]})
    assert answer.json() == {"replayed": 3}

    for body, reason in (
        ({"since": rfc3339(before), "until": "tomorrow"}, "BadUntil"),
        ({"since": rfc3339(before), "until": 1_800_000_000}, "BadUntil"),
        ({"since": rfc3339(between), "until": rfc3339(before)}, "BadUntil"),
        ({"since": "2026-01-01T00:00:00"}, "BadSince"),  # no offset: whose midnight?
        ({"until": rfc3339(between)}, "MissingSince"),
    ):
        refused = replay(body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["reason"] == reason, body
    unknown = replay({"since": rfc3339(before), "from": "x"})
    assert unknown.status_code == 422, unknown.text
    assert "from" in unknown.json()["error"]["message"]
