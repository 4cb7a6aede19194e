import asyncio

from webhook_operator.controller.workqueue import WorkQueue


def test_duplicates_collapse_and_earliest_schedule_wins() -> None:
    async def main() -> list[str]:
        q: WorkQueue[str] = WorkQueue()
        q.add("a", 0.2)
        q.add("a", 0.0)
        q.add("a", 0.1)
        q.add("b", 0.05)
        got = [await q.get(), await q.get()]
        assert len(q) == 0
        return got

    assert asyncio.run(main()) == ["a", "b"]


def test_key_added_while_processing_runs_again_after_done() -> None:
    async def main() -> str:
        q: WorkQueue[str] = WorkQueue()
        q.add("a")
        key = await q.get()
        q.add("a")  # an event arrives mid-reconcile
        assert len(q) == 0  # not handed to a second worker meanwhile
        q.done(key)
        return await asyncio.wait_for(q.get(), 1)

    assert asyncio.run(main()) == "a"


def test_backoff_grows_and_forget_resets() -> None:
    async def main() -> list[float]:
        q: WorkQueue[str] = WorkQueue(base_backoff=0.01, max_backoff=0.04)
        delays = [q.retry("a") for _ in range(4)]
        q.forget("a")
        delays.append(q.retry("a"))
        return delays

    assert asyncio.run(main()) == [0.01, 0.02, 0.04, 0.04, 0.01]
