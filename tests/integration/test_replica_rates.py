"""An endpoint's rate limit and concurrency across three delivery-service replicas on one
PostgreSQL database (issue 17, items 2 and 5): the replicas take send slots from one
budget in the store, so together they send at the endpoint's rate, not three times it;
and concurrency slots from one record, so together they have at most maxConcurrency
requests in flight to it.

Two hundred events are emitted round-robin to the replicas, in batches of 20, faster
than the endpoint's 20 per second, so every replica has a backlog for it; the receiver's
arrivals in every whole second stay at most 10 % above 20, and at least 10 % below
while the backlog lasts (not the first second, partial, nor the last two, when the last
few claims come back from the store one poll at a time), and so does the rate from the
first arrival to the last."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from tests.harness import Cluster, DeliveryProcess, Receiver, eventually
from tests.integration.test_delivery import endpoint, setup_app
from tests.integration.test_delivery_batch import emit_batch
from tests.integration.test_replicas_state import known_everywhere

pytestmark = pytest.mark.usefixtures("operator")

REPLICAS = 3
RATE = 20
EVENTS = 200
BATCH = 20
TOLERANCE = 0.10


def per_second(times: list[float]) -> list[int]:
    """Arrivals in each whole second from the first arrival."""
    first = min(times)
    bins = Counter(math.floor(at - first) for at in times)
    return [bins.get(second, 0) for second in range(max(bins) + 1)]


def test_three_replicas_keep_an_endpoint_to_its_rate(
    cluster: Cluster, namespace: str, receiver: Receiver, replicas: list[DeliveryProcess]
) -> None:
    limited = endpoint("ep", receiver.url("/rated"), rateLimit={"perSecond": RATE, "burst": 1})
    producer = setup_app(cluster, namespace, receiver, limited)
    known_everywhere(replicas, namespace, producer, "ep")
    # In batches of the batch route: one event at a time, ingest on a busy test machine
    # is slower than the endpoint's rate, and the run would measure the producer.
    for n in range(EVENTS // BATCH):
        events = [{"type": "invoice.paid", "data": {"n": n * BATCH + i}} for i in range(BATCH)]
        response = emit_batch(replicas[n % REPLICAS], namespace, producer, *events)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == BATCH, response.text
    eventually(
        lambda: len(receiver.received("/rated")) >= EVENTS,
        timeout=EVENTS / RATE + 5,
        what=f"{EVENTS} deliveries at {RATE}/s",
    )
    times = [float(r["at"]) for r in receiver.received("/rated")]
    counts = per_second(times)
    low, high = RATE * (1 - TOLERANCE), RATE * (1 + TOLERANCE)
    assert max(counts) <= high, f"arrivals per second {counts}, limit {RATE}"
    full = counts[1:-2]  # the first second is partial, the last two drain the backlog
    assert full, f"arrivals per second {counts}: too short a run to measure"
    assert min(full) >= low, f"arrivals per second {counts}, limit {RATE}"
    overall = (len(times) - 1) / (max(times) - min(times))
    assert low <= overall <= high, f"{overall:.1f}/s over the run, limit {RATE}"


CONCURRENCY = 2
SLOW = 0.25  # the receiver's answer time
SLOW_EVENTS = 30


def most_in_flight(times: list[float], answer: float) -> int:
    """The most arrivals within any span shorter than the answer time: a request can
    start only when another has been answered, so this is the most in flight at once."""
    times = sorted(times)
    return max(
        sum(1 for other in times[i:] if other - start < answer) for i, start in enumerate(times)
    )


def test_three_replicas_keep_an_endpoint_to_its_concurrency(
    cluster: Cluster, namespace: str, receiver: Receiver, replicas: list[DeliveryProcess]
) -> None:
    receiver.respond("/slow", (204, {}, SLOW))
    limited = endpoint("ep", receiver.url("/slow"), maxConcurrency=CONCURRENCY)
    producer = setup_app(cluster, namespace, receiver, limited)
    known_everywhere(replicas, namespace, producer, "ep")
    # Every replica gets a backlog for the endpoint at once.
    for n in range(REPLICAS):
        share = SLOW_EVENTS // REPLICAS
        events = [{"type": "invoice.paid", "data": {"n": n * share + i}} for i in range(share)]
        response = emit_batch(replicas[n], namespace, producer, *events)
        assert response.status_code == 200, response.text
    ideal = SLOW_EVENTS * SLOW / CONCURRENCY
    eventually(
        lambda: len(receiver.received("/slow")) >= SLOW_EVENTS,
        timeout=ideal * 3 + 10,
        what=f"{SLOW_EVENTS} deliveries, {CONCURRENCY} at a time",
    )
    times = [float(r["at"]) for r in receiver.received("/slow")]
    # A little under the answer time: the next request may start just as one is answered.
    assert most_in_flight(times, SLOW * 0.9) == CONCURRENCY, sorted(t - min(times) for t in times)
    # And the replicas share the slots rather than starve one another.
    assert max(times) - min(times) <= ideal * 2, f"{max(times) - min(times):.1f}s, ideal {ideal}s"
