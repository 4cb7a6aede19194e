"""Group commits at ingest: what producers see (each its own answer) and what a replica
reports of its batches (`webhook_store_batch_rows{operation="ingest"}`)."""

from __future__ import annotations

import asyncio

import pytest

from webhook_operator.delivery.ingest_batcher import IngestBatcher
from webhook_operator.store.base import NewDelivery, NewEvent

Outcome = tuple[str, int, bool] | Exception


class SlowStore:
    """Commits wait until the test lets them through, so submissions pile up meanwhile."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.commits: list[list[str]] = []

    async def create_events(self, batch: list[tuple[NewEvent, list[NewDelivery]]]) -> list[Outcome]:
        self.commits.append([event.id for event, _ in batch])
        await self.go.wait()
        return [
            ValueError("refused") if event.id == "bad" else (event.id, 1, False)
            for event, _ in batch
        ]


def event(event_id: str) -> NewEvent:
    return NewEvent(
        id=event_id,
        namespace="ns",
        app="app",
        type="t",
        payload="{}",
        idempotency_key=None,
        created_at=0.0,
    )


def test_events_submitted_during_a_commit_share_the_next_and_answer_alone() -> None:
    sizes: list[int] = []

    async def scenario() -> None:
        store = SlowStore()
        batcher = IngestBatcher(store, observe=sizes.append)  # type: ignore[arg-type]
        first = asyncio.create_task(batcher.submit(event("e0"), []))
        await asyncio.sleep(0.01)
        later = [
            asyncio.create_task(batcher.submit(event(i), []))
            for i in ("e1", "bad", "e2", "e3", "e4")
        ]
        await asyncio.sleep(0.01)
        store.go.set()
        assert await first == ("e0", 1, False)
        results = await asyncio.gather(*later, return_exceptions=True)
        assert store.commits == [["e0"], ["e1", "bad", "e2", "e3", "e4"]]
        assert isinstance(results[1], ValueError), "only the refused event fails"
        assert [r for i, r in enumerate(results) if i != 1] == [
            ("e1", 1, False),
            ("e2", 1, False),
            ("e3", 1, False),
            ("e4", 1, False),
        ]
        await batcher.close()

    asyncio.run(scenario())
    assert sizes == [1, 5]


def test_a_failed_commit_fails_every_request_of_its_batch() -> None:
    class DownStore:
        async def create_events(self, batch: object) -> list[Outcome]:
            raise OSError("database down")

    async def scenario() -> None:
        batcher = IngestBatcher(DownStore())  # type: ignore[arg-type]
        with pytest.raises(OSError, match="database down"):
            await batcher.submit(event("e0"), [])
        await batcher.close()

    asyncio.run(scenario())
