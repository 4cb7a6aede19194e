"""Group commits at ingest: events submitted while the previous commit runs are stored
together in the next one. One event alone is stored at once, so a quiet service adds no
latency; a busy one pays one commit per batch instead of one per event.

Producers share a batch but never its failures: the store answers per event, so an event
the database refuses fails only the request that sent it. When the whole commit fails
(the database is down), every request of the batch gets that error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from webhook_operator.store.base import NewDelivery, NewEvent, Store

Result = tuple[str, int, bool]


@dataclass
class IngestBatcher:
    store: Store
    max_batch: int = 256
    observe: Callable[[int], None] = lambda rows: None  # each commit's number of events
    _pending: list[tuple[NewEvent, list[NewDelivery], asyncio.Future[Result]]] = field(
        default_factory=list
    )
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def submit(self, event: NewEvent, deliveries: list[NewDelivery]) -> Result:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((event, deliveries, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._commit(batch)

    async def _commit(
        self, batch: list[tuple[NewEvent, list[NewDelivery], asyncio.Future[Result]]]
    ) -> None:
        self.observe(len(batch))
        try:
            outcomes = await self.store.create_events([(e, d) for e, d, _ in batch])
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
