"""Operational notifications (Svix's "operational webhooks"): what a change of an endpoint's
delivery state tells the app's operational endpoint, as signed events of its own.

Three moments are worth a page to a person: an endpoint has failed `failing_after` times in
a row (default 5) and retries continue; deliveries stopped on their own (retries exhausted,
410 Gone); and deliveries succeed again after either. A pause is the user's own doing and
says nothing.

What was announced last is remembered per endpoint (`Announced`), not merely the state seen
last: after `kubectl webhooks enable` an endpoint goes through "failing, 0 in a row" before
its first success, and that success must still say "recovered".

Each notification carries an idempotency key made from the state itself (the endpoint, the
kind of change and the time that identifies the episode: the last success before a failing
streak, the moment of a disable, the success that ends it). The operator may see one
change twice (a restart, a new leader reading an older status); the delivery service's
idempotency then stores it once, on any replica. No I/O and no clock here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from webhook_operator.api.names import (
    OPERATIONAL_DISABLED,
    OPERATIONAL_FAILING,
    OPERATIONAL_RECOVERED,
)
from webhook_operator.api.v1alpha1 import Health
from webhook_operator.health import PAUSED

DEFAULT_FAILING_AFTER = 5


@dataclass(frozen=True)
class Snapshot:
    """The part of an endpoint's status that the notifications are about, as the status
    writes it (times as RFC 3339 text)."""

    health: str | None = None
    consecutive_failures: int = 0
    disabled_reason: str | None = None
    disabled_at: str | None = None
    last_success_time: str | None = None
    last_failure_time: str | None = None
    last_http_status: int | None = None
    last_error: str | None = None

    @classmethod
    def of_status(cls, status: dict[str, Any]) -> Snapshot:
        failures = status.get("consecutiveFailures")
        http_status = status.get("lastHttpStatus")
        return cls(
            health=status.get("health"),
            consecutive_failures=failures if isinstance(failures, int) else 0,
            disabled_reason=status.get("disabledReason"),
            disabled_at=status.get("disabledAt"),
            last_success_time=status.get("lastSuccessTime"),
            last_failure_time=status.get("lastFailureTime"),
            last_http_status=http_status if isinstance(http_status, int) else None,
            last_error=status.get("lastError"),
        )

    @property
    def stopped(self) -> bool:
        """Deliveries stopped on their own, not by a pause."""
        return self.health == Health.DISABLED and self.disabled_reason != PAUSED


@dataclass(frozen=True)
class Notification:
    type: str
    idempotency_key: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Announced:
    """What the operational endpoint was last told about an endpoint: "ok" (nothing, or
    recovered), "failing" or "disabled", and the moment that identifies that episode."""

    kind: str = "ok"
    moment: str | None = None


OK = Announced()


def _failing(state: Snapshot, failing_after: int) -> bool:
    return state.health == Health.FAILING and state.consecutive_failures >= failing_after


def announced_by(status: Snapshot, failing_after: int = DEFAULT_FAILING_AFTER) -> Announced:
    """What a status as written implies was announced: where the operator starts (or a
    new leader takes over) without a memory of its own."""
    if status.stopped:
        return Announced("disabled", status.disabled_at)
    if _failing(status, failing_after):
        return Announced("failing", status.last_success_time)
    return OK


def _key(kind: str, namespace: str, endpoint: str, moment: str | None) -> str:
    # Names are long (253 characters); idempotency keys are not. Same inputs, same key.
    digest = hashlib.sha256(f"{namespace}/{endpoint}/{moment or '-'}".encode()).hexdigest()
    return f"webhook-operator.{kind}.{digest[:40]}"


def _data(namespace: str, app: str, endpoint: str, state: Snapshot) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "app": app,
        "endpoint": endpoint,
        "health": state.health,
        "consecutiveFailures": state.consecutive_failures,
        "lastHttpStatus": state.last_http_status,
        "lastError": state.last_error,
        "lastFailureTime": state.last_failure_time,
        "lastSuccessTime": state.last_success_time,
    }


def step(
    namespace: str,
    app: str,
    endpoint: str,
    announced: Announced,
    now: Snapshot,
    failing_after: int = DEFAULT_FAILING_AFTER,
) -> tuple[Announced, Notification | None]:
    """What the endpoint's state `now` tells the operational endpoint, given what it was
    told last, and what it has been told after that."""
    data = _data(namespace, app, endpoint, now)
    if now.stopped:
        told = Announced("disabled", now.disabled_at)
        if announced == told:
            return announced, None
        key = _key("disabled", namespace, endpoint, now.disabled_at or now.last_failure_time)
        data |= {"reason": now.disabled_reason, "disabledAt": now.disabled_at}
        return told, Notification(OPERATIONAL_DISABLED, key, data)
    if _failing(now, failing_after):
        if announced.kind == "failing":
            return announced, None
        # One failing streak follows one last success (or none yet).
        key = _key("failing", namespace, endpoint, now.last_success_time)
        return Announced("failing", now.last_success_time), Notification(
            OPERATIONAL_FAILING, key, data
        )
    if now.health == Health.HEALTHY and announced.kind != "ok":
        key = _key("recovered", namespace, endpoint, now.last_success_time)
        data |= {"was": announced.kind}
        return OK, Notification(OPERATIONAL_RECOVERED, key, data)
    # Pending, a few failures, paused, or re-enabled and not yet through: nothing new.
    return announced, None
