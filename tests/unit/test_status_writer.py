"""The status writer writes only what changed, at most once per interval per object."""

import asyncio
from typing import Any

from webhook_operator.controller.status_writer import StatusWriter

KEY = ("webhookendpoints", "ns", "ep")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, plural: str, ns: str, name: str, status: dict[str, Any]) -> None:
        self.calls.append(status)


async def settle(writer: StatusWriter, seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_no_write_when_nothing_changed() -> None:
    async def main() -> list[dict[str, Any]]:
        rec = Recorder()
        writer = StatusWriter(rec, min_interval=0.05)
        writer.update(KEY, {"health": "Healthy"}, {"health": "Healthy"})
        await settle(writer, 0.1)
        return rec.calls

    assert asyncio.run(main()) == []


def test_only_changed_fields_are_written_and_bursts_coalesce() -> None:
    async def main() -> list[dict[str, Any]]:
        rec = Recorder()
        writer = StatusWriter(rec, min_interval=0.2)
        observed = {"health": "Pending", "consecutiveFailures": 0}
        writer.update(KEY, {"health": "Failing", "consecutiveFailures": 0}, observed)
        await asyncio.sleep(0.05)  # first write goes out at once
        for n in range(1, 6):  # a burst within the interval: one more write
            writer.update(KEY, {"health": "Failing", "consecutiveFailures": n}, observed)
        await settle(writer, 0.4)
        # What was written is remembered, even before the watch shows it.
        writer.update(KEY, {"health": "Failing", "consecutiveFailures": 5}, observed)
        await settle(writer, 0.3)
        return rec.calls

    assert asyncio.run(main()) == [{"health": "Failing"}, {"consecutiveFailures": 5}]


def test_delivery_results_wait_for_the_interval_but_spec_changes_do_not() -> None:
    async def main() -> list[dict[str, Any]]:
        rec = Recorder()
        writer = StatusWriter(rec, min_interval=0.5)
        writer.update(KEY, {"health": "Healthy"}, {})
        await asyncio.sleep(0.05)  # the first write goes out at once
        writer.update(KEY, {"health": "Healthy", "lastSuccessTime": "t1"}, {})
        await asyncio.sleep(0.05)  # a delivery result: waits for the interval
        assert len(rec.calls) == 1
        writer.update(KEY, {"observedGeneration": 2}, {})  # someone applied a new spec
        await asyncio.sleep(0.05)
        assert len(rec.calls) == 2  # written at once, with what was waiting
        return rec.calls

    assert asyncio.run(main()) == [
        {"health": "Healthy"},
        {"lastSuccessTime": "t1", "observedGeneration": 2},
    ]


def test_a_busy_endpoint_costs_one_write_per_interval() -> None:
    async def main() -> int:
        rec = Recorder()
        writer = StatusWriter(rec, min_interval=0.2)
        for n in range(50):  # delivery results every 20 ms for one second
            writer.update(KEY, {"lastSuccessTime": f"t{n}"}, {})
            await asyncio.sleep(0.02)
        return len(rec.calls)

    assert 4 <= asyncio.run(main()) <= 7


def test_a_failed_write_is_retried_after_the_interval_not_at_once() -> None:
    class Failing(Recorder):
        async def __call__(self, plural: str, ns: str, name: str, status: dict[str, Any]) -> None:
            self.calls.append(status)
            raise RuntimeError("apiserver unavailable")

    async def main() -> int:
        rec = Failing()
        writer = StatusWriter(rec, min_interval=0.3)
        writer.update(KEY, {"conditions": [{"type": "Ready"}]}, {})
        await asyncio.sleep(0.2)
        return len(rec.calls)

    assert asyncio.run(main()) == 1
