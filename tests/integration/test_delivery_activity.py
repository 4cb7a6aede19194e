"""The delivery service's activity series through its real HTTP API: an app's deliveries
per hour of creation, delivered and not got through, over a window of whole hours; RBAC
like the app's deliveries list."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Producer, Receiver, eventually
from tests.integration.test_delivery import emit, endpoint, setup_app


@pytest.fixture(autouse=True)
def _services(operator: OperatorProcess, delivery_service: DeliveryProcess) -> None:
    assert delivery_service.process is not None
    assert delivery_service.process.poll() is None, delivery_service.log()[-3000:]


def activity(
    svc: DeliveryProcess, namespace: str, producer: Producer, **params: Any
) -> httpx.Response:
    return httpx.get(
        f"{svc.url}/v1/namespaces/{namespace}/apps/billing/activity",
        params=params,
        headers=producer.headers,
        timeout=10,
    )


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_activity_counts_delivered_and_failing_per_hour(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/down", (500, {}, 0.0))
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("up", receiver.url("/up")),
        # Retried long after the test ends: each failure stays failed while it looks.
        endpoint("down", receiver.url("/down"), retry={"schedule": ["1h"]}),
    )
    started = time.time()
    for _ in range(3):
        assert emit(delivery_service, namespace, producer).status_code == 202

    def settled() -> dict[str, Any] | None:
        response = activity(delivery_service, namespace, producer)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        totals = [sum(b[k] for b in answer["buckets"]) for k in ("delivered", "failed")]
        return answer if totals == [3, 3] else None

    answer = eventually(settled, timeout=30, what="3 delivered and 3 failed")
    assert isinstance(answer, dict)
    buckets = answer["buckets"]
    assert answer["bucketSeconds"] == 3600
    assert len(buckets) == 24
    since = epoch(answer["since"])
    assert since % 3600 == 0
    assert since == epoch(buckets[0]["start"])
    assert [epoch(b["start"]) - since for b in buckets] == [i * 3600.0 for i in range(24)]
    # The hour the events were emitted in holds them all.
    made = next(b for b in buckets if epoch(b["start"]) <= started < epoch(b["start"]) + 3600)
    assert (made["delivered"], made["failed"]) == (3, 3)

    two = activity(delivery_service, namespace, producer, hours=2)
    assert two.status_code == 200, two.text
    assert len(two.json()["buckets"]) == 2
    for bad in ("0", "169", "x", "-1", "1.5"):
        refused = activity(delivery_service, namespace, producer, hours=bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"]["reason"] == "BadHours"

    # RBAC: list on the app, like its deliveries.
    emitter = Producer(cluster, namespace, ["billing"], name="emitter", verbs=("emit",))
    assert activity(delivery_service, namespace, emitter).status_code == 403
    other = Producer(cluster, namespace, ["other"], name="other-app")
    assert activity(delivery_service, namespace, other).status_code == 403
    assert httpx.get(
        f"{delivery_service.url}/v1/namespaces/{namespace}/apps/billing/activity", timeout=10
    ).status_code in (401, 403)
