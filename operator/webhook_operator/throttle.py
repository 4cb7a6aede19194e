"""Per-endpoint rate limiting: how long a delivery waits before it may be sent.

An endpoint's spec may cap the request rate (per second, with a burst), and a receiver
answering 429 is asking for less than that. One `TokenBucket` per endpoint answers both:
`reserve` books the next free slot and says how long to wait for it, so concurrent
senders queue up at the configured spacing instead of all waking at once, and
`slow_down` / automatic recovery adapt the rate to the receiver's 429s. The clock is an
argument, so the delivery loop owns time and the tests need no sleeping.

Adaptation rule (deliberately simple, AIMD-like):

* a 429 multiplies the effective rate by `factor` (default 0.5), never below
  `min(min_rate, configured rate)`, and drops any saved-up burst;
* 429s within `SLOW_DOWN_COOLDOWN` seconds of the previous slow-down count once: they
  answer requests sent before the rate was lowered, so they say nothing about it;
* every `recovery_interval` seconds (default 10) without a 429 the effective rate
  doubles, up to the configured rate, where the bucket stops being throttled.
"""

from __future__ import annotations

import math

DEFAULT_RECOVERY_INTERVAL = 10.0
SLOW_DOWN_COOLDOWN = 1.0


def _check_rate(rate: float, burst: float) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
    if not (math.isfinite(burst) and burst >= 1):
        raise ValueError(f"burst must be at least 1, got {burst}")


class TokenBucket:
    """A token bucket whose tokens may be booked ahead (a negative balance).

    The bucket holds up to `burst` tokens and refills at the effective rate. `reserve`
    always takes a token; when none is there yet the balance goes negative, and the
    delay returned is when the refill will have covered it. So with rate 10 and burst 1,
    ten reservations at t=0 get delays 0, 0.1, ..., 0.9. A new bucket starts full.
    """

    __slots__ = (
        "_burst",
        "_current",
        "_interval",
        "_last_slow_down",
        "_quiet_since",
        "_rate",
        "_tokens",
        "_updated",
    )

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        recovery_interval: float = DEFAULT_RECOVERY_INTERVAL,
    ) -> None:
        _check_rate(rate, burst)
        if not (math.isfinite(recovery_interval) and recovery_interval > 0):
            raise ValueError(f"recovery_interval must be positive, got {recovery_interval}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._current = self._rate
        self._interval = recovery_interval
        self._tokens = self._burst
        self._updated: float | None = None  # None: not used yet, the bucket is full
        self._quiet_since: float | None = None  # None: not throttled
        self._last_slow_down: float | None = None

    @property
    def rate(self) -> float:
        """The configured rate (requests per second)."""
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    @property
    def current_rate(self) -> float:
        """The effective rate: the configured one, or less after 429s."""
        return self._current

    @property
    def throttled(self) -> bool:
        """Whether 429s have lowered the effective rate below the configured one."""
        return self._quiet_since is not None

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._tokens = self._burst
            self._updated = now
        elif now > self._updated:
            earned = (now - self._updated) * self._current
            self._tokens = min(self._burst, self._tokens + earned)
            self._updated = now

    def _wait(self, now: float) -> float:
        if self._tokens >= 1:
            return 0.0
        assert self._updated is not None  # set by _refill
        ready_at = self._updated + (1 - self._tokens) / self._current
        return max(0.0, ready_at - now)

    def reserve(self, now: float) -> float:
        """Book the next slot; the seconds to wait before sending (0.0: send now)."""
        self.recover(now)
        wait = self._wait(now)
        self._tokens -= 1
        return wait

    def reserve_within(self, now: float, horizon: float) -> float | None:
        """Book the next slot if it is at most `horizon` seconds away and return the wait;
        None (nothing booked) when it is further. Booking only just ahead keeps the
        cadence (a late wake-up does not lose the slot) while no more than `horizon`
        seconds of slots can be used late at once."""
        self.recover(now)
        wait = self._wait(now)
        if wait > horizon:
            return None
        self._tokens -= 1
        return wait

    def wait_time(self, now: float) -> float:
        """Seconds until the next slot, booking nothing."""
        self.recover(now)
        return self._wait(now)

    def cancel(self) -> None:
        """Give back the slot the last `reserve` booked (its delivery will not be sent)."""
        self._tokens = min(self._burst, self._tokens + 1)

    def slow_down(self, now: float, factor: float = 0.5, min_rate: float = 0.5) -> float:
        """Lower the effective rate after a 429; returns the new effective rate."""
        if not 0 < factor <= 1:
            raise ValueError(f"factor must be in (0, 1], got {factor}")
        if not min_rate > 0:
            raise ValueError(f"min_rate must be positive, got {min_rate}")
        self.recover(now)  # doublings already due, and tokens earned at the old rate
        last = self._last_slow_down
        if last is None or not 0 <= now - last < SLOW_DOWN_COOLDOWN:
            floor = min(min_rate, self._rate)
            self._current = max(floor, self._current * factor)
            self._last_slow_down = now
        self._tokens = min(self._tokens, 0.0)
        self._quiet_since = now
        return self._current

    def recover(self, now: float) -> float:
        """Apply the doublings due by `now` (see the module docstring); the effective rate.

        `reserve` calls this itself; calling it directly only matters for reporting.
        """
        self._refill(now)  # before any doubling: the quiet time so far ran at the lower rate
        if self._quiet_since is None:
            return self._current
        steps = math.floor((now - self._quiet_since) / self._interval)
        if steps <= 0:
            return self._current
        for _ in range(steps):  # stops after at most log2(rate / floor) doublings
            self._current *= 2
            if self._current >= self._rate:
                break
        self._quiet_since += steps * self._interval
        self._settle()
        return self._current

    def _settle(self) -> None:
        if self._current >= self._rate:
            self._current = self._rate
            self._quiet_since = None

    def reconfigure(self, rate: float, burst: float) -> None:
        """Take a changed endpoint spec. Same values: no effect.

        A throttled bucket keeps its lowered rate (capped by the new configured one) and
        keeps recovering toward the new rate; saved tokens above the new burst are lost.
        """
        _check_rate(rate, burst)
        self._rate = float(rate)
        self._burst = float(burst)
        self._current = self._rate if self._quiet_since is None else min(self._current, self._rate)
        self._settle()
        self._tokens = min(self._tokens, self._burst)
