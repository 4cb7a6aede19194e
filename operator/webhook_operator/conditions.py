"""Status conditions in the Kubernetes shape: names, reasons, and the merge rule that keeps
lastTransitionTime when a condition's status does not change (so `kubectl describe` shows
how long something has been wrong, not when the operator last looked)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from webhook_operator.api.v1alpha1 import Condition

READY = "Ready"
APP_RESOLVED = "AppResolved"
SECRET_READY = "SecretReady"
CATALOG_VALID = "CatalogValid"
# Only on an endpoint with spec.filter: whether the expression compiles.
FILTER_VALID = "FilterValid"
# Only on endpoints with headersFrom or tls: the Secrets their requests carry.
REQUEST_SECRETS_READY = "RequestSecretsReady"

# Reasons. One CamelCase word each, as `kubectl get -o wide` and alerts show them.
RECONCILED = "Reconciled"
APP_NOT_FOUND = "AppNotFound"
UNKNOWN_EVENT_TYPES = "UnknownEventTypes"
SECRET_GENERATED = "SecretGenerated"
SECRET_FROM_REF = "SecretFromRef"
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_MISSING = "SecretKeyMissing"
SECRET_INVALID = "SecretInvalid"
SECRET_ERROR = "SecretError"
SECRETS_FOUND = "SecretsFound"
INVALID_TLS_SECRET = "InvalidTLSSecret"
INVALID_EVENT_SCHEMA = "InvalidEventSchema"
INVALID_SPEC = "InvalidSpec"
FILTER_COMPILED = "FilterCompiled"
INVALID_FILTER = "InvalidFilter"


def make(
    type_: str, ok: bool, reason: str, message: str, generation: int | None, now: datetime
) -> Condition:
    return Condition(
        type=type_,
        status="True" if ok else "False",
        reason=reason,
        message=message,
        last_transition_time=now,
        observed_generation=generation,
    )


def ready(parts: Sequence[Condition], generation: int | None, now: datetime) -> Condition:
    """Ready is True when every part is; otherwise it carries the first failing reason."""
    for part in parts:
        if part.status != "True":
            return make(READY, False, part.reason, part.message, generation, now)
    return make(READY, True, RECONCILED, "", generation, now)


def parse(raw: Iterable[dict[str, Any]] | None) -> list[Condition]:
    parsed = []
    for item in raw or ():
        try:
            parsed.append(Condition.model_validate(item))
        except ValueError:
            continue  # a hand-edited or foreign entry: ours replaces it
    return parsed


def merge(existing: Sequence[Condition], new: Sequence[Condition]) -> list[Condition]:
    """The new conditions, keeping each one's previous lastTransitionTime when its status
    is unchanged. Conditions of other types that exist already are kept as they are."""
    previous = {c.type: c for c in existing}
    merged = []
    for cond in new:
        old = previous.pop(cond.type, None)
        if old is not None and old.status == cond.status:
            cond = cond.model_copy(update={"last_transition_time": old.last_transition_time})
        merged.append(cond)
    merged.extend(previous.values())
    return merged


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def to_wire(conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions]
