"""Endpoint health from what the data plane reports, and the app-level summary.

Pending: no delivery yet. Healthy: the last delivery succeeded. Failing: the last attempt
failed and retries continue. Disabled: paused by the user (`active: false`), retries
exhausted, or the receiver answered 410 Gone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from webhook_operator.api import names
from webhook_operator.api.v1alpha1 import Health

PAUSED = "Paused"


@dataclass(frozen=True)
class DeliveryState:
    """One endpoint's delivery results as the data plane reports them."""

    last_delivery_time: datetime | None = None
    last_success_time: datetime | None = None
    last_failure_time: datetime | None = None
    last_http_status: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    disabled_reason: str | None = None  # RetriesExhausted or Gone while auto-disabled
    disabled_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    window: str | None = None


def health_event(
    before: str | None, after: Health, disabled_reason: str | None, name: str
) -> tuple[str, str, str] | None:
    """The Event (type, reason, message) a change of an endpoint's health from `before`
    (the status as last written, None for a new endpoint) to `after` deserves: a Warning
    when deliveries stopped on their own, a Normal one when they succeed again. A pause is
    the user's own doing and gets none."""
    if after is Health.DISABLED and before != Health.DISABLED and disabled_reason != PAUSED:
        return (
            "Warning",
            names.ENDPOINT_DISABLED_EVENT,
            f"deliveries stopped ({disabled_reason}); new events are held until"
            f" `kubectl webhooks enable {name}`",
        )
    if after is Health.HEALTHY and before in (Health.FAILING, Health.DISABLED):
        return "Normal", names.ENDPOINT_RECOVERED_EVENT, f"deliveries succeed again (was {before})"
    return None


def endpoint_health(active: bool, state: DeliveryState | None) -> tuple[Health, str | None]:
    """(health, disabled reason)."""
    if not active:
        return Health.DISABLED, PAUSED
    if state is None:
        return Health.PENDING, None
    if state.disabled_reason:
        return Health.DISABLED, state.disabled_reason
    if state.last_delivery_time is None:
        return Health.PENDING, None
    if state.last_failure_time is None:
        return Health.HEALTHY, None
    if state.last_success_time is not None and state.last_success_time >= state.last_failure_time:
        return Health.HEALTHY, None
    return Health.FAILING, None


@dataclass(frozen=True)
class AppSummary:
    endpoints: int = 0
    healthy: int = 0
    failing: int = 0
    disabled: int = 0
    pending: int = 0
    last_delivery_time: datetime | None = None
    last_success_time: datetime | None = None
    last_failure_time: datetime | None = None


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def summarize(
    endpoints: Iterable[tuple[Health, datetime | None, datetime | None, datetime | None]],
) -> AppSummary:
    """Counts by health and the latest times over (health, delivery, success, failure)."""
    counts = dict.fromkeys(Health, 0)
    last_delivery = last_success = last_failure = None
    for health, delivery, success, failure in endpoints:
        counts[health] += 1
        last_delivery = _latest(last_delivery, delivery)
        last_success = _latest(last_success, success)
        last_failure = _latest(last_failure, failure)
    return AppSummary(
        endpoints=sum(counts.values()),
        healthy=counts[Health.HEALTHY],
        failing=counts[Health.FAILING],
        disabled=counts[Health.DISABLED],
        pending=counts[Health.PENDING],
        last_delivery_time=last_delivery,
        last_success_time=last_success,
        last_failure_time=last_failure,
    )
