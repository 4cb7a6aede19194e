"""Which endpoints may be delivered to: the one owner of endpoint delivery state in a
delivery-service process.

Several replicas share one database, so the truth is the store's, not a process's: an
endpoint disabled automatically (410 Gone, retries exhausted) by one replica must receive
nothing new from any of them, and the `webhook_endpoints_disabled` gauge must read the
same everywhere. This owner keeps a copy of the store's disabled endpoints, read at
start and again every `interval` (0.5 s: `disabled_endpoints` reads the few rows that
are disabled), and ingest, ping and the dispatcher ask it rather than a dict each of
them writes. Pausing (`spec.active: false`) comes from the WebhookEndpoint itself, which
every replica watches.

A disable this process has just decided (an attempt's outcome) counts here at once,
before the result carrying it is recorded; it stays noted until the store shows it, or
for `noted_for` seconds when the result was never recorded (its lease was lost).

A receiver's 429 asks every replica to wait (issue 17): the replica that got it records
until when in the store (`Store.rate_not_before`) and notes it here at once; each
refresh also reads the endpoints whose wait has not ended (`slowed_endpoints`, the few
rows of a table with one per rate-limited or slowed endpoint), so the other replicas
learn it within `interval` and the dispatcher asks here, not the store, per delivery.

Held deliveries must not stay held once the endpoint may be delivered to again, whoever
held them and whenever: a replica whose copy was still stale may hold, in the second
after another replica released them, deliveries it claimed or accepted. So a release
happens wherever an endpoint is seen to become deliverable (this process's copy of the
store no longer says disabled, a resume), and after every hold whose endpoint has become
deliverable meanwhile (`held`). Releasing only turns HELD into PENDING, and a claim
leases each delivery to one replica, so releasing twice never delivers twice.

The `enable` annotation is acted on once per value: the store records the value last
acted on (`EndpointState.enable_token`), and the replica that finds the endpoint still
disabled under an older value enables it and releases; the others find the value
recorded and do nothing. Replicas that read the store at the same instant (they see the
annotation through their watches within milliseconds of each other) may both enable:
harmless, as the second write repeats the first and its release finds nothing held. A
store write that enables only under an older value, and says whether it did, would make
it one; `Store.set_disabled` does not answer that today."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from webhook_operator.delivery.metrics import Metrics
from webhook_operator.delivery.registry import EndpointConfig, Registry
from webhook_operator.store.base import Store

log = logging.getLogger(__name__)

NsName = tuple[str, str]
REFRESH_INTERVAL = 0.5
# A noted disable whose result the store never showed (lost lease, store down for long).
NOTED_FOR = 5.0


@dataclass(frozen=True)
class Disabled:
    reason: str
    since: float | None


@dataclass
class EndpointStates:
    store: Store
    registry: Registry
    metrics: Metrics
    interval: float = REFRESH_INTERVAL
    noted_for: float = NOTED_FOR
    clock: Callable[[], float] = time.time
    # Called after held deliveries were released (the dispatcher's wake-up).
    released: Callable[[], None] = lambda: None
    # The store's disabled endpoints as last read, and the ones this process has just
    # disabled (with when), not yet read back.
    _stored: dict[NsName, Disabled] = field(default_factory=dict)
    _noted: dict[NsName, tuple[Disabled, float]] = field(default_factory=dict)
    # Until when a receiver's 429 holds each endpoint back: as the store said at the last
    # refresh, and as this process noted from a 429 it received (kept until it ends, in
    # case recording it failed).
    _slowed: dict[NsName, float] = field(default_factory=dict)
    _noted_slowed: dict[NsName, float] = field(default_factory=dict)
    _failing_since: float | None = None
    # Releases that failed (the store was down): tried again with every refresh.
    _unreleased: set[NsName] = field(default_factory=set)

    # -- questions ------------------------------------------------------------------------

    def disabled(self, key: NsName) -> Disabled | None:
        stored = self._stored.get(key)
        if stored is not None:
            return stored
        noted = self._noted.get(key)
        return noted[0] if noted is not None else None

    def holds(self, key: NsName) -> bool:
        """Whether a delivery to the endpoint must be held now: unknown, paused or
        disabled."""
        config = self.registry.endpoints.get(key)
        return config is None or not config.active or self.disabled(key) is not None

    def holds_config(self, config: EndpointConfig) -> bool:
        """`holds` for a configuration at hand (ingest: the subscribers it matched)."""
        key = (config.namespace, config.name)
        return not config.active or self.disabled(key) is not None

    def not_before(self, key: NsName) -> float:
        """Until when a receiver's 429 asked every replica not to send to the endpoint (0
        when it never did); the caller compares it with its own clock."""
        return max(self._slowed.get(key, 0.0), self._noted_slowed.get(key, 0.0))

    def count(self) -> int:
        """Disabled endpoints as the store says: the same on every replica."""
        return len(self._stored)

    # -- this process's changes -----------------------------------------------------------

    def note_disabled(self, key: NsName, reason: str) -> None:
        """An attempt's outcome disables the endpoint; the store records it with the
        attempt's result, and from now on this process holds what it claims for it."""
        if key not in self._stored:
            self._noted[key] = (Disabled(reason, self.clock()), self.clock())

    def note_slowed(self, key: NsName, until: float) -> None:
        """A 429 this process received: its own sends wait at once, not from the next
        refresh (the store records it for the other replicas)."""
        self._noted_slowed[key] = max(self._noted_slowed.get(key, 0.0), until)

    async def enable(self, config: EndpointConfig) -> bool:
        """Act on the endpoint's `enable` annotation: enable it and release its held
        deliveries, unless the store says it is not disabled or that this value was acted
        on already (by this replica or another). True when this call enabled it."""
        key = (config.namespace, config.name)
        token = config.enable_token
        if token is None or not await self.store.enable_once(*key, token):
            return False
        self._stored.pop(key, None)
        self._noted.pop(key, None)
        self._set_gauge()
        log.info("endpoint %s/%s enabled again", *key)
        if config.active:
            await self.release(key)
        return True

    async def forget(self, key: NsName) -> None:
        """The endpoint was deleted: its disable goes too, in the store, so a new endpoint
        of the same name starts enabled on every replica."""
        known = self._stored.pop(key, None) is not None
        self._noted.pop(key, None)
        self._noted_slowed.pop(key, None)
        self._set_gauge()
        if known:
            await self.store.set_disabled(*key, None, self.clock())

    async def forget_missing(self, present: Iterable[NsName]) -> None:
        """After the first listing: endpoints deleted while this process was down."""
        keep = set(present)
        for key in [k for k in self._stored if k not in keep]:
            await self.forget(key)

    async def release(self, key: NsName) -> int:
        released = await self.store.release_held(*key, self.clock())
        if released:
            log.info("released %d held deliveries to %s/%s", released, *key)
        self.released()
        return released

    async def held(self, keys: Iterable[NsName]) -> None:
        """Deliveries of these endpoints were just held (or accepted held): release them
        again where the endpoint has become deliverable meanwhile, as their hold may have
        come after its release. Never raises: a release that fails is retried."""
        for key in set(keys):
            if not self.holds(key):
                await self._release_or_retry(key)

    async def _release_or_retry(self, key: NsName) -> None:
        try:
            await self.release(key)
        except Exception as exc:
            log.warning("releasing held deliveries to %s/%s failed, retrying: %s", *key, exc)
            self._unreleased.add(key)
        else:
            self._unreleased.discard(key)

    # -- following the store --------------------------------------------------------------

    async def load(self) -> None:
        """The store's disabled endpoints and 429 waits, before anything is accepted or
        claimed."""
        self._stored = await self._read()
        self._slowed = await self.store.slowed_endpoints(self.clock())
        self._set_gauge()

    async def refresh(self) -> None:
        before = set(self._stored) | set(self._noted)
        now = self.clock()
        # Both read before either is kept: a failed read leaves the copy as it was, and
        # the next refresh still sees what changed since.
        stored, slowed = await self._read(), await self.store.slowed_endpoints(now)
        self._stored, self._slowed = stored, slowed
        self._noted_slowed = {k: t for k, t in self._noted_slowed.items() if t > now}
        self._noted = {
            key: (disabled, at)
            for key, (disabled, at) in self._noted.items()
            if key not in self._stored and now - at < self.noted_for
        }
        self._set_gauge()
        # Enabled elsewhere (or a noted disable that never reached the store): deliveries
        # this process held meanwhile go out now.
        changed = before - set(self._stored) - set(self._noted)
        for key in sorted(changed | self._unreleased):
            if self.holds(key):
                self._unreleased.discard(key)  # held again for now: its next release will do
            else:
                await self._release_or_retry(key)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception as exc:  # the store is down: keep the last known state
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("reading endpoint states failed, retrying: %s", exc)
                continue
            if self._failing_since is not None:
                log.warning(
                    "reading endpoint states works again after %.1fs",
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None

    async def _read(self) -> dict[NsName, Disabled]:
        return {
            (s.namespace, s.endpoint): Disabled(s.disabled_reason or "Disabled", s.disabled_at)
            for s in await self.store.disabled_endpoints()
        }

    def _set_gauge(self) -> None:
        self.metrics.disabled.set(self.count())
