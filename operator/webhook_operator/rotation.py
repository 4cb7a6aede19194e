"""When a generated signing secret rotates, and what the Secret looks like after.

The state lives in the Secret itself (its data keys and annotations), so an operator
restart neither forgets a rotation nor repeats one: the value of the endpoint's
`webhook-operator.dev/rotate-secret` annotation that was last acted on is recorded on the
Secret, and the same value never rotates twice."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from webhook_operator.api.names import PREFIX
from webhook_operator.timestamps import format_ts, parse_ts

# On the generated Secret:
ISSUED_AT = PREFIX + "issued-at"
ROTATED_AT = PREFIX + "rotated-at"
PREVIOUS_EXPIRES_AT = PREFIX + "previous-expires-at"
HANDLED_TOKEN = PREFIX + "rotation-token"

CURRENT_KEY = "secret"
PREVIOUS_KEY = "previous"


@dataclass(frozen=True)
class SecretState:
    current: str
    issued_at: datetime
    previous: str | None = None
    previous_expires_at: datetime | None = None
    rotated_at: datetime | None = None
    handled_token: str | None = None


@dataclass(frozen=True)
class Policy:
    grace: timedelta
    interval: timedelta | None = None


@dataclass(frozen=True)
class Plan:
    rotate: bool = False
    why: str = ""  # "requested" or "scheduled"
    prune_previous: bool = False
    next_check: datetime | None = None  # when to look again (expiry or schedule)


def plan(state: SecretState, requested: str | None, policy: Policy, now: datetime) -> Plan:
    """What to do with the Secret now, and when the next time-based change is due."""
    rotate, why = False, ""
    if requested and requested != state.handled_token:
        rotate, why = True, "requested"
    elif policy.interval is not None and now >= state.issued_at + policy.interval:
        rotate, why = True, "scheduled"
    expired = state.previous is not None and (
        state.previous_expires_at is None or now >= state.previous_expires_at
    )
    checks: list[datetime] = []
    if rotate:
        if policy.grace > timedelta(0):
            checks.append(now + policy.grace)
        if policy.interval is not None:
            checks.append(now + policy.interval)
    else:
        if state.previous is not None and not expired and state.previous_expires_at:
            checks.append(state.previous_expires_at)
        if policy.interval is not None:
            checks.append(state.issued_at + policy.interval)
    return Plan(
        rotate=rotate,
        why=why,
        prune_previous=expired and not rotate,
        next_check=min(checks) if checks else None,
    )


def rotated(
    state: SecretState, new_secret: str, requested: str | None, policy: Policy, now: datetime
) -> SecretState:
    """The state after a rotation: the old secret verifies for the grace period, unless
    the grace period is zero, when it stops at once."""
    keep_old = policy.grace > timedelta(0)
    return SecretState(
        current=new_secret,
        issued_at=now,
        previous=state.current if keep_old else None,
        previous_expires_at=now + policy.grace if keep_old else None,
        rotated_at=now,
        handled_token=requested if requested is not None else state.handled_token,
    )


def pruned(state: SecretState) -> SecretState:
    return replace(state, previous=None, previous_expires_at=None)


def _ts(value: datetime) -> str:
    return format_ts(value) or ""


def to_secret(state: SecretState) -> tuple[dict[str, str], dict[str, str]]:
    """(string data, annotations) of the Secret holding `state`."""
    data = {CURRENT_KEY: state.current}
    annotations = {ISSUED_AT: _ts(state.issued_at)}
    if state.previous is not None:
        data[PREVIOUS_KEY] = state.previous
        if state.previous_expires_at is not None:
            annotations[PREVIOUS_EXPIRES_AT] = _ts(state.previous_expires_at)
    if state.rotated_at is not None:
        annotations[ROTATED_AT] = _ts(state.rotated_at)
    if state.handled_token is not None:
        annotations[HANDLED_TOKEN] = state.handled_token
    return data, annotations


def from_secret(
    data: dict[str, str], annotations: dict[str, str], created: datetime
) -> SecretState | None:
    """Read the state back; None when the Secret holds no current secret."""
    current = data.get(CURRENT_KEY)
    if not current:
        return None
    return SecretState(
        current=current,
        issued_at=parse_ts(annotations.get(ISSUED_AT)) or created,
        previous=data.get(PREVIOUS_KEY) or None,
        previous_expires_at=parse_ts(annotations.get(PREVIOUS_EXPIRES_AT)),
        rotated_at=parse_ts(annotations.get(ROTATED_AT)),
        handled_token=annotations.get(HANDLED_TOKEN),
    )
