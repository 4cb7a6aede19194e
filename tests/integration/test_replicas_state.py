"""Endpoint delivery state with three delivery-service replicas on one PostgreSQL
database: what one replica decides about an endpoint holds for the others (issue 17,
items 1 and 5).

- An endpoint a replica disables (410 Gone) receives nothing new from any replica
  within 2 s; what is emitted to any of them is held; every replica's gauge says 1.
- The `enable` annotation releases the held deliveries, each delivered exactly once
  (counted by webhook-id at the receiver) while all replicas run and all see it.
- A paused endpoint (spec.active false) holds on every replica, pings included;
  resuming delivers each held delivery once.

The operator feeds only the session's SQLite delivery service; here it only makes the
endpoints Ready. The replicas read the same WebhookEndpoints and share one database."""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.harness import Cluster, DeliveryProcess, Producer, Receiver, eventually
from tests.integration.test_delivery import apply, deliveries, emit, endpoint, setup_app

pytestmark = pytest.mark.usefixtures("operator")

GAUGE = re.compile(r"^webhook_endpoints_disabled (\S+)$", re.MULTILINE)
# The bound: an endpoint disabled by one replica gets nothing new from any within.
STOPS_WITHIN = 2.0
REPLICAS = 3


def known_everywhere(
    replicas: list[DeliveryProcess], namespace: str, producer: Producer, name: str
) -> None:
    """Every replica has the endpoint from its watch (an event emitted to one that has
    not would simply have no delivery for it)."""

    def known() -> bool:
        return all(
            httpx.get(
                f"{r.url}/v1/namespaces/{namespace}/endpoints/{name}/deliveries",
                headers=producer.headers,
                timeout=10,
            ).status_code
            == 200
            for r in replicas
        )

    eventually(known, timeout=20, what=f"every replica knows endpoint {name}")


def gauges(replicas: list[DeliveryProcess]) -> list[float]:
    values = []
    for replica in replicas:
        text = httpx.get(replica.metrics_url, timeout=10).text
        found = GAUGE.search(text)
        assert found is not None, text
        values.append(float(found.group(1)))
    return values


def accepted(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["deliveries"] == 1, body
    event_id: str = body["eventId"]
    return event_id


def event_ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["eventId"] for item in items}


def disabled_by_gone(
    cluster: Cluster,
    namespace: str,
    receiver: Receiver,
    replicas: list[DeliveryProcess],
    path: str,
) -> tuple[Producer, list[DeliveryProcess], float]:
    """Endpoint `ep` answering 410 to its first delivery: (producer, the replicas with
    the one that disabled it last, when the 410 was answered)."""
    receiver.respond(path, (410, {}, 0.0))
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url(path)))
    known_everywhere(replicas, namespace, producer, "ep")
    accepted(emit(replicas[0], namespace, producer, id_="first"))
    answered: list[dict[str, Any]] = eventually(  # type: ignore[assignment]
        lambda: receiver.received(path), timeout=20, what="first attempt"
    )
    said = f"endpoint {namespace}/ep disabled: Gone"
    found: list[DeliveryProcess] = eventually(  # type: ignore[assignment]
        lambda: [r for r in replicas if said in r.log()], timeout=10, what="a replica disabled it"
    )
    (first,), (disabler,) = answered, found
    others = [r for r in replicas if r is not disabler]
    return producer, [*others, disabler], float(first["at"])


def test_an_endpoint_one_replica_disabled_gets_nothing_new_from_either(
    cluster: Cluster, namespace: str, receiver: Receiver, replicas: list[DeliveryProcess]
) -> None:
    producer, others_first, gone_at = disabled_by_gone(
        cluster, namespace, receiver, replicas, "/gone"
    )
    # Events keep coming to every replica, the ones that did not disable it first, for a
    # second past the bound.
    emitted: list[tuple[float, str]] = []
    while time.time() < gone_at + STOPS_WITHIN + 1.0:
        for replica in others_first:
            at = time.time()
            emitted.append((at, accepted(emit(replica, namespace, producer))))
        time.sleep(0.1)
    time.sleep(1.0)  # anything still on its way arrives

    late = [r["at"] - gone_at for r in receiver.received("/gone") if r["at"] > gone_at + 2.0]
    assert late == [], f"requests {late} s after the endpoint was disabled"
    # What was emitted after the bound is held, to whichever replica it was emitted.
    after = {event_id for at, event_id in emitted if at > gone_at + STOPS_WITHIN}
    assert after
    for replica in replicas:
        held = deliveries(replica, namespace, producer, "ep", status="held", limit=100)["items"]
        assert after <= event_ids(held)
    eventually(
        lambda: gauges(replicas) == [1.0] * REPLICAS, timeout=STOPS_WITHIN, what="every gauge 1"
    )


def test_enable_releases_held_deliveries_once_with_every_replica_running(
    cluster: Cluster, namespace: str, receiver: Receiver, replicas: list[DeliveryProcess]
) -> None:
    producer, _, _ = disabled_by_gone(cluster, namespace, receiver, replicas, "/hook")
    eventually(lambda: gauges(replicas) == [1.0] * REPLICAS, timeout=5, what="every gauge 1")
    held = [
        accepted(emit(replicas[n % REPLICAS], namespace, producer, data={"n": n}))
        for n in range(10)
    ]

    def all_held() -> bool:
        items = deliveries(replicas[0], namespace, producer, "ep", status="held", limit=100)
        return event_ids(items["items"]) == set(held)

    eventually(all_held, timeout=10, what="ten deliveries held")
    assert len(receiver.received("/hook")) == 1

    receiver.respond("/hook", (204, {}, 0.0))
    cluster.kubectl(
        "annotate", "whe", "ep", "-n", namespace, "webhook-operator.dev/enable=after-gone"
    )
    eventually(
        lambda: len(receiver.received("/hook")) >= 11, timeout=20, what="held deliveries sent"
    )
    time.sleep(1.5)  # a second release, or another replica's, would show by now
    sent = Counter(r["headers"]["webhook-id"] for r in receiver.received("/hook")[1:])
    assert sent == Counter(held), "each held delivery exactly once"
    for replica in replicas:
        page = deliveries(replica, namespace, producer, "ep", status="delivered", limit=100)
        assert event_ids(page["items"]) == set(held)
        assert deliveries(replica, namespace, producer, "ep", status="held")["items"] == []
    eventually(lambda: gauges(replicas) == [0.0] * REPLICAS, timeout=5, what="every gauge 0")


def test_a_paused_endpoint_holds_on_every_replica(
    cluster: Cluster, namespace: str, receiver: Receiver, replicas: list[DeliveryProcess]
) -> None:
    paused = endpoint("ep", receiver.url("/paused"), active=False)
    producer = setup_app(cluster, namespace, receiver, paused)
    known_everywhere(replicas, namespace, producer, "ep")
    held = [
        accepted(emit(replicas[n % REPLICAS], namespace, producer, data={"n": n})) for n in range(6)
    ]
    for replica in replicas:
        ping = httpx.post(
            f"{replica.url}/v1/namespaces/{namespace}/endpoints/ep/ping",
            headers=producer.headers,
            timeout=10,
        )
        assert ping.status_code == 202, ping.text
        assert ping.json()["held"] is True
        held.append(ping.json()["eventId"])
    for replica in replicas:
        items = deliveries(replica, namespace, producer, "ep", status="held", limit=100)["items"]
        assert event_ids(items) == set(held)
    time.sleep(1.5)
    assert receiver.received("/paused") == []
    assert gauges(replicas) == [0.0] * REPLICAS  # paused is not disabled

    apply(cluster, namespace, endpoint("ep", receiver.url("/paused"), active=True))
    eventually(lambda: len(receiver.received("/paused")) >= len(held), timeout=20, what="resumed")
    time.sleep(1.5)
    sent = Counter(r["headers"]["webhook-id"] for r in receiver.received("/paused"))
    assert sent == Counter(held), "each held delivery exactly once"
