"""The delivery loop: claim due deliveries, apply each endpoint's state (paused, disabled,
rate limit, concurrency), sign and send, and record the outcome with the next attempt
scheduled by the endpoint's retry policy.

Whether an endpoint is paused or disabled is `EndpointStates`' answer (the store's truth,
shared by every replica), asked when a delivery is claimed and again just before it is
sent: a delivery caught either time is held, unattempted, as at ingest. Rate limits and
maxConcurrency are shared by the replicas through the store too (send slots reserved from
`Store.reserve_rate`, concurrency slots from `endpoint_slots.EndpointSlots`).

A receiver's 429 slows every replica: it is recorded in the store (`_slow_everyone`).
A rate-limited endpoint's reservations then wait for it; for an endpoint without a rate
limit, `EndpointStates.not_before` says until when (noted here at once, read from the
store by the other replicas within a refresh), and claims caught inside that window, at
claim time or just before sending, go back to the store due when it ends, unattempted.

Results are written in small batches so a busy service makes few store transactions;
a crash between claim and record loses nothing: the claim is given back and another
attempt is made (at-least-once).

Claims are leased in the name of `owner`, unique to this process. The lease
(`lease_seconds`, 120 s) is the last resort; claims come back much sooner:

- Start-up registers the owner before the first claim (`Store.register_owner`): with
  SQLite this waits until no other process claims from the file, and then every lease in
  it is an earlier process's and is given back; with PostgreSQL the owner holds a lock
  that the database drops when the process dies.
- Every `heartbeat_interval` (2 s) the owner renews its registration, and gives back the
  claims of owners that are gone (PostgreSQL: their lock is free; so a killed replica's
  claims are taken over within one interval) or silent for `owner_stale_after` (10 s: a
  hung process, or a node that vanished while the database still holds its session).
- Shutdown stops claiming, gives back at once the claims still waiting for their turn
  (rate limit, concurrency: not attempted, so nothing is lost or repeated), lets the
  attempts in flight finish within the grace period, cancels the rest, records what
  finished and gives back everything else (`Store.release_owner`): the next process or
  another replica attempts them at once.
- An owner that finds it had been presumed gone (a heartbeat after a long stall) gives
  back the claims still waiting: their leases were, or may soon be, taken by others.

An attempt cut off by shutdown, or made by an owner presumed gone, may have reached the
receiver and is made again: receivers de-duplicate with `webhook-id`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

from webhook_operator.delivery.endpoint_slots import EndpointSlots
from webhook_operator.delivery.endpoint_states import EndpointStates
from webhook_operator.delivery.metrics import Metrics
from webhook_operator.delivery.registry import EndpointConfig, Registry
from webhook_operator.delivery.sender import Sender, SendResult
from webhook_operator.retry_policy import Outcome, classify, next_attempt, parse_retry_after
from webhook_operator.secret_refs import InvalidSecretValue, MissingSecretValue
from webhook_operator.signing import webhook_headers
from webhook_operator.store.base import AttemptResult, Claimed, DeliveryStatus, Store
from webhook_operator.throttle import SLOW_DOWN_COOLDOWN, TokenBucket
from webhook_operator.tls_context import InvalidTLSMaterial

log = logging.getLogger(__name__)

EXHAUSTED = "RetriesExhausted"
GONE = "Gone"
NsName = tuple[str, str]
# Rate-limited deliveries due within this many seconds wait in memory for their slot.
RATE_HORIZON = 1.0
# Rate-limited requests book their send slot at most this far ahead.
ADMIT_HORIZON = 0.02
# Rate-limited slots are reserved from the store's shared budget at most this many per
# statement (and at most a tenth of a second's worth): few round trips, and a replica
# never holds much of the budget that another could have used.
RATE_BATCH = 20
# A receiver's Retry-After holds back every replica's reservations at most this long.
MAX_NOT_BEFORE = 60.0
CATCH_UP = 0.05


class StoreOutage:
    """A loop whose store calls fail (PostgreSQL restarting, SQLite locked past its busy
    timeout): it keeps going, backing off, and says so once per outage rather than once
    per try. Claiming: the deliveries it could not claim or hold are still leased or due
    in the store and are claimed again once it answers. The heartbeat: the owner's
    registration is renewed (or taken again) once the store answers."""

    FIRST, MOST = 0.2, 5.0

    def __init__(self, what: str = "claiming deliveries") -> None:
        self.what = what
        self.delay = 0.0
        self.since: float | None = None

    def failed(self, exc: Exception) -> float:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s failed, retrying until the store answers: %s", self.what, exc)
        self.delay = min(self.MOST, max(self.FIRST, self.delay * 2))
        return self.delay

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("%s works again after %.1fs", self.what, time.monotonic() - self.since)
        self.since, self.delay = None, 0.0


@dataclass
class DispatcherSettings:
    owner: str
    # Claims and result batches of 64: the store works inline on the event loop, and
    # 200-row batches stalled it long enough to show in the p99 latency at 2,000
    # deliveries/s, with no gain in throughput (docs/benchmarks.md).
    batch: int = 64
    max_in_flight: int = 1000
    poll_interval: float = 0.25
    lease_seconds: float = 120.0
    # Registration renewed (and gone owners' claims taken back) this often; an owner silent
    # for owner_stale_after seconds is presumed gone. Both far below lease_seconds.
    heartbeat_interval: float = 2.0
    owner_stale_after: float = 10.0
    flush_interval: float = 0.02
    flush_batch: int = 64


@dataclass
class Dispatcher:
    store: Store
    registry: Registry
    sender: Sender
    metrics: Metrics
    settings: DispatcherSettings
    # Which endpoints are paused or disabled: asked at claim time and again just before
    # sending, so a disable recorded by any replica stops this one within a refresh.
    states: EndpointStates
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _slots: asyncio.Semaphore | None = None
    # Each endpoint's maxConcurrency, shared with the other replicas through the store.
    slots: EndpointSlots = field(init=False)
    _buckets: dict[NsName, tuple[TokenBucket, TokenBucket]] = field(default_factory=dict)
    _results: list[AttemptResult] = field(default_factory=list)
    _flush_now: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _deferred_tail: dict[NsName, float] = field(default_factory=dict)
    _queued: defaultdict[NsName, int] = field(default_factory=lambda: defaultdict(int))
    _gates: dict[NsName, asyncio.Lock] = field(default_factory=dict)
    # Attempts not yet sending (waiting for their rate-limit turn or a concurrency slot),
    # with their claims: these can be given back without losing or repeating anything.
    _waiting: dict[asyncio.Task[None], Claimed] = field(default_factory=dict)
    # Claims found paused or disabled just before sending: held with the next flush.
    _late_holds: list[Claimed] = field(default_factory=list)
    # Claims found inside a 429's window just before sending: given back, due when it ends.
    _late_defers: list[tuple[Claimed, float]] = field(default_factory=list)
    # Held while claiming and dispatching, so shutdown knows when claiming has stopped.
    _claiming: asyncio.Lock = field(default_factory=asyncio.Lock)
    _heartbeats: asyncio.Task[None] | None = None
    draining: bool = False

    def __post_init__(self) -> None:
        self.slots = EndpointSlots(self.store, self.settings.owner)

    def wake(self) -> None:
        self._wake.set()

    # -- endpoint state --------------------------------------------------------------------

    def bucket(self, config: EndpointConfig, plan: bool = False) -> TokenBucket | None:
        """The endpoint's rate limiter: `plan` books turns when deliveries are claimed (to
        decide what waits in memory and what goes back to the store), the other one admits
        each request when it is about to be sent. Two, because a busy event loop wakes
        sleepers late: admitting at send time keeps them spaced instead of bunched."""
        key = (config.namespace, config.name)
        if config.rate is None:
            self._buckets.pop(key, None)
            return None
        burst = config.burst or int(config.rate)
        # The gate may make up for slots a stalled loop missed, up to CATCH_UP seconds'
        # worth: a drain keeps its rate, and no second ever exceeds the limit by more.
        gate_burst = burst + config.rate * CATCH_UP
        pair = self._buckets.get(key)
        if pair is None:
            pair = self._buckets[key] = (
                TokenBucket(config.rate, burst),
                TokenBucket(config.rate, gate_burst),
            )
        elif (pair[0].rate, pair[0].burst) != (config.rate, burst):
            pair[0].reconfigure(config.rate, burst)
            pair[1].reconfigure(config.rate, gate_burst)
        return pair[0] if plan else pair[1]

    def forget_endpoint(self, key: NsName) -> None:
        self._buckets.pop(key, None)
        self.slots.forget(key)
        self._deferred_tail.pop(key, None)
        self._gates.pop(key, None)
        self.metrics.forget(*key)

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        self._slots = asyncio.Semaphore(self.settings.max_in_flight)
        if not await self._register():
            return
        flusher = asyncio.create_task(self._flush_loop())
        heartbeats = self._heartbeats = asyncio.create_task(self._heartbeat_loop())
        sharing = asyncio.create_task(self.slots.run())
        outage = StoreOutage()
        try:
            while not self.draining:
                async with self._claiming:
                    if self.draining:
                        break
                    try:
                        claimed = await self._claim()
                        if claimed:
                            await self._dispatch(claimed)
                    except Exception as exc:  # the store is down or locked: wait, retry
                        await asyncio.sleep(outage.failed(exc))
                        continue
                outage.recovered()
                if not claimed:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
                    continue
                # The SQLite store answers without suspending, so a backlog would keep
                # this loop claiming without ever letting sends, timers or ingest run.
                await asyncio.sleep(0)
        finally:
            for task in (flusher, heartbeats, sharing):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def drain(self, grace: float) -> None:
        """Stop claiming and give back the claims not yet attempted; let attempts in
        flight finish within `grace` seconds and record them; give back the rest."""
        deadline = time.monotonic() + grace
        self.draining = True
        self.wake()
        # Frees the slots a dispatch in progress may be waiting for, so claiming can stop.
        await self._give_back_waiting()
        await self._claiming_stopped(grace)
        await self._give_back_waiting()  # what the last claim started
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
        if self._tasks:
            left = max(deadline - time.monotonic(), 0.0)
            _, unfinished = await asyncio.wait(set(self._tasks), timeout=left)
            if unfinished:
                log.warning(
                    "%d attempts still in flight after %gs; cutting them off",
                    len(unfinished),
                    grace,
                )
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*unfinished, return_exceptions=True)
        # A dispatch that waited for a slot all along gets one now, and gives it back.
        await self._claiming_stopped(grace)
        await self._flush()
        await self.slots.close()
        try:
            released = await self.store.release_owner(self.settings.owner)
        except Exception:
            log.exception("giving back unfinished claims failed; they wait for their lease")
            return
        if released:
            log.info("gave back %d unfinished claims for the next process", released)

    async def _claiming_stopped(self, within: float) -> None:
        """Wait until the loop is out of claim-and-dispatch: with every slot taken by an
        attempt in flight, a dispatch waits for one of them to end."""
        try:
            await asyncio.wait_for(self._claiming.acquire(), within)
        except TimeoutError:
            return
        self._claiming.release()

    # -- owner registration ----------------------------------------------------------------

    async def _register(self) -> bool:
        """Register the owner before the first claim, retrying while the store is not
        reachable; False when shutdown came first."""
        while not self.draining:
            try:
                released = await self.store.register_owner(self.settings.owner, time.time())
            except Exception:
                log.exception("registering claim owner %s failed; retrying", self.settings.owner)
                await asyncio.sleep(self.settings.heartbeat_interval)
                continue
            log.info("claiming as %s", self.settings.owner)
            if released:
                log.info("gave back %d claims left by an earlier process", released)
            return True
        return False

    async def _heartbeat_loop(self) -> None:
        outage = StoreOutage(f"the heartbeat of claim owner {self.settings.owner}")
        while True:
            try:
                sweep = await self.store.heartbeat(
                    self.settings.owner, time.time(), self.settings.owner_stale_after
                )
            except Exception as exc:
                outage.failed(exc)
            else:
                outage.recovered()
                if sweep.rejoined:
                    await self._give_back_waiting()
                if sweep.released:
                    self.wake()
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _give_back_waiting(self) -> None:
        """Cancel the attempts that have not started sending and give their claims back,
        due now."""
        waiting, self._waiting = self._waiting, {}
        if not waiting:
            return
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        ids = [item.delivery_id for item in waiting.values()]
        try:
            await self.store.defer(ids, self.settings.owner, time.time())
        except Exception:
            log.exception("giving back %d waiting claims failed", len(ids))

    async def _claim(self) -> list[Claimed]:
        assert self._slots is not None
        free = self._slots._value
        if free <= 0:
            await self._slots.acquire()
            self._slots.release()
            if self.draining:
                return []
            free = 1
        limit = min(self.settings.batch, free)
        claimed = await self.store.claim(
            time.time(), limit, self.settings.lease_seconds, self.settings.owner
        )
        if claimed:
            self.metrics.claim_batch.observe(len(claimed))
        return claimed

    async def _dispatch(self, claimed: list[Claimed]) -> None:
        assert self._slots is not None
        now = time.time()
        holds: list[str] = []
        held: set[NsName] = set()
        defers: dict[float, list[str]] = defaultdict(list)
        gone: set[NsName] = set()
        # Rate-limited claims, per endpoint, with their local delay: sent only with a
        # slot of the endpoint's budget in the store, shared by every replica.
        rated: defaultdict[NsName, list[tuple[Claimed, float]]] = defaultdict(list)
        rated_configs: dict[NsName, EndpointConfig] = {}
        for item in claimed:
            key = (item.namespace, item.endpoint)
            config = self.registry.endpoints.get(key)
            if config is None:
                gone.add(key)
                continue
            if self.states.holds_config(config):
                holds.append(item.delivery_id)
                held.add(key)
                continue
            if config.rate is None and (until := self.states.not_before(key)) > now:
                defers[round(until, 3)].append(item.delivery_id)
                continue
            # Sending plus waiting to send: beyond five times the endpoint's concurrency a
            # slow receiver would tie up the service's slots, so the rest waits in the store.
            if self._queued[key] >= config.max_concurrency * 5:
                defers[round(now + 0.5, 3)].append(item.delivery_id)
                continue
            delay = self._pace(key, config, now)
            if delay > RATE_HORIZON:
                defers[round(now + delay, 3)].append(item.delivery_id)
                continue
            if config.rate is not None:
                rated[key].append((item, delay))
                rated_configs[key] = config
                continue
            await self._start(key, item, config, delay, defers)
        for key, waiting in rated.items():
            config = rated_configs[key]
            for item, delay in await self._reserve(key, config, waiting, defers):
                await self._start(key, item, config, delay, defers)
        if holds:
            await self.store.hold(holds, self.settings.owner)
            await self.states.held(held)
        for until, ids in defers.items():
            await self.store.defer(ids, self.settings.owner, until)
        for namespace, endpoint in gone:
            await self.store.cancel_endpoint(namespace, endpoint, now)

    async def _start(
        self,
        key: NsName,
        item: Claimed,
        config: EndpointConfig,
        delay: float,
        defers: dict[float, list[str]],
    ) -> None:
        assert self._slots is not None
        await self._slots.acquire()
        if self.draining:  # shutdown began while this waited for a slot
            self._slots.release()
            defers[round(time.time(), 3)].append(item.delivery_id)
            return
        self._queued[key] += 1
        task = asyncio.create_task(self._attempt(item, config, delay))
        self._tasks.add(task)
        self._waiting[task] = item
        # Bookkeeping in a callback: a task cancelled before it starts runs no finally.
        task.add_done_callback(functools.partial(self._attempt_done, key))

    async def _reserve(
        self,
        key: NsName,
        config: EndpointConfig,
        waiting: list[tuple[Claimed, float]],
        defers: dict[float, list[str]],
    ) -> list[tuple[Claimed, float]]:
        """The claims of a rate-limited endpoint that got a slot of its shared budget,
        with their delays (the later of the local pace and the slot); the others go back
        to the store, spread from the budget's next free slot. Slots are reserved in
        batches of RATE_BATCH (one statement each), only within RATE_HORIZON: so the
        limit holds across replicas, and a 429 recorded by any replica delays them all.
        If the store cannot answer, the local pace alone applies (the per-replica limit)
        rather than holding the claims until their leases expire."""
        assert config.rate is not None
        rate, burst = config.rate, float(config.burst or config.rate)
        batch = max(1, min(int(rate / 10), RATE_BATCH))
        ready: list[tuple[Claimed, float]] = []
        next_free = time.time()
        while len(ready) < len(waiting):
            want = min(batch, len(waiting) - len(ready))
            now = time.time()
            try:
                grant = await self.store.reserve_rate(*key, now, rate, burst, want, RATE_HORIZON)
            except Exception:
                log.exception("reserving rate slots for %s/%s failed; pacing locally", *key)
                return waiting
            for index in range(grant.count):
                item, delay = waiting[len(ready)]
                ready.append((item, max(delay, grant.slot(index) - now)))
            next_free = grant.next_free
            if grant.count < want:
                break
        plan = self.bucket(config, plan=True)
        # Spread from the budget's next free slot, not from a tail of this replica's own:
        # a claim may be sent back several times while other replicas take the slots,
        # and a tail moved on each time would push it ever further out (the budget then
        # idles). Several replicas' claims coming back together is harmless: whichever
        # reserves first sends.
        for index, (item, _) in enumerate(waiting[len(ready) :]):
            if plan is not None:
                plan.cancel()  # the local turn taken by _pace is not used
            defers[round(next_free + index / rate, 3)].append(item.delivery_id)
        return ready

    def _pace(self, key: NsName, config: EndpointConfig, now: float) -> float:
        """Seconds until this delivery's turn under the endpoint's rate limit.

        A turn within RATE_HORIZON is waited for in memory. A later one is not kept: the
        delivery goes back to the store until about then and takes a turn when claimed
        again. (Booking far ahead and parking deliveries in the store would let their
        turns pass while a backlog is claimed first, then send them all at once.)"""
        plan = self.bucket(config, plan=True)
        if plan is None:
            return 0.0
        delay = plan.reserve(now)
        if delay <= RATE_HORIZON:
            return delay
        plan.cancel()
        # Deliveries sent back are spread at the endpoint's rate, so they return about
        # when their turn comes instead of all together.
        tail = max(self._deferred_tail.get(key, 0.0), now + delay)
        self._deferred_tail[key] = tail + 1 / plan.current_rate
        return tail - now

    async def _admit(self, config: EndpointConfig) -> None:
        """Wait for the endpoint's rate limit to let one more request out. One sender at a
        time books a slot, and only a slot at most ADMIT_HORIZON away, then waits for it
        outside the lock: the cadence holds, and a loop stall can bunch only the few slots
        booked when it began."""
        gate = self.bucket(config)
        if gate is None:
            return
        key = (config.namespace, config.name)
        lock = self._gates.get(key)
        if lock is None:
            lock = self._gates[key] = asyncio.Lock()
        async with lock:
            # Polling a clock-driven bucket: no event could announce the next slot.
            while (wait := gate.reserve_within(time.time(), ADMIT_HORIZON)) is None:  # noqa: ASYNC110
                await asyncio.sleep(gate.wait_time(time.time()) - ADMIT_HORIZON / 2)
        if wait > 0:
            await asyncio.sleep(wait)

    async def _attempt(self, item: Claimed, config: EndpointConfig, delay: float) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            await self._admit(config)
            async with self.slots.slot((config.namespace, config.name), config.max_concurrency):
                task = asyncio.current_task()
                if task is not None:
                    self._waiting.pop(task, None)  # sending from here on
                if self.states.holds((item.namespace, item.endpoint)):
                    # Disabled (by any replica) or paused since it was claimed.
                    self._late_holds.append(item)
                    self._flush_now.set()
                    return
                if self._slowed_since_claimed(item, config):
                    return
                result = await self._send(item, config)
            self._results.append(result)
            if len(self._results) >= self.settings.flush_batch:
                self._flush_now.set()
        except Exception:
            log.exception(
                "attempt of %s failed unexpectedly; its claim is given back at shutdown, "
                "or when its lease expires",
                item.delivery_id,
            )

    def _slowed_since_claimed(self, item: Claimed, config: EndpointConfig) -> bool:
        """A 429 (from any replica) asked to wait since the claim was dispatched: the
        claim goes back with the next flush, due when the wait ends. Rate-limited
        endpoints wait in their reservations instead."""
        if config.rate is not None:
            return False
        until = self.states.not_before((item.namespace, item.endpoint))
        if until <= time.time():
            return False
        self._late_defers.append((item, until))
        self._flush_now.set()
        return True

    def _attempt_done(self, key: NsName, task: asyncio.Task[None]) -> None:
        assert self._slots is not None
        self._tasks.discard(task)
        self._waiting.pop(task, None)
        self._slots.release()
        self._queued[key] -= 1
        if not self._queued[key]:
            del self._queued[key]

    def headers(
        self,
        item: Claimed,
        config: EndpointConfig,
        body: bytes,
        keys: tuple[bytes, ...],
        from_secrets: dict[str, str] | None = None,
    ) -> dict[str, str]:
        headers = dict(config.headers)
        if from_secrets:
            headers.update(from_secrets)
        headers["Content-Type"] = "application/json"
        if item.traceparent is not None:
            # The producer's trace continues into the receiver (W3C Trace Context).
            headers["traceparent"] = item.traceparent
        headers.update(webhook_headers(list(keys), item.event_id, int(time.time()), body))
        return headers

    async def _send(self, item: Claimed, config: EndpointConfig) -> AttemptResult:
        started = time.time()
        body = item.payload.encode()
        keys = self.registry.signing_keys(config, started)
        try:
            # Without its header values or its TLS material an attempt is not sent: it fails
            # with the reason (never a value) and is retried on the endpoint's schedule.
            from_secrets = self.registry.secret_headers(config)
            tls = self.registry.tls(config)
        except (MissingSecretValue, InvalidSecretValue, InvalidTLSMaterial) as exc:
            sent = SendResult(None, f"not sent: {exc}", None, 0.0)
        else:
            if not keys:
                sent = SendResult(
                    None, f"no signing secret available in Secret {config.secret_name}", None, 0.0
                )
            else:
                sent = await self.sender.send(
                    config.url,
                    config.allow_insecure_http,
                    body,
                    self.headers(item, config, body, keys, from_secrets),
                    config.timeout,
                    tls,
                )
        if sent.http_status == 429:
            await self._slow_everyone(config, sent)
        return self._outcome(item, config, started, sent)

    async def _slow_everyone(self, config: EndpointConfig, sent: SendResult) -> None:
        """A receiver's 429 holds back every replica's reservations (the local buckets
        also slow down, in `_outcome`), or, without a rate limit, every replica's sends:
        until its Retry-After, capped, else for SLOW_DOWN_COOLDOWN. This replica waits at
        once; a failure to record it only leaves the other replicas as they were."""
        now = time.time()
        wait = parse_retry_after(sent.retry_after, now)
        until = now + min(wait if wait is not None else SLOW_DOWN_COOLDOWN, MAX_NOT_BEFORE)
        self.states.note_slowed((config.namespace, config.name), until)
        try:
            await self.store.rate_not_before(config.namespace, config.name, until)
        except Exception:
            log.exception("recording a 429 of %s/%s failed", config.namespace, config.name)

    def _outcome(
        self, item: Claimed, config: EndpointConfig, started: float, sent: SendResult
    ) -> AttemptResult:
        attempt = item.attempts + 1
        outcome = classify(sent.http_status, sent.error)
        key = (item.namespace, item.endpoint)
        self.metrics.attempt_seconds.observe(sent.duration_ms / 1000)
        self.metrics.count(self.metrics.attempts, item.namespace, item.endpoint, outcome.value)
        status, next_at, disable = DeliveryStatus.DELIVERED, None, None
        if outcome is Outcome.SUCCESS:
            self.metrics.latency_seconds.observe(max(time.time() - item.created_at, 0.0))
            self.metrics.count(self.metrics.deliveries, item.namespace, item.endpoint, "delivered")
        elif outcome is Outcome.GONE:
            status, disable = DeliveryStatus.EXHAUSTED, GONE
        else:
            if sent.http_status == 429:
                for plan in (True, False):
                    bucket = self.bucket(config, plan)
                    if bucket:
                        bucket.slow_down(time.time())
            retry_after = None
            if sent.http_status in (429, 503):
                retry_after = parse_retry_after(sent.retry_after, time.time())
            next_at = next_attempt(config.retry, attempt, time.time(), random.random(), retry_after)
            if next_at is None:
                status, disable = DeliveryStatus.EXHAUSTED, EXHAUSTED
            else:
                status = DeliveryStatus.FAILED
        if disable:
            self.states.note_disabled(key, disable)
            self.metrics.count(self.metrics.deliveries, item.namespace, item.endpoint, "exhausted")
            log.warning("endpoint %s/%s disabled: %s", item.namespace, item.endpoint, disable)
        return AttemptResult(
            delivery_id=item.delivery_id,
            owner=self.settings.owner,
            namespace=item.namespace,
            endpoint=item.endpoint,
            attempt=attempt,
            started_at=started,
            duration_ms=sent.duration_ms,
            http_status=sent.http_status,
            error=sent.error,
            response_snippet=sent.response_snippet,
            success=outcome is Outcome.SUCCESS,
            status=status,
            next_attempt_at=next_at,
            disable_reason=disable,
        )

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.settings.flush_interval)
            self._flush_now.clear()
            await self._flush()

    async def _flush(self) -> None:
        await self._hold_late()
        await self._defer_late()
        if not self._results:
            return
        batch, self._results = self._results, []
        self.metrics.results_batch.observe(len(batch))
        try:
            await self.store.finish_attempts(batch, time.time())
        except Exception:
            log.exception("recording %d attempts failed; retrying", len(batch))
            self._results = batch + self._results
            await asyncio.sleep(0.5)

    async def _hold_late(self) -> None:
        if not self._late_holds:
            return
        late, self._late_holds = self._late_holds, []
        try:
            await self.store.hold([item.delivery_id for item in late], self.settings.owner)
        except Exception:
            # Still leased to this owner: given back at shutdown or when the lease ends.
            log.exception("holding %d deliveries failed", len(late))
            return
        await self.states.held({(item.namespace, item.endpoint) for item in late})

    async def _defer_late(self) -> None:
        if not self._late_defers:
            return
        late, self._late_defers = self._late_defers, []
        by_until: defaultdict[float, list[str]] = defaultdict(list)
        for item, until in late:
            by_until[round(until, 3)].append(item.delivery_id)
        try:
            for until, ids in by_until.items():
                await self.store.defer(ids, self.settings.owner, until)
        except Exception:
            # Still leased to this owner: given back at shutdown or when the lease ends.
            log.exception("giving back %d deliveries held back by a 429 failed", len(late))
