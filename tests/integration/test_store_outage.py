"""A delivery service whose store stops answering for a while (here SQLite locked by
another process past its busy timeout, as PostgreSQL restarting would be) keeps its
dispatcher: once the store answers again, events accepted before and after the outage
are delivered, and the log says when claiming failed and when it worked again."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Receiver, eventually
from tests.integration.test_delivery import emit, endpoint, setup_app

pytestmark = pytest.mark.integration
# Past the store's 5 s busy timeout, so claims fail rather than wait.
OUTAGE = 7.0


def test_deliveries_resume_after_the_store_was_unavailable(
    cluster: Cluster,
    namespace: str,
    receiver: Receiver,
    tmp_path: Path,
    operator: OperatorProcess,
) -> None:
    database = tmp_path / "d.db"
    svc = DeliveryProcess(cluster.kubeconfig, tmp_path, f"sqlite:///{database}", name="outage")
    svc.start()
    try:
        producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
        before = emit(svc, namespace, producer, data={"n": "before"})
        assert before.status_code == 202, before.text
        eventually(lambda: receiver.received("/hook"), what="the first delivery")

        lock = sqlite3.connect(database, timeout=30)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            time.sleep(OUTAGE)
        finally:
            lock.rollback()
            lock.close()
        eventually(lambda: "claiming deliveries failed" in svc.log(), what="the outage in the log")

        after = emit(svc, namespace, producer, data={"n": "after"})
        assert after.status_code == 202, after.text
        event_id = after.json()["eventId"]
        eventually(
            lambda: [
                r for r in receiver.received("/hook") if r["headers"]["webhook-id"] == event_id
            ],
            timeout=20,
            what="a delivery after the outage",
        )
        assert "claiming deliveries works again" in svc.log()
    finally:
        svc.stop()
