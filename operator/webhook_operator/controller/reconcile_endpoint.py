"""Reconcile one WebhookEndpoint: resolve its app, check its subscriptions against the
app's catalog, ensure its signing secret, and compose its status (conditions, secret
state, and health from the data plane's delivery results)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from webhook_operator import conditions as cond
from webhook_operator import rotation
from webhook_operator.api import names
from webhook_operator.api.v1alpha1 import Condition, Health, WebhookAppSpec, WebhookEndpointSpec
from webhook_operator.controller import request_secrets
from webhook_operator.controller.context import ENDPOINTS, Context
from webhook_operator.controller.operational import announce_operational
from webhook_operator.controller.secrets import (
    SecretOutcome,
    StaleView,
    check_user_secret,
    ensure_generated,
)
from webhook_operator.controller.store import without_managed_fields
from webhook_operator.display_text import one_line
from webhook_operator.durations import parse_duration
from webhook_operator.event_filter import compile_filter
from webhook_operator.event_matching import unknown_subscriptions
from webhook_operator.health import DeliveryState, endpoint_health, health_event
from webhook_operator.naming import generated_secret_name
from webhook_operator.timestamps import format_ts

log = logging.getLogger(__name__)
DEFAULT_GRACE = "24h"
# The CRD's maxLength of status.lastError, and of a condition message (metav1.Condition's):
# a longer value would make the apiserver refuse the whole status write.
LAST_ERROR_LIMIT = 1024
CONDITION_MESSAGE_LIMIT = 32768
# Events: the Kube client keeps 1024 characters; capping first keeps escapes whole.
EVENT_MESSAGE_LIMIT = 1024


def effective_rotation(spec: WebhookEndpointSpec, app: WebhookAppSpec | None) -> rotation.Policy:
    """The endpoint's own secretRotation, else the app's endpointDefaults, else 24h grace."""
    own = spec.secret_rotation
    inherited = app.endpoint_defaults.secret_rotation if app and app.endpoint_defaults else None
    chosen = own or inherited
    grace = parse_duration(chosen.grace_period if chosen else DEFAULT_GRACE)
    interval = parse_duration(chosen.interval) if chosen and chosen.interval else None
    return rotation.Policy(grace=grace, interval=interval)


def app_condition(
    spec: WebhookEndpointSpec,
    app: dict[str, Any] | None,
    namespace: str,
    gen: int | None,
    now: datetime,
) -> tuple[Condition, WebhookAppSpec | None]:
    app_name = spec.app_ref.name
    if app is None:
        return cond.make(
            cond.APP_RESOLVED,
            False,
            cond.APP_NOT_FOUND,
            f"WebhookApp {app_name} does not exist in namespace {namespace}; create it or "
            "fix spec.appRef.name",
            gen,
            now,
        ), None
    try:
        app_spec = WebhookAppSpec.model_validate(app.get("spec") or {})
    except ValidationError:
        return cond.make(
            cond.APP_RESOLVED,
            False,
            cond.APP_NOT_FOUND,
            f"WebhookApp {app_name} has a spec this operator cannot read",
            gen,
            now,
        ), None
    catalog = [t.name for t in app_spec.event_types]
    unknown = unknown_subscriptions(spec.events, catalog)
    if unknown:
        return cond.make(
            cond.APP_RESOLVED,
            False,
            cond.UNKNOWN_EVENT_TYPES,
            f"not in the event catalog of WebhookApp {app_name}: {', '.join(unknown)} "
            f"(declared: {', '.join(catalog)})",
            gen,
            now,
        ), app_spec
    return cond.make(
        cond.APP_RESOLVED, True, "AppFound", f"WebhookApp {app_name}", gen, now
    ), app_spec


def filter_condition(spec: WebhookEndpointSpec, gen: int | None, now: datetime) -> Condition | None:
    """Whether spec.filter compiles, with the compiler's message when it does not (the
    delivery service then sends the endpoint nothing). None without a filter."""
    if spec.filter is None:
        return None
    error = compile_filter(spec.filter).error  # compiled once per distinct source
    if error is not None:
        return cond.make(
            cond.FILTER_VALID,
            False,
            cond.INVALID_FILTER,
            f"spec.filter does not compile, so no event is delivered: {error}",
            gen,
            now,
        )
    return cond.make(cond.FILTER_VALID, True, cond.FILTER_COMPILED, "", gen, now)


def readable(conditions: list[Condition]) -> list[Condition]:
    """Conditions with messages fit for `kubectl describe`: messages quote specs, catalogs
    and validation errors, which are not the operator's text."""
    return [
        c.model_copy(update={"message": one_line(c.message, CONDITION_MESSAGE_LIMIT)})
        if c.message
        else c
        for c in conditions
    ]


def event_message(message: str) -> str:
    return one_line(message, EVENT_MESSAGE_LIMIT)


def _shown(value: str | None, limit: int) -> str | None:
    return one_line(value, limit) if value else value


def delivery_fields(active: bool, state: DeliveryState | None) -> dict[str, Any]:
    """Delivery results as status shows them. The delivery service passes on what receivers
    answered (reason phrases, error text), escaped here where people read it."""
    health, disabled_reason = endpoint_health(active, state)
    fields: dict[str, Any] = {
        "health": health.value,
        "disabledReason": _shown(disabled_reason, 256),
    }
    if state is not None:
        fields.update(
            {
                "disabledAt": format_ts(state.disabled_at),
                "lastDeliveryTime": format_ts(state.last_delivery_time),
                "lastSuccessTime": format_ts(state.last_success_time),
                "lastFailureTime": format_ts(state.last_failure_time),
                "lastHttpStatus": state.last_http_status,
                "lastError": _shown(state.last_error, LAST_ERROR_LIMIT),
                "consecutiveFailures": state.consecutive_failures,
                "deliveries": {**state.counts, "window": _shown(state.window, 64)}
                if state.counts
                else None,
            }
        )
    return fields


def _secret_status(outcome: SecretOutcome) -> dict[str, Any]:
    state = outcome.state
    return {
        "secretName": outcome.secret_name,
        "rotatedAt": format_ts(state.rotated_at) if state else None,
        "previousExpiresAt": format_ts(state.previous_expires_at)
        if state and state.previous
        else None,
    }


async def reconcile_endpoint(ctx: Context, namespace: str, name: str) -> float | None:
    """Returns seconds until time-based work is due (secret expiry, scheduled rotation)."""
    obj = ctx.store.endpoints.get((namespace, name))
    if obj is None:
        return None
    meta = obj["metadata"]
    gen = meta.get("generation")
    now = ctx.clock()
    key = (ENDPOINTS, namespace, name)
    observed = obj.get("status") or {}
    try:
        spec = WebhookEndpointSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        bad = cond.make(cond.READY, False, cond.INVALID_SPEC, str(exc)[:1000], gen, now)
        ctx.writer.update(
            key,
            {
                "observedGeneration": gen,
                "conditions": cond.to_wire(
                    cond.merge(cond.parse(observed.get("conditions")), readable([bad]))
                ),
            },
            observed,
        )
        return None

    app_cond, app_spec = app_condition(
        spec, ctx.store.apps.get((namespace, spec.app_ref.name)), namespace, gen, now
    )
    policy = effective_rotation(spec, app_spec)
    requested = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION)
    if spec.secret_ref is not None:
        ref = spec.secret_ref
        secret = await _user_secret(ctx, namespace, ref.name)
        outcome = check_user_secret(ref, secret, namespace)
    else:
        secret_key = (namespace, generated_secret_name(name))
        try:
            outcome = await ensure_generated(
                ctx.kube, obj, ctx.store.secrets.get(secret_key), requested, policy, now
            )
        except StaleView:
            ctx.store.secrets.pop(secret_key, None)
            raise
        if outcome.written is not None:
            # What we just wrote is the view: its watch event then changes nothing and
            # costs no second reconcile.
            ctx.store.secrets[secret_key] = without_managed_fields(outcome.written)
    secret_cond = cond.make(
        cond.SECRET_READY, outcome.ready, outcome.reason, outcome.message, gen, now
    )
    parts = [app_cond, secret_cond]
    filter_cond = filter_condition(spec, gen, now)
    if filter_cond is not None:
        parts.append(filter_cond)
    wanted = request_secrets.referenced(spec)
    if wanted:
        found = {name: await _user_secret(ctx, namespace, name) for name in sorted(wanted)}
        verdict = request_secrets.check(spec, found.get)
        parts.append(
            cond.make(
                cond.REQUEST_SECRETS_READY, verdict.ok, verdict.reason, verdict.message, gen, now
            )
        )
    new_conditions = [*parts, cond.ready(parts, gen, now)]
    existing = cond.parse(observed.get("conditions"))
    if filter_cond is None:  # the filter was removed: so is what was said about it
        existing = [c for c in existing if c.type != cond.FILTER_VALID]
    merged = cond.merge(existing, readable(new_conditions))
    if not wanted:  # headersFrom and tls were removed: so is what was said about them
        merged = [c for c in merged if c.type != cond.REQUEST_SECRETS_READY]

    fields: dict[str, Any] = {
        "observedGeneration": gen,
        "conditions": cond.to_wire(merged),
        "secret": _secret_status(outcome),
        **delivery_fields(spec.active, ctx.delivery.get((namespace, name))),
    }
    ctx.writer.update(key, fields, observed)
    await _announce(ctx, obj, merged, outcome, policy)
    await _announce_health(ctx, obj, observed.get("health"), fields)
    await announce_operational(ctx, namespace, name, spec.app_ref.name, app_spec, observed, fields)
    if outcome.next_check is None:
        return None
    return max((outcome.next_check - now).total_seconds(), 0.0) + 0.5


async def _user_secret(ctx: Context, namespace: str, name: str) -> dict[str, Any] | None:
    """A Secret of the user's, from the watch's view, else read once: the watch only keeps
    Secrets an endpoint named when they last changed."""
    secret = ctx.store.secrets.get((namespace, name))
    if secret is None:
        secret = await ctx.kube.read_secret(namespace, name)
        if secret is not None:
            ctx.store.secrets[(namespace, name)] = secret
    return secret


async def _announce_health(
    ctx: Context, obj: dict[str, Any], before: str | None, fields: dict[str, Any]
) -> None:
    """EndpointDisabled / EndpointRecovered, once per change: the status written a moment
    ago may not be back in the view yet, so what was announced is remembered too."""
    meta = obj["metadata"]
    key = ("health", meta["namespace"], meta["name"])
    after = Health(fields["health"])
    announced = ctx.warned.get(key)
    if announced is not None:
        before = announced
    ctx.warned[key] = after.value
    event = health_event(before, after, fields.get("disabledReason"), meta["name"])
    if event is not None:
        await ctx.kube.post_event(obj, event[0], event[1], event_message(event[2]))


async def _announce(
    ctx: Context,
    obj: dict[str, Any],
    conditions: list[Condition],
    outcome: SecretOutcome,
    policy: rotation.Policy,
) -> None:
    meta = obj["metadata"]
    key = ("endpoint", meta["namespace"], meta["name"])
    if outcome.created:
        await ctx.kube.post_event(
            obj,
            "Normal",
            "SecretCreated",
            event_message(f"signing secret generated in Secret {outcome.secret_name}"),
        )
    if outcome.rotated_why:
        if policy.grace > timedelta(0) and outcome.state and outcome.state.previous_expires_at:
            tail = (
                f"the previous secret verifies until {format_ts(outcome.state.previous_expires_at)}"
            )
        else:
            tail = "the previous secret stopped verifying at once"
        await ctx.kube.post_event(
            obj,
            "Normal",
            "SecretRotated",
            event_message(
                f"signing secret in {outcome.secret_name} rotated ({outcome.rotated_why}); {tail}"
            ),
        )
    ready = cond.find(conditions, cond.READY)
    if ready is None:
        return
    if ready.status == "True":
        ctx.warned.pop(key, None)
        return
    announced = f"{ready.reason}:{ready.message}"
    if ctx.warned.get(key) != announced:
        ctx.warned[key] = announced
        await ctx.kube.post_event(obj, "Warning", ready.reason, event_message(ready.message))
