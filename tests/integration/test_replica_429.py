"""A receiver's 429 slows every replica, also for an endpoint without a rate limit (issue
17, item 2): three delivery-service replicas on one PostgreSQL database.

The receiver answers the first request 429 with `Retry-After: 3`, then 204. The replica
that got it records the wait in the store, and every replica reads it within a refresh
of endpoint states (0.5 s). So a second after the 429 the test emits events round-robin
to the three replicas: none is sent before the Retry-After has passed (2.5 s after the
429: slack for the replicas' own clocks), then each arrives exactly once, and the event
answered 429 once more."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.harness import Cluster, DeliveryProcess, Receiver, eventually
from tests.integration.test_delivery import emit, endpoint, setup_app
from tests.integration.test_delivery_batch import emit_batch
from tests.integration.test_replicas_state import known_everywhere
from tests.replicas import arrivals

pytestmark = pytest.mark.usefixtures("operator")

REPLICAS = 3
RETRY_AFTER = 3.0
SLACK = 0.5
# Every replica knows of the 429 this long after it (a refresh is every 0.5 s).
LEARN = 1.0
PER_REPLICA = 10
EVENTS = 1 + REPLICAS * PER_REPLICA


def test_a_429_holds_back_every_replica_without_a_rate_limit(
    cluster: Cluster, namespace: str, receiver: Receiver, replicas: list[DeliveryProcess]
) -> None:
    receiver.respond("/busy", (429, {"Retry-After": f"{RETRY_AFTER:g}"}, 0.0), (204, {}, 0.0))
    # A retry schedule shorter than the Retry-After: the 429's own retry waits for it too.
    busy = endpoint("ep", receiver.url("/busy"), retry={"schedule": ["1s"]})
    producer = setup_app(cluster, namespace, receiver, busy)
    known_everywhere(replicas, namespace, producer, "ep")
    response = emit(replicas[0], namespace, producer, data={"n": 0})
    assert response.status_code in (200, 202), response.text
    eventually(lambda: receiver.received("/busy"), timeout=10, what="the first request")
    refused_at = float(receiver.received("/busy")[0]["at"])
    time.sleep(max(refused_at + LEARN - time.time(), 0.0))
    for r, replica in enumerate(replicas):
        events = [
            {"type": "invoice.paid", "data": {"n": 1 + r * PER_REPLICA + i}}
            for i in range(PER_REPLICA)
        ]
        response = emit_batch(replica, namespace, producer, *events)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == PER_REPLICA, response.text
    eventually(
        lambda: len(receiver.received("/busy")) >= EVENTS + 1,
        timeout=RETRY_AFTER + 20,
        what=f"{EVENTS} events delivered after the 429",
    )
    time.sleep(1.0)  # a request sent twice would arrive by now
    requests = receiver.received("/busy")
    after = sorted(float(r["at"]) - refused_at for r in requests[1:])
    assert after[0] >= RETRY_AFTER - SLACK, f"requests {after} s after the 429"
    counts, ids = arrivals(receiver, "/busy")
    assert counts == Counter({0: 2, **{n: 1 for n in range(1, EVENTS)}}), counts
    # One webhook-id per event (the 429's retry repeats its own), none shared.
    assert all(len(found) == 1 for found in ids.values()), ids
    assert len({i for found in ids.values() for i in found}) == EVENTS
