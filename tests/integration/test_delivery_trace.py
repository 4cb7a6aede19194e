"""Trace context (issue 16, item 6): a producer's W3C `traceparent` sent at ingest is kept
with the event and sent with every attempt (the first, retries, a resend), so the
producer's trace continues into the receiver; a malformed one is refused with a reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import Cluster, DeliveryProcess, Receiver, eventually
from tests.integration.test_delivery import deliveries, emit, endpoint, setup_app
from tests.integration.test_delivery_batch import emit_batch

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("operator")]

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def traceparents(receiver: Receiver, path: str) -> list[str | None]:
    def header(request: dict[str, Any]) -> str | None:
        found = {k.lower(): v for k, v in request["headers"].items()}
        return found.get("traceparent")

    return [header(r) for r in receiver.received(path)]


def test_every_attempt_carries_the_producers_traceparent(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    # The first attempt fails: the retry must carry the same trace context.
    receiver.respond("/hook", (500, {}, 0.0), (204, {}, 0.0))
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", receiver.url("/hook"), retry={"schedule": ["1s"]}),
    )
    sent = emit(delivery_service, namespace, producer, headers={"traceparent": TRACE})
    assert sent.status_code == 202, sent.text
    eventually(lambda: len(receiver.received("/hook")) >= 2, timeout=30, what="a retry")
    assert traceparents(receiver, "/hook")[:2] == [TRACE, TRACE]

    # A resend is another attempt of the same event: the same trace.
    [first] = deliveries(delivery_service, namespace, producer, "ep")["items"]
    resent = httpx.post(
        f"{delivery_service.url}/v1/namespaces/{namespace}/deliveries/{first['id']}/resend",
        headers=producer.headers,
        timeout=10,
    )
    assert resent.status_code in (200, 202), resent.text
    eventually(lambda: len(receiver.received("/hook")) >= 3, timeout=30, what="the resend")
    assert traceparents(receiver, "/hook") == [TRACE, TRACE, TRACE]

    # An event without one sends none.
    emit(delivery_service, namespace, producer, data={"invoiceId": "untraced"})
    eventually(lambda: len(receiver.received("/hook")) >= 4, timeout=30, what="the untraced event")
    assert traceparents(receiver, "/hook")[3] is None


def test_a_batch_shares_its_requests_traceparent(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/batch")))
    events = [{"type": "invoice.paid", "data": {"n": n}} for n in range(3)]
    answer = emit_batch(
        delivery_service, namespace, producer, *events, headers={"traceparent": OTHER}
    )
    assert answer.status_code == 200, answer.text
    eventually(lambda: len(receiver.received("/batch")) >= 3, timeout=30, what="the batch")
    assert traceparents(receiver, "/batch") == [OTHER] * 3


MALFORMED = [
    "not-a-trace",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 has no more
]


def test_a_malformed_traceparent_is_refused_with_a_reason(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/bad")))
    for header in MALFORMED:
        refused = emit(delivery_service, namespace, producer, headers={"traceparent": header})
        assert refused.status_code == 400, (header, refused.text)
        error = refused.json()["error"]
        assert error["reason"] == "InvalidTraceparent", header
        assert "W3C trace context" in error["message"]
        batch = emit_batch(
            delivery_service,
            namespace,
            producer,
            {"type": "invoice.paid", "data": {}},
            headers={"traceparent": header},
        )
        assert batch.status_code == 400, (header, batch.text)
        assert batch.json()["error"]["reason"] == "InvalidTraceparent"
    assert deliveries(delivery_service, namespace, producer, "ep")["items"] == []
