"""SQLite's write-ahead log checkpointed off the event loop.

The SQLite store runs its statements on the event loop's thread (see sqlite.py). By
default SQLite checkpoints inside the COMMIT that takes the log past 1000 pages: it copies
the log into the database file and syncs it, 5 to 20 ms on this machine kind, during which
the loop, and every ingest request and delivery in flight with it, waits. At 200 events a
second that is a pause every few seconds: much of the latency tail (docs/benchmarks.md).

So the store's own connection never checkpoints (`wal_autocheckpoint = 0`), and this
checkpointer does, every `interval`, on a connection of its own in a worker thread. A
PASSIVE checkpoint takes no lock that a writer waits for: it copies what no reader still
needs and leaves the rest for the next round.

The log starts again from the beginning (and so stays a few MB) only when a writer finds
it wholly copied, which a checkpoint running beside the writers never leaves it: frames
arrive while it copies. So once the log is past SQLite's own threshold (1000 pages), the
bulk copied in the thread is followed, on the loop, by a checkpoint of the few frames
written meanwhile (about 1 ms here, against 5 to 20 for the whole log), and the next
write restarts the log. The store's statements never suspend inside a transaction, so
on the loop none is open."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)

INTERVAL = 1.0
# SQLite's own wal_autocheckpoint default: past this many pages, the log is restarted.
RESTART_PAGES = 1000
# A checkpoint waits for locks no longer than this; it is tried again a second later.
BUSY_TIMEOUT = 1.0


class WalCheckpointer:
    def __init__(
        self, path: str, finish: Callable[[], tuple[int, int]], interval: float = INTERVAL
    ) -> None:
        self.path = path
        self.finish = finish  # a PASSIVE checkpoint on the store's own connection
        self.interval = interval
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None

    def checkpoint(self) -> tuple[int, int]:
        """One PASSIVE checkpoint: (pages in the log, pages copied to the database)."""
        if self._conn is None:
            # Used by one worker thread at a time, never two at once.
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        _, logged, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(logged), int(copied)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                logged, _ = await asyncio.to_thread(self.checkpoint)
                if logged >= RESTART_PAGES:
                    self.finish()
            except sqlite3.Error as exc:
                if not self._failing:  # once per spell of failures, not every second
                    log.warning("checkpointing the SQLite log failed, retrying: %s", exc)
                self._failing = True
            else:
                self._failing = False
