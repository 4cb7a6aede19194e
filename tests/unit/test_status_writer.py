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
