"""The standby's wait for the Lease, with the Lease calls faked (pure logic of when it tries
and what a stop does): a handed-back Lease wakes it at once, and Ctrl-C while it is
winning the Lease stops it rather than being lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from webhook_operator.controller.kube import Kube
from webhook_operator.controller.leader import LeaderElector


class FakeLeases:
    """One Lease held by someone else until `hand_back`; watchers see each change."""

    def __init__(self, watch_stops_slowly: float = 0.0) -> None:
        self.spec: dict[str, Any] | None = {
            "holderIdentity": "other",
            "leaseDurationSeconds": 3600,
            "renewTime": "2999-01-01T00:00:00.000000Z",
        }
        self.changes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reads = 0
        self.watch_stopping = asyncio.Event()
        self.watch_stops_slowly = watch_stops_slowly

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return {"metadata": {"resourceVersion": "1"}, "spec": dict(self.spec or {})}

    async def replace_lease(self, namespace: str, name: str, body: Any) -> Any:
        self.spec = body["spec"]
        return body

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> Any:
        raise AssertionError("the Lease exists")

    async def watch_lease(
        self, namespace: str, name: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            while True:
                yield "MODIFIED", {"spec": await self.changes.get()}
        finally:
            self.watch_stopping.set()
            if self.watch_stops_slowly:
                await asyncio.sleep(self.watch_stops_slowly)

    def hand_back(self) -> None:
        self.spec = {"holderIdentity": None, "leaseDurationSeconds": 1}
        self.changes.put_nowait(dict(self.spec))


def elector(leases: FakeLeases, renew_every: float) -> LeaderElector:
    return LeaderElector(
        cast(Kube, leases), "ns", "lease", "me", duration=60, renew_every=renew_every
    )


def test_a_lease_handed_back_wakes_the_standby_before_its_next_poll() -> None:
    asyncio.run(handed_back())


async def handed_back() -> None:
    leases = FakeLeases()
    # A poll every 30 s: only the watch can make it lead within the test's second.
    waiting = asyncio.create_task(elector(leases, renew_every=60).acquire())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert leases.reads == 1
    leases.hand_back()
    await asyncio.wait_for(waiting, 1.0)
    assert leases.spec is not None
    assert leases.spec["holderIdentity"] == "me"


def test_a_stop_while_winning_the_lease_is_not_lost() -> None:
    """Cancelled (Ctrl-C) while it stops its watch after winning: the cancellation
    reaches the caller, which then stops, instead of leading on."""
    asyncio.run(stopped_while_winning())


async def stopped_while_winning() -> None:
    leases = FakeLeases(watch_stops_slowly=0.2)
    waiting = asyncio.create_task(elector(leases, renew_every=60).acquire())
    await asyncio.sleep(0.05)
    leases.hand_back()
    await leases.watch_stopping.wait()  # won: the watch is being stopped now
    waiting.cancel()  # the watch is still stopping
    with pytest.raises(asyncio.CancelledError):
        await waiting
