"""Each endpoint's maxConcurrency across replicas: at most that many attempts in flight to
the endpoint, whichever replicas send them.

The slots live in the store (`Store.take_slots`): each replica records how many it holds
and how many more it waits for, and takes more only while the sum stays within the
limit. Asking the store for every attempt would cost a round trip per delivery, so a
replica keeps the slots it got and passes a finished attempt's slot straight to its next
waiting one; when it runs short it asks for as many again as it holds (at least
`BATCH`), so a growing load asks a few times, not once per attempt. It gives slots back
when it no longer needs them (idle for `idle` seconds) or when other replicas hold or
want some and it holds more than an even share. It learns that share without asking
per endpoint: every `tick` one query counts, for every endpoint, the other replicas that
hold or want its slots, so a replica that never runs out still hears about the others
within a tick, and a replica within its share does not talk to the store at all.

With one replica (SQLite, or PostgreSQL alone) nobody else wants slots: the replica takes
the limit once and keeps it while busy, as a local semaphore would.

If the store does not answer, the replica keeps to the limit on its own (the slots it
holds, plus up to the limit locally) and says so once: a store outage must not stop
deliveries; the store's record is corrected at the next answer, since each replica
writes its own row whole."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from webhook_operator.store.base import Store, slot_share

log = logging.getLogger(__name__)

NsName = tuple[str, str]
# How often a replica that holds or wants slots tells the store and reads its share.
TICK = 0.1
# Slots unused this long go back to the store (sooner when other replicas want them).
IDLE = 1.0
# A replica refused every slot asks again this soon (others give back within a tick).
RETRY = 0.05
# A replica that runs short asks for at least this many slots more than it waits for.
BATCH = 4


@dataclass
class _Endpoint:
    limit: int
    held: int = 0  # slots this replica holds in the store's record (or, in an outage, locally)
    in_use: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    share: int | None = None  # while other replicas hold or want slots: the most to keep
    wanted: int = 0  # what the store records this replica as waiting for
    last_used: float = 0.0
    talking: asyncio.Task[None] | None = None  # the one store exchange in progress
    # While the store records what this replica keeps, no slot is handed out: the record
    # must never be below what is in flight.
    recording: bool = False

    @property
    def excess(self) -> int:
        """Slots held beyond what this replica may keep (its share, the limit)."""
        cap = self.limit if self.share is None else min(self.share, self.limit)
        return max(self.held - max(cap, self.in_use), 0)


@dataclass
class EndpointSlots:
    store: Store
    owner: str
    clock: Callable[[], float] = time.monotonic
    tick: float = TICK
    idle: float = IDLE
    retry: float = RETRY
    _endpoints: dict[NsName, _Endpoint] = field(default_factory=dict)
    _outage: bool = False

    @contextlib.asynccontextmanager
    async def slot(self, key: NsName, limit: int) -> AsyncIterator[None]:
        """One of the endpoint's `limit` slots for the duration of an attempt."""
        await self.acquire(key, limit)
        try:
            yield
        finally:
            self.release(key)

    async def acquire(self, key: NsName, limit: int) -> None:
        ep = self._endpoints.get(key)
        if ep is None:
            ep = self._endpoints[key] = _Endpoint(limit)
        ep.limit = limit
        if not ep.waiters and not ep.recording and ep.in_use < ep.held and not ep.excess:
            ep.in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ep.waiters.append(waiter)
        self._hand_out(ep)
        self._talk(key, ep)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(key)  # given a slot just as it was cancelled
            else:
                with contextlib.suppress(ValueError):
                    ep.waiters.remove(waiter)
            raise

    def release(self, key: NsName) -> None:
        ep = self._endpoints.get(key)
        if ep is None:
            return
        ep.in_use -= 1
        ep.last_used = self.clock()
        if ep.excess:
            # Beyond this replica's share (others wait) or a lowered limit: back to the
            # store rather than to the next waiter here.
            self._talk(key, ep)
            return
        self._hand_out(ep)

    def forget(self, key: NsName) -> None:
        """The endpoint is gone: its record goes with the next store exchange."""
        ep = self._endpoints.get(key)
        if ep is not None and not ep.in_use and not ep.waiters:
            ep.limit = 0
            self._talk(key, ep)

    async def run(self) -> None:
        """Every tick: learn each endpoint's share (one query for all endpoints), give back
        idle slots and slots beyond the share, and ask again for what waiters need."""
        while True:
            await asyncio.sleep(self.tick)
            if self._endpoints:
                await self._settle()

    async def _settle(self) -> None:
        try:
            contenders: dict[NsName, int] | None = await self.store.slot_contenders(self.owner)
        except Exception as exc:
            self._failed(exc)
            contenders = None
        now = self.clock()
        for key, ep in list(self._endpoints.items()):
            if contenders is not None:
                ep.share = slot_share(ep.limit, contenders.get(key, 0))
            idle = ep.held > ep.in_use and now - ep.last_used >= self.idle
            # A recorded wait nobody waits for any more keeps the others to their share.
            stale = ep.wanted and not ep.waiters
            if ep.waiters or ep.excess or idle or stale:
                self._talk(key, ep)
            elif not ep.held and not ep.in_use and ep.talking is None:
                del self._endpoints[key]

    async def close(self) -> None:
        """Give every slot back (the store also drops an owner's slots when it leaves)."""
        for key, ep in list(self._endpoints.items()):
            if ep.talking is not None:
                ep.talking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ep.talking
            ep.waiters.clear()
            if ep.held:
                with contextlib.suppress(Exception):
                    await self.store.take_slots(*key, self.owner, 0, 0, ep.limit)
        self._endpoints.clear()

    # -- the store exchange ----------------------------------------------------------------

    def _hand_out(self, ep: _Endpoint) -> None:
        while ep.waiters and not ep.recording and ep.in_use < ep.held and not ep.excess:
            waiter = ep.waiters.popleft()
            if waiter.done():
                continue
            ep.in_use += 1
            waiter.set_result(None)

    def _talk(self, key: NsName, ep: _Endpoint) -> None:
        if ep.talking is None:
            ep.talking = asyncio.create_task(self._exchange(key, ep))

    async def _exchange(self, key: NsName, ep: _Endpoint) -> None:
        """Record what this replica keeps and take what its waiters need, until they have
        it or the store has none to give (then again after `retry`)."""
        pause = self.retry
        try:
            while True:
                idle = not ep.waiters and self.clock() - ep.last_used >= self.idle
                keep = ep.in_use if idle else max(ep.held - ep.excess, ep.in_use)
                want = max(len(ep.waiters) - (keep - ep.in_use), 0)
                spare = max(keep, BATCH) if want else 0
                ep.recording = True
                at_share = False
                try:
                    grant = await self.store.take_slots(
                        *key, self.owner, keep, want, ep.limit, spare
                    )
                except Exception as exc:
                    self._failed(exc)
                    ep.held, ep.share = max(keep, min(ep.limit, ep.in_use + want)), None
                else:
                    self._recovered()
                    ep.held, ep.share = keep + grant.granted, grant.share
                    ep.wanted = max(want - grant.granted, 0)
                    at_share = not grant.granted and grant.share is not None
                    at_share = at_share and ep.held >= (grant.share or 0)
                finally:
                    ep.recording = False
                self._hand_out(ep)
                if not ep.waiters or not ep.limit:
                    return
                # Refused while holding its even share: more comes only when another
                # replica idles (after `idle`) or leaves, so asking every `retry` would
                # only cost a store round trip each time; ask less often, up to `idle`.
                pause = min(pause * 2, self.idle) if at_share else self.retry
                await asyncio.sleep(pause)
        finally:
            ep.talking = None

    def _failed(self, exc: Exception) -> None:
        if not self._outage:
            self._outage = True
            log.warning(
                "sharing concurrency slots failed, keeping each endpoint's limit locally "
                "until the store answers: %s",
                exc,
            )

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("sharing concurrency slots works again")
