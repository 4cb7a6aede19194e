"""Several delivery-service replicas on one PostgreSQL database, a producer that keeps
emitting to them while the tests break things, and the counts that say what arrived.

The producer behaves as a real one behind a Service would: it spreads events round-robin
over the replicas, and an event that was not acknowledged (the replica died, the store
answered 503, the request timed out) is sent again with the same `id` to the next replica.
Idempotency makes that safe: the store keeps one event per id, so the producer's retries
never show up as duplicates at the receiver; only the service's own re-attempts do."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from tests import pg
from tests.harness import Cluster, DeliveryProcess, Receiver

# A retry waits this long at most, whatever Retry-After says: the outage under test is
# seconds long, and a test stream should not stall for the header's 5 s.
RETRY_CAP = 0.5


@dataclass
class Stream:
    """`count` events emitted at `rate` per second, round-robin over `replicas`, from a
    thread. `accepted` maps each event's `n` to the eventId the service gave it."""

    replicas: list[DeliveryProcess]
    namespace: str
    headers: dict[str, str]
    count: int
    rate: float
    app: str = "billing"
    # Replicas not to send to any more (the producer's view of a Service's endpoints).
    dead: set[int] = field(default_factory=set)
    accepted: dict[int, str] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)
    emitted: int = 0  # events acknowledged so far: the test's clock for its faults
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not finish in {timeout}s"
        if self.error is not None:
            raise self.error

    def wait_emitted(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.emitted < n:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"only {self.emitted} of {n} emitted"
            time.sleep(0.02)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=15) as http:
                started = time.monotonic()
                for n in range(self.count):
                    pause = started + n / self.rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    self.accepted[n] = self._emit(http, n)
                    self.emitted = n + 1
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def _emit(self, http: httpx.Client, n: int) -> str:
        body = json.dumps({"type": "invoice.paid", "id": f"evt-{n}", "data": {"n": n}})
        turn = n
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = [i for i in range(len(self.replicas)) if i not in self.dead]
            replica = self.replicas[live[turn % len(live)]]
            turn += 1
            url = f"{replica.url}/v1/namespaces/{self.namespace}/apps/{self.app}/events"
            try:
                response = http.post(
                    url,
                    content=body,
                    headers={**self.headers, "Content-Type": "application/json"},
                )
            except httpx.HTTPError as exc:
                self.retries[type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            if response.status_code in (200, 202):
                event_id: str = response.json()["eventId"]
                return event_id
            # 503 while the store is away; 404 while a replica's informer has not yet seen
            # the app (only at the start). Anything else is a failure of the test.
            assert response.status_code in (503, 404), (response.status_code, response.text)
            self.retries[str(response.status_code)] += 1
            retry_after = float(response.headers.get("Retry-After", "0.1"))
            time.sleep(min(retry_after, RETRY_CAP))
        raise AssertionError(f"event {n} was never accepted within 60 s")


def arrivals(receiver: Receiver, path: str) -> tuple[Counter[int], dict[int, set[str]]]:
    """Requests received per event `n`, and the webhook-ids each `n` arrived with (one,
    when idempotency held)."""
    counts: Counter[int] = Counter()
    ids: dict[int, set[str]] = defaultdict(set)
    for request in receiver.received(path):
        n = int(json.loads(request["body"])["data"]["n"])
        counts[n] += 1
        ids[n].add(request["headers"]["webhook-id"])
    return counts, ids


def counter(replica: DeliveryProcess, name: str) -> float:
    """The sum of a counter's samples on the replica's /metrics (every label set)."""
    text = httpx.get(replica.metrics_url, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def leased_by(dsn: str, pid: int | None = None) -> set[str]:
    """Event ids whose delivery is leased now: by the process `pid` (owner names carry the
    pid, see delivery/service.py), or by anyone."""
    query = "SELECT event_id FROM deliveries WHERE lease_owner IS NOT NULL"
    params: tuple[str, ...] = ()
    if pid is not None:
        query += " AND lease_owner LIKE %s"
        params = (f"%-{pid}-%",)
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return {row[0] for row in conn.execute(query, params).fetchall()}


def heartbeats(dsn: str) -> dict[str, float]:
    """Each registered claim owner's last heartbeat (epoch seconds)."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        rows = conn.execute("SELECT owner, heartbeat_at FROM lease_owners").fetchall()
    return {owner: float(at) for owner, at in rows}


def start_replicas(
    kubeconfig: Path, workdir: Path, dsn: str, count: int, *extra: str, stagger: float = 0.0
) -> list[DeliveryProcess]:
    """`count` replicas on one database. Started together, they wait for each other's
    migrations (an advisory lock), as a rollout's pods would; with `stagger`, each starts
    that long after the previous one was ready, so their heartbeats (every 2 s) do not
    tick together as they would not in production."""
    replicas = [
        DeliveryProcess(kubeconfig, workdir, dsn, *extra, name=f"replica-{n}") for n in range(count)
    ]
    for replica in replicas:
        replica.start(wait=stagger > 0)
        time.sleep(stagger)
    for replica in replicas:
        replica.wait_ready()
    return replicas


@contextmanager
def replicas_on_a_new_database(
    cluster: Cluster, server_dsn: str, workdir: Path, prefix: str, count: int
) -> Iterator[list[DeliveryProcess]]:
    """`count` delivery services on one new PostgreSQL database, stopped and the database
    dropped afterwards."""
    dsn = pg.create_database(server_dsn, prefix)
    started: list[DeliveryProcess] = []
    try:
        started = start_replicas(cluster.kubeconfig, workdir, dsn, count)
        yield started
    finally:
        for replica in started:
            replica.stop()
        pg.drop_database(server_dsn, dsn)


class RestartablePostgres(pg.LocalPostgres):
    """A private server that a test may stop and start again on the same port and data
    directory (the shared session server must not be: other tests use it)."""

    def halt(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "stop", f"--pgdata={self.datadir}", f"--mode={mode}", "--wait")

    def resume(self) -> None:
        """Start again on the same port and data directory, as it was."""
        self.start_server()


def durable_database(server_dsn: str, prefix: str) -> str:
    """A new database whose commits survive the server being killed: the test servers run
    with synchronous_commit off (tests/pg.py), which may lose the last fraction of a
    second of commits in a crash, and a test counting lost events must not lose them to
    that. A database's own setting overrides the server's command line."""
    dsn = pg.create_database(server_dsn, prefix)
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    assert isinstance(name, str)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(sql.Identifier(name))
        )
    return dsn


def private_postgres() -> RestartablePostgres:
    """A PostgreSQL server of the test's own, on a free 127.0.0.1 port."""
    bin_dir = pg.find_bin_dir()
    if bin_dir is None:
        raise pg.PostgresUnavailable(
            "restarting PostgreSQL needs a server of the test's own: initdb and pg_ctl were "
            "found neither on PATH nor in /usr/lib/postgresql/*/bin (.ci/install-postgres)"
        )
    server = RestartablePostgres(bin_dir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
