"""Signing secrets of endpoints: the generated Secret (create, rotate, expire the previous
key) and the user's own Secret named by `secretRef` (read and checked, never modified)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from webhook_operator import conditions as cond
from webhook_operator import rotation
from webhook_operator.api.v1alpha1 import API_VERSION, SecretKeyReference
from webhook_operator.controller.kube import Kube, is_conflict
from webhook_operator.controller.store import (
    APP_LABEL,
    ENDPOINT_LABEL,
    MANAGED_BY,
    MANAGER,
)
from webhook_operator.naming import generated_secret_name
from webhook_operator.secret_refs import previous_key
from webhook_operator.signing import InvalidSecret, decode_secret, generate_secret
from webhook_operator.timestamps import parse_ts


def decoded_data(secret: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            out[key] = ""
    return out


def _created(secret: dict[str, Any], fallback: datetime) -> datetime:
    return parse_ts(secret.get("metadata", {}).get("creationTimestamp")) or fallback


@dataclass(frozen=True)
class SecretOutcome:
    """What the endpoint's status and Events should say about its secret."""

    ready: bool
    reason: str
    message: str
    secret_name: str
    state: rotation.SecretState | None = None
    created: bool = False
    rotated_why: str = ""
    next_check: datetime | None = None
    # The Secret as the apiserver stored it, when this reconcile wrote it.
    written: dict[str, Any] | None = None


def check_user_secret(
    ref: SecretKeyReference, secret: dict[str, Any] | None, namespace: str
) -> SecretOutcome:
    if secret is None:
        return SecretOutcome(
            False,
            cond.SECRET_NOT_FOUND,
            f"Secret {ref.name} named in spec.secretRef does not exist in namespace "
            f"{namespace}; create it with a key {ref.key!r} holding a whsec_ secret",
            ref.name,
        )
    data = decoded_data(secret)
    if ref.key not in data:
        keys = ", ".join(sorted(data)) or "none"
        return SecretOutcome(
            False,
            cond.SECRET_KEY_MISSING,
            f"Secret {ref.name} has no key {ref.key!r} (keys: {keys}); set spec.secretRef.key "
            "or add the key",
            ref.name,
        )
    previous = previous_key(ref.key)
    for key in (ref.key, previous):
        if key not in data:
            continue
        try:
            decode_secret(data[key])
        except InvalidSecret as exc:
            return SecretOutcome(
                False, cond.SECRET_INVALID, f"Secret {ref.name} key {key!r}: {exc}", ref.name
            )
    if previous in data:
        return SecretOutcome(
            True,
            cond.SECRET_FROM_REF,
            f"using Secret {ref.name}; deliveries are also signed with its key {previous!r}"
            " until it is removed",
            ref.name,
        )
    return SecretOutcome(True, cond.SECRET_FROM_REF, f"using Secret {ref.name}", ref.name)


def _body(
    endpoint: dict[str, Any],
    name: str,
    state: rotation.SecretState,
    resource_version: str | None,
) -> dict[str, Any]:
    meta = endpoint["metadata"]
    data, annotations = rotation.to_secret(state)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {
            MANAGED_BY: MANAGER,
            ENDPOINT_LABEL: meta["name"][:63],
            APP_LABEL: ((endpoint.get("spec") or {}).get("appRef") or {}).get("name", "")[:63],
        },
        "annotations": annotations,
        # The endpoint owns its secret: deleting the endpoint lets the garbage collector
        # delete the secret, with no finalizer needed.
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "WebhookEndpoint",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ],
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def ensure_generated(
    kube: Kube,
    endpoint: dict[str, Any],
    cached: dict[str, Any] | None,
    requested: str | None,
    policy: rotation.Policy,
    now: datetime,
) -> SecretOutcome:
    """Create the generated Secret, or rotate / expire its keys as the policy says."""
    meta = endpoint["metadata"]
    namespace = meta["namespace"]
    name = generated_secret_name(meta["name"])
    # The watch's view decides: a fresh endpoint (the common case) costs one create and
    # no read. When the Secret exists after all (the watch lags), create answers 409 and
    # the Secret is read once.
    secret = cached
    state = _state(secret, now)
    if secret is None or state is None:
        try:
            return await _create(kube, endpoint, name, secret, requested, policy, now)
        except StaleView:
            if secret is not None:
                raise
            secret = await kube.read_secret(namespace, name)
            state = _state(secret, now)
            if secret is None or state is None:
                raise

    plan = rotation.plan(state, requested, policy, now)
    if plan.rotate:
        state = rotation.rotated(state, generate_secret(), requested, policy, now)
    elif plan.prune_previous:
        state = rotation.pruned(state)
    if plan.rotate or plan.prune_previous:
        body = _body(endpoint, name, state, secret["metadata"].get("resourceVersion"))
        written = await _write(kube, namespace, name, body, create=False)
        return _generated(
            name, state, plan, rotated_why=plan.why if plan.rotate else "", written=written
        )
    return _generated(name, state, plan, rotated_why=plan.why if plan.rotate else "")


def _state(secret: dict[str, Any] | None, now: datetime) -> rotation.SecretState | None:
    if secret is None:
        return None
    return rotation.from_secret(decoded_data(secret), _annotations(secret), _created(secret, now))


async def _create(
    kube: Kube,
    endpoint: dict[str, Any],
    name: str,
    existing: dict[str, Any] | None,
    requested: str | None,
    policy: rotation.Policy,
    now: datetime,
) -> SecretOutcome:
    """A new secret (or a fresh value in a Secret that holds none). It counts the current
    rotate-secret value as handled: creating is not a reason to rotate again."""
    state = rotation.SecretState(current=generate_secret(), issued_at=now, handled_token=requested)
    version = existing["metadata"].get("resourceVersion") if existing else None
    body = _body(endpoint, name, state, version)
    written = await _write(
        kube, endpoint["metadata"]["namespace"], name, body, create=existing is None
    )
    plan = rotation.plan(state, requested, policy, now)
    return _generated(name, state, plan, created=True, written=written)


def _generated(
    name: str,
    state: rotation.SecretState,
    plan: rotation.Plan,
    *,
    created: bool = False,
    rotated_why: str = "",
    written: dict[str, Any] | None = None,
) -> SecretOutcome:
    return SecretOutcome(
        True,
        cond.SECRET_GENERATED,
        f"generated in Secret {name}",
        name,
        state,
        created=created,
        rotated_why=rotated_why,
        next_check=plan.next_check,
        written=written,
    )


async def _write(
    kube: Kube, namespace: str, name: str, body: dict[str, Any], *, create: bool
) -> dict[str, Any]:
    """Create, or replace at the resourceVersion we read; a conflict means our view was
    stale (so two writers can never both rotate), and the reconcile is retried."""
    try:
        if create:
            return await kube.create_secret(namespace, body)
        return await kube.replace_secret(namespace, name, body)
    except Exception as exc:
        if is_conflict(exc):
            raise StaleView(name) from exc
        raise


def _annotations(secret: dict[str, Any]) -> dict[str, str]:
    return dict(secret.get("metadata", {}).get("annotations") or {})


class StaleView(Exception):
    """The cached Secret was out of date; the reconcile is retried with a fresh view."""
