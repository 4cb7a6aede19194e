"""A keyed, delayed work queue with per-key backoff, in the manner of client-go's.

Watch events only enqueue keys; workers take keys and reconcile from the current state.
A key is never processed by two workers at once, a burst of events for one key collapses
into one reconcile, and time-based work (secret expiry, scheduled rotation) is a delayed
add rather than a timer per object."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, base_backoff: float = 0.5, max_backoff: float = 60.0) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._processing: set[K] = set()
        self._again: dict[K, float] = {}  # added while processing: run after done()
        self._failures: dict[K, int] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._base = base_backoff
        self._max = max_backoff

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: K, delay: float = 0.0) -> None:
        """Schedule `key`; an earlier schedule for it wins over a later one."""
        when = asyncio.get_running_loop().time() + max(delay, 0.0)
        if key in self._processing:
            self._again[key] = min(when, self._again.get(key, when))
            return
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._counter), key))
        self._wakeup.set()

    def retry(self, key: K) -> float:
        """Schedule `key` again after an exponential backoff; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self._base * 2.0**failures, self._max)
        self.add(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset the backoff of `key` after a success."""
        self._failures.pop(key, None)

    async def get(self) -> K:
        loop = asyncio.get_running_loop()
        while True:
            while self._heap:
                when, _, key = self._heap[0]
                if self._due.get(key) != when:
                    heapq.heappop(self._heap)  # superseded by an earlier schedule
                    continue
                wait = when - loop.time()
                if wait > 0:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._processing.add(key)
                return key
            self._wakeup.clear()
            timeout = self._heap[0][0] - loop.time() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            delay = again - asyncio.get_running_loop().time()
            self.add(key, delay)
