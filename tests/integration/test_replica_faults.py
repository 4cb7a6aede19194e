"""Faults under load with three delivery-service replicas on one PostgreSQL database:
one replica SIGKILLed mid-delivery, and PostgreSQL itself restarted mid-run. Real
processes, a real receiver on 127.0.0.1 that answers each request after a short delay (so
deliveries are in flight when the fault hits), and a producer that keeps emitting
throughout, retrying what was not acknowledged with the same event id (tests/replicas.py).

What must hold: every accepted event arrives (none lost), within a bounded time; the
replicas that survive need no restart of their own; and an event arrives more than once
only when a lease was taken from its holder (the killed replica's claims, or claims a
replica held when the database went away). The duplicates are counted and printed."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg
from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Receiver, eventually
from tests.integration.test_delivery import endpoint, setup_app
from tests.replicas import (
    RestartablePostgres,
    Stream,
    arrivals,
    counter,
    durable_database,
    heartbeats,
    leased_by,
    private_postgres,
    start_replicas,
)

PATH = "/replicas"
REPLICAS = 3
EVENTS = 300
RATE = 30.0  # events per second: the stream lasts about 10 s
DELAY = 0.2  # the receiver's answer time, so a few deliveries are always in flight
# From the end of the stream (or the restart) to the last arrival, on a busy two-core
# machine: a few heartbeats and claim polls, far below the 120 s lease.
PROMPTLY = 30.0
OUTAGE = 4.0  # seconds PostgreSQL is down
# Replicas' heartbeats (every 2 s) spread over the interval, as in production, rather
# than ticking together as processes started at one instant do.
STAGGER = 0.7
ACCEPTED = "webhook_events_accepted_total"
ATTEMPTS = "webhook_delivery_attempts_total"


@pytest.fixture(autouse=True)
def _operator(operator: OperatorProcess) -> None:
    """Endpoints turn Ready, and get their signing secret, through the operator."""


@pytest.fixture
def shared_db(postgres_dsn: str) -> Iterator[str]:
    dsn = pg.create_database(postgres_dsn, "replica_faults")
    yield dsn
    pg.drop_database(postgres_dsn, dsn)


@pytest.fixture
def private_server() -> Iterator[RestartablePostgres]:
    """A server of this test's own: it is stopped mid-run, and the session's is shared."""
    try:
        server = private_postgres()
    except pg.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def report(capsys: pytest.CaptureFixture[str], what: str, **figures: object) -> None:
    """Print the figures past pytest's capture: they are the point of the run."""
    with capsys.disabled():
        print(f"\n[{what}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def all_arrived(receiver: Receiver, stream: Stream, within: float, what: str) -> float:
    """Wait until every accepted event has arrived; returns how long that took."""
    began = time.monotonic()
    eventually(
        lambda: set(stream.accepted) <= set(arrivals(receiver, PATH)[0]),
        timeout=within,
        interval=0.5,
        what=what,
    )
    return time.monotonic() - began


def duplicates(receiver: Receiver, stream: Stream) -> dict[str, int]:
    """Extra arrivals per event id, after checking that every event arrived under the id
    it was accepted with: the producer's retries were de-duplicated by the store."""
    time.sleep(1.5)  # a late duplicate would show by now
    counts, ids = arrivals(receiver, PATH)
    assert set(counts) == set(range(EVENTS)), sorted(set(range(EVENTS)) - set(counts))
    for n, event_id in stream.accepted.items():
        assert ids[n] == {event_id}, (n, ids[n], event_id)
    return {stream.accepted[n]: c - 1 for n, c in counts.items() if c > 1}


def alive(replicas: list[DeliveryProcess]) -> None:
    for replica in replicas:
        assert replica.process is not None
        assert replica.process.poll() is None, replica.log()[-3000:]


def test_sigkill_of_one_of_three_replicas_loses_nothing(
    cluster: Cluster,
    namespace: str,
    receiver: Receiver,
    tmp_path: Path,
    shared_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.respond(PATH, (204, {}, DELAY))
    replicas = start_replicas(cluster.kubeconfig, tmp_path, shared_db, REPLICAS)
    try:
        producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url(PATH)))
        stream = Stream(replicas, namespace, producer.headers, EVENTS, RATE).start()
        stream.wait_emitted(EVENTS * 2 // 5, timeout=60)

        # The replica holding the most claims right now is the one to kill.
        def busiest() -> tuple[int, int] | None:
            held = [len(leased_by(shared_db, r.process.pid)) if r.process else 0 for r in replicas]
            best = max(range(REPLICAS), key=held.__getitem__)
            return (best, held[best]) if held[best] else None

        found = eventually(busiest, timeout=10, interval=0.05, what="a replica holding claims")
        assert isinstance(found, tuple)
        index, _ = found
        victim = replicas[index]
        assert victim.process is not None
        # Frozen first, so its claims can be read exactly as they are when it dies: no
        # new claim, and no other replica takes them while its session stays open.
        victim.process.send_signal(signal.SIGSTOP)
        stream.dead.add(index)
        held_at_kill = leased_by(shared_db, victim.process.pid)
        victim.stop(signal.SIGKILL)

        stream.join(timeout=60)
        took = all_arrived(receiver, stream, PROMPTLY, "every event delivered after the kill")
        extra = duplicates(receiver, stream)
        report(
            capsys,
            "sigkill one of three",
            events=EVENTS,
            held_by_killed_replica=len(held_at_kill),
            duplicates=sum(extra.values()),
            duplicated_events=len(extra),
            seconds_after_stream=round(took, 1),
            producer_retries=dict(stream.retries),
        )
        # Only what the killed replica held comes again, and each of those at most once.
        assert set(extra) <= held_at_kill, set(extra) - held_at_kill
        assert all(count == 1 for count in extra.values()), extra
        alive([r for r in replicas if r is not victim])
    finally:
        for replica in replicas:
            replica.stop()


def test_postgres_restart_mid_run_loses_nothing(
    cluster: Cluster,
    namespace: str,
    receiver: Receiver,
    tmp_path: Path,
    private_server: RestartablePostgres,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn = durable_database(private_server.dsn, "replica_restart")
    receiver.respond(PATH, (204, {}, DELAY))
    replicas = start_replicas(cluster.kubeconfig, tmp_path, dsn, REPLICAS, stagger=STAGGER)
    try:
        producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url(PATH)))
        stream = Stream(replicas, namespace, producer.headers, EVENTS, RATE).start()
        stream.wait_emitted(EVENTS // 3, timeout=60)

        held_at_stop = leased_by(dsn)
        private_server.halt("immediate")
        time.sleep(OUTAGE)
        private_server.resume()
        # What each replica had done by then: it must do more, without a restart.
        before = {name: [counter(r, name) for r in replicas] for name in (ACCEPTED, ATTEMPTS)}

        stream.join(timeout=90)
        took = all_arrived(receiver, stream, PROMPTLY, "every event delivered after the restart")
        extra = duplicates(receiver, stream)
        report(
            capsys,
            "postgres restarted",
            events=EVENTS,
            leased_at_stop=len(held_at_stop),
            duplicates=sum(extra.values()),
            duplicated_events=len(extra),
            duplicated_not_leased_at_stop=len(set(extra) - held_at_stop),
            seconds_after_stream=round(took, 1),
            producer_retries=dict(stream.retries),
        )
        # The replicas came back on their own: each one accepted events and delivered
        # after the restart. (A replica whose claim was waiting in the pool for a
        # connection when the server came back never saw it fail; one that did says so.)
        alive(replicas)
        for name, counts in before.items():
            after = [counter(r, name) for r in replicas]
            assert all(a > b for a, b in zip(after, counts, strict=True)), (name, counts, after)
        # Each still holds its claim owner's registration: its owner session (and the
        # lock the database dropped with the old one) came back and it beats again.
        beats = heartbeats(dsn)
        for replica in replicas:
            assert replica.process is not None
            mine = [at for owner, at in beats.items() if f"-{replica.process.pid}-" in owner]
            assert len(mine) == 1, (replica.process.pid, beats)
            assert time.time() - mine[0] < 5, (replica.process.pid, beats)
        for replica in replicas:
            log = replica.log()
            if "claiming deliveries failed" in log:
                assert "claiming deliveries works again" in log, log[-3000:]
            # An outage is said once per loop, not once per try, and without tracebacks.
            assert log.count("claiming deliveries failed") <= 1, log[-3000:]
            assert log.count("heartbeat of claim owner") <= 2, log[-3000:]
        assert all(count == 1 for count in extra.values()), extra
    finally:
        for replica in replicas:
            replica.stop()


def test_a_server_restart_does_not_make_a_live_replica_presumed_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A restart drops every owner's lock. The first replica to beat afterwards must not
    take another's free lock for its death: that replica is alive, only not yet back."""
    import asyncio

    import psycopg

    from webhook_operator.store.base import Sweep
    from webhook_operator.store.postgres import PostgresStore

    server = private_postgres()
    try:
        dsn = durable_database(server.dsn, "owners")

        async def beat(store: PostgresStore, owner: str) -> Sweep:
            for _ in range(40):
                try:
                    return await store.heartbeat(owner, time.time(), stale_after=10.0)
                except psycopg.OperationalError:
                    await asyncio.sleep(0.25)
            raise AssertionError(f"{owner} could not beat after the restart")

        async def run() -> tuple[int, bool]:
            a, b = PostgresStore(dsn, max_size=2), PostgresStore(dsn, max_size=2)
            await a.open()
            await b.open()
            try:
                now = time.time()
                await a.register_owner("owner-a", now)
                await b.register_owner("owner-b", now)
                server.halt()
                server.resume()
                # As the heartbeat loop does: try again until the connections are back.
                swept = await beat(a, "owner-a")
                return swept.released, (await beat(b, "owner-b")).rejoined
            finally:
                await a.close()
                await b.close()

        with caplog.at_level("INFO", logger="webhook_operator.store"):
            released, rejoined = asyncio.run(run())
        assert "presumed gone" not in caplog.text
        assert "owner-b" not in " ".join(
            r.getMessage() for r in caplog.records if "gave back" in r.getMessage()
        )
        assert not rejoined
        assert released == 0
    finally:
        server.stop()
