"""Bounded holds: held deliveries that waited longer than their endpoint's holdFor expire.

A paused or disabled endpoint's deliveries are held, not attempted; without a bound a
receiver that never comes back would keep them (and their events, which the purge
keeps while a delivery is open) for ever. Every replica sweeps: the store's
`expire_held` is one UPDATE of rows still held, so two replicas sweeping at once expire
each delivery once, and nothing here is kept between sweeps but the configuration every
replica watches. The store bumps the endpoint's version with each expiry, so the counts
reach the CRD status by the usual stats path.

How often: a quarter of the shortest finite holdFor, between MIN_INTERVAL and
MAX_INTERVAL, so a delivery expires at most that long after its time (a minute for the
default 72h, a second for a test's 2s)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from webhook_operator.delivery.metrics import Metrics
from webhook_operator.delivery.registry import Registry
from webhook_operator.store.base import DeliveryStatus, Store

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0
MAX_INTERVAL = 60.0
EXPIRED = DeliveryStatus.EXPIRED.value


def sweep_interval(hold_fors: list[float]) -> float:
    """Seconds between sweeps for these holdFor values (0: forever, not swept)."""
    finite = [h for h in hold_fors if h > 0]
    if not finite:
        return MAX_INTERVAL
    return min(MAX_INTERVAL, max(MIN_INTERVAL, min(finite) / 4))


@dataclass
class HoldExpiry:
    store: Store
    registry: Registry
    metrics: Metrics
    clock: Callable[[], float] = time.time

    async def sweep(self) -> int:
        """Expire what is due now; returns how many deliveries expired."""
        total = 0
        for namespace, endpoint in await self.store.held_endpoints():
            config = self.registry.endpoints.get((namespace, endpoint))
            # An endpoint this replica does not know is being deleted (its deliveries are
            # cancelled) or not listed yet: nothing to decide for it.
            if config is None or config.hold_for <= 0:
                continue
            expired = await self.store.expire_held(
                namespace, endpoint, config.hold_for, self.clock()
            )
            if expired:
                log.info(
                    "%d held deliveries to %s/%s expired (held longer than holdFor)",
                    expired,
                    namespace,
                    endpoint,
                )
                self.metrics.deliveries.labels(namespace, endpoint, EXPIRED).inc(expired)
                total += expired
        return total

    def interval(self) -> float:
        return sweep_interval([c.hold_for for c in self.registry.endpoints.values()])

    async def run(self) -> None:
        # The interval is looked at every MIN_INTERVAL, not slept whole: an endpoint given
        # a short holdFor a moment after a long sleep began is swept in time all the same.
        last = time.monotonic()
        while True:
            await asyncio.sleep(MIN_INTERVAL)
            if time.monotonic() - last < self.interval():
                continue
            last = time.monotonic()
            try:
                await self.sweep()
            except Exception as exc:  # the store is down: the next sweep catches up
                log.warning("expiring held deliveries failed, trying again: %s", exc)
