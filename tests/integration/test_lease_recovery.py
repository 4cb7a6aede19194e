"""Claims a delivery service leaves behind come back within seconds, not after the 120 s
lease: real `webhook-operator delivery` processes are killed, frozen and stopped while
they hold claims, against SQLite and PostgreSQL, and a real receiver on 127.0.0.1 shows
which deliveries arrive, how often, and when.

The set-up of every test: an endpoint taking one request at a time whose receiver stalls
the first request for longer than the shutdown grace (20 s), and five events. The service
claims all five at once: one attempt hangs in flight, four wait in memory for their turn
(claimed, never attempted). The lease is the default 120 s throughout."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from tests import pg
from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Receiver, eventually
from tests.integration.test_delivery import emit, endpoint, setup_app

PATH = "/slow"
STALL = 40.0  # the first request hangs this long: longer than the shutdown grace
EVENTS = 5
# What "at once" means on a shared, busy two-core machine: a few claim polls and
# heartbeats, and a service start-up at worst; far below the 120 s lease.
PROMPTLY = 15.0


@pytest.fixture(autouse=True)
def _operator(operator: OperatorProcess) -> None:
    """Endpoints turn Ready through the operator."""


def leased(store_url: str) -> int:
    """How many deliveries are claimed right now (the premise, read from the store)."""
    query = "SELECT count(*) FROM deliveries WHERE lease_owner IS NOT NULL"
    if store_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as conn:
            count: int = conn.execute(query).fetchone()[0]
            return count
    with psycopg.connect(store_url) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def arrivals(receiver: Receiver) -> Counter[str]:
    """Requests received per event (webhook-id)."""
    return Counter(r["headers"]["webhook-id"] for r in receiver.received(PATH))


def claim_five(
    cluster: Cluster, namespace: str, receiver: Receiver, svc: DeliveryProcess
) -> tuple[list[str], str]:
    """The common set-up: five events claimed by `svc`, the first attempt hanging.
    Returns the event ids and the id of the event whose attempt hangs."""
    receiver.respond(PATH, (204, {}, STALL), (204, {}, 0.0))
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", receiver.url(PATH), maxConcurrency=1, timeout="60s"),
    )
    sent = []
    for n in range(EVENTS):
        response = emit(svc, namespace, producer, data={"n": n})
        assert response.status_code == 202, response.text
        sent.append(response.json()["eventId"])
    eventually(lambda: receiver.received(PATH), what="first attempt under way")
    eventually(lambda: leased(svc.store_url) == EVENTS, what="all five claimed")
    (hanging,) = arrivals(receiver)
    return sent, hanging


def all_arrive(receiver: Receiver, sent: list[str], timeout: float, what: str) -> float:
    """Wait until every event has arrived; returns when (monotonic)."""
    eventually(lambda: set(sent) <= set(arrivals(receiver)), timeout=timeout, what=what)
    return time.monotonic()


def assert_once_each_but_the_cut_off_one(receiver: Receiver, sent: list[str], hanging: str) -> None:
    """The four never attempted arrive exactly once; the attempt that was cut off (it
    never answered) is made once more."""
    time.sleep(1)  # anything sent twice would show by now
    counts = arrivals(receiver)
    assert counts[hanging] == 2, counts
    assert all(counts[e] == 1 for e in sent if e != hanging), counts


# -- SQLite: one process at a time -----------------------------------------------------


def test_sqlite_restart_after_sigkill_delivers_the_claims_at_once(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path
) -> None:
    svc = DeliveryProcess(cluster.kubeconfig, tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    svc.start()
    try:
        sent, hanging = claim_five(cluster, namespace, receiver, svc)
        svc.stop(signal.SIGKILL)
        svc.start()
        ready = time.monotonic()
        done = all_arrive(receiver, sent, PROMPTLY, "all delivered by the restarted process")
        assert done - ready < PROMPTLY
        assert_once_each_but_the_cut_off_one(receiver, sent, hanging)
        assert "gave back 5 claims left by an earlier process" in svc.log()
    finally:
        svc.stop()


def test_sqlite_sigterm_gives_unfinished_claims_to_the_next_process(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'd.db'}"
    first = DeliveryProcess(cluster.kubeconfig, tmp_path, store, name="first")
    second = DeliveryProcess(cluster.kubeconfig, tmp_path, store, name="second")
    first.start()
    try:
        sent, hanging = claim_five(cluster, namespace, receiver, first)
        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        # Started while the first drains (as a rollout would): it serves at once and
        # waits for the file's claim lock before it claims anything.
        second.start(wait=False)
        first.process.wait(timeout=STALL)
        exited = time.monotonic()
        assert exited - stopping < STALL - 5  # the grace, not the hanging attempt
        second.wait_ready()
        done = all_arrive(receiver, sent, PROMPTLY, "all delivered by the next process")
        assert done - exited < PROMPTLY
        assert_once_each_but_the_cut_off_one(receiver, sent, hanging)
        assert "gave back" in first.log()
        assert "another delivery service" in second.log()  # it said why it waited
    finally:
        first.stop()
        second.stop()


# -- PostgreSQL: replicas take over from each other ------------------------------------


@pytest.fixture
def pg_store(postgres_dsn: str) -> Iterator[str]:
    dsn = pg.create_database(postgres_dsn, "lease_recovery")
    yield dsn
    pg.drop_database(postgres_dsn, dsn)


def replicas(cluster: Cluster, tmp_path: Path, dsn: str) -> tuple[DeliveryProcess, DeliveryProcess]:
    return (
        DeliveryProcess(cluster.kubeconfig, tmp_path, dsn, name="a"),
        DeliveryProcess(cluster.kubeconfig, tmp_path, dsn, name="b"),
    )


def test_postgres_replica_takes_over_the_claims_of_a_killed_replica(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path, pg_store: str
) -> None:
    a, b = replicas(cluster, tmp_path, pg_store)
    a.start()
    try:
        sent, hanging = claim_five(cluster, namespace, receiver, a)
        b.start()
        time.sleep(3)  # b's heartbeats find a alive: it takes nothing
        assert len(receiver.received(PATH)) == 1
        assert leased(pg_store) == EVENTS
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        done = all_arrive(receiver, sent, PROMPTLY, "all delivered by the other replica")
        assert done - killed < PROMPTLY
        assert_once_each_but_the_cut_off_one(receiver, sent, hanging)
    finally:
        a.stop()
        b.stop()


def test_postgres_replica_takes_over_the_claims_of_a_hung_replica(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path, pg_store: str
) -> None:
    """Frozen, its database session stays open (as for a node that vanished): the claims
    come back when its heartbeat is 10 s old."""
    a, b = replicas(cluster, tmp_path, pg_store)
    a.start()
    try:
        sent, hanging = claim_five(cluster, namespace, receiver, a)
        b.start()
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        done = all_arrive(receiver, sent, 30, "all delivered by the other replica")
        # Not before the heartbeat went stale; long before the lease would run out.
        assert 6 < done - frozen < 25
        assert_once_each_but_the_cut_off_one(receiver, sent, hanging)
    finally:
        a.stop(signal.SIGKILL)
        b.stop()


def test_postgres_sigterm_hands_unfinished_claims_to_a_running_replica(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path, pg_store: str
) -> None:
    a, b = replicas(cluster, tmp_path, pg_store)
    a.start()
    try:
        sent, hanging = claim_five(cluster, namespace, receiver, a)
        b.start()
        assert a.process is not None
        a.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        # The four waiting for their turn go back at once, while a still waits for its
        # attempt in flight.
        waiting = [e for e in sent if e != hanging]
        done = all_arrive(receiver, waiting, PROMPTLY, "the waiting four delivered by b")
        assert done - stopping < PROMPTLY
        assert a.process.poll() is None
        # The hanging attempt is cut off at the end of the grace and handed over too.
        a.process.wait(timeout=STALL)
        exited = time.monotonic()
        eventually(lambda: arrivals(receiver)[hanging] == 2, timeout=PROMPTLY, what="retried")
        assert time.monotonic() - exited < PROMPTLY
        assert_once_each_but_the_cut_off_one(receiver, sent, hanging)
    finally:
        a.stop()
        b.stop()
