"""The SQLite store's log is checkpointed off the event loop: a COMMIT never copies the log
into the database (that pause was the latency tail), and the log still stays small while
events keep arriving."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from webhook_operator import ids
from webhook_operator.store.base import DeliveryStatus, NewDelivery, NewEvent
from webhook_operator.store.sqlite import SQLiteStore

PAYLOAD = '{"data": "' + "x" * 4000 + '"}'


def batch(n: int) -> list[tuple[NewEvent, list[NewDelivery]]]:
    now = time.time()
    return [
        (
            NewEvent(ids.event_id(now), "shop", "billing", "order.created", PAYLOAD, None, now),
            [NewDelivery(ids.delivery_id(now), "ep-1", DeliveryStatus.PENDING, now)],
        )
        for _ in range(n)
    ]


def test_commits_never_checkpoint_and_the_log_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def write() -> int:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            (auto,) = store.sqlite.conn.execute("PRAGMA wal_autocheckpoint").fetchone()
            assert auto == 0
            # About 12 MB of events over 4 s, in the small batches ingest commits.
            for _ in range(400):
                await store.create_events(batch(8))
                await asyncio.sleep(0.01)
            return path.with_name("store.db-wal").stat().st_size
        finally:
            await store.close()

    wal_size = asyncio.run(write())
    # Never checkpointed, the log would hold all of it (about 48 MB of pages); restarted
    # after each checkpoint, it holds about a second's writes.
    assert wal_size < 20 * 1024 * 1024, wal_size
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    assert count == 3200
