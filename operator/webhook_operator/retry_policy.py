"""When a failed delivery is tried again, and when it is given up.

Kept apart from the delivery loop so the decisions (what counts as success, what the
receiver's Retry-After is worth, how far apart attempts go) are plain functions of their
inputs: the clock and the random draw are arguments, so tests need neither sleeping nor
seeding. The default schedule is 1m, 5m, 30m, 2h after the first failure: five attempts
spread over about two and a half hours, long enough to ride out a receiver's deploy or
short outage without hammering it.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

DEFAULT_SCHEDULE: tuple[float, ...] = (60, 300, 1800, 7200)


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    RETRY = "retry"
    # 410 Gone: the receiver says the endpoint no longer exists; disable it at once.
    GONE = "gone"


@dataclass(frozen=True)
class RetryPolicy:
    """Delays (seconds) after failed attempts 1, 2, ...; one attempt more than delays.

    `jitter` spreads each delay by up to +/- that fraction so that deliveries failed by
    the same outage do not all come back in the same second. `retry_after_cap` bounds
    how long a receiver's Retry-After may push the next attempt out.
    """

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.1
    retry_after_cap: float = 3600.0

    def __post_init__(self) -> None:
        if any(not math.isfinite(d) or d < 0 for d in self.schedule):
            raise ValueError(f"retry delays must be finite and >= 0, got {self.schedule}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be a fraction in [0, 1], got {self.jitter}")
        if not self.retry_after_cap >= 0:
            raise ValueError(f"retry_after_cap must be >= 0, got {self.retry_after_cap}")

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1


def classify(http_status: int | None, error: str | None) -> Outcome:
    """What an attempt's result means for the delivery.

    When the receiver answered, its status decides, even if reading the rest of the
    response then failed: the request was delivered. Without a status (connection
    refused, timeout, TLS error, refused by the SSRF guard) the attempt is retried.
    Only 2xx is success: redirects are not followed, so a 3xx is a failure like a 4xx
    or 5xx; 410 alone is final. `error` is descriptive only and does not change this.
    """
    if http_status is None:
        return Outcome.RETRY
    if 200 <= http_status <= 299:
        return Outcome.SUCCESS
    if http_status == 410:
        return Outcome.GONE
    return Outcome.RETRY


def _jittered(delay: float, jitter: float, rand: float) -> float:
    return delay * (1 + jitter * (2 * rand - 1))


def next_attempt(
    policy: RetryPolicy, attempt: int, now: float, rand: float, retry_after: float | None
) -> float | None:
    """Epoch time of the attempt after failed attempt `attempt` (1-based); None if none.

    `rand` is a uniform draw from [0, 1] (0.5 means no jitter). A Retry-After from the
    receiver (seconds) can push the attempt later, never earlier, and no later than the
    policy's cap.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if not 0 <= rand <= 1:
        raise ValueError(f"rand must be in [0, 1], got {rand}")
    if attempt >= policy.max_attempts:
        return None
    delay = _jittered(policy.schedule[attempt - 1], policy.jitter, rand)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.retry_after_cap))
    return now + delay


_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _http_date_delay(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime format, or "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    delay = when.timestamp() - now
    return delay if delay >= 0 else None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    None for a missing or malformed value, and for a date already past (nothing to wait
    for). Fractional seconds are accepted although the RFC only has whole ones.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    return _http_date_delay(value, now)
