"""Reconcile one WebhookApp: check its event catalog and summarise its endpoints (counts
by health, latest delivery times) in status."""

from __future__ import annotations

from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from pydantic import ValidationError

from webhook_operator import conditions as cond
from webhook_operator.api.v1alpha1 import Health, WebhookAppSpec
from webhook_operator.controller.context import APPS, Context
from webhook_operator.controller.reconcile_endpoint import event_message, readable
from webhook_operator.health import summarize
from webhook_operator.timestamps import format_ts, parse_ts


def schema_errors(spec: WebhookAppSpec) -> list[str]:
    errors = []
    for event in spec.event_types:
        if event.schema_ is None:
            continue
        try:
            validator_for(event.schema_).check_schema(event.schema_)
        except SchemaError as exc:
            errors.append(f"{event.name}: {exc.message}")
    return errors


def _endpoint_status(ctx: Context, namespace: str, name: str) -> dict[str, Any]:
    obj = ctx.store.endpoints.get((namespace, name)) or {}
    return obj.get("status") or {}


def summary_fields(ctx: Context, namespace: str, app: str) -> dict[str, Any]:
    rows = []
    totals: dict[str, int] = {}
    for ns, name in ctx.store.endpoints_of_app(namespace, app):
        status = _endpoint_status(ctx, ns, name)
        try:
            health = Health(status.get("health", Health.PENDING))
        except ValueError:
            health = Health.PENDING
        rows.append(
            (
                health,
                parse_ts(status.get("lastDeliveryTime")),
                parse_ts(status.get("lastSuccessTime")),
                parse_ts(status.get("lastFailureTime")),
            )
        )
        for k, v in (status.get("deliveries") or {}).items():
            if isinstance(v, int):
                totals[k] = totals.get(k, 0) + v
    summary = summarize(rows)
    return {
        "endpoints": summary.endpoints,
        "healthyEndpoints": summary.healthy,
        "failingEndpoints": summary.failing,
        "disabledEndpoints": summary.disabled,
        "pendingEndpoints": summary.pending,
        "lastDeliveryTime": format_ts(summary.last_delivery_time),
        "lastSuccessTime": format_ts(summary.last_success_time),
        "lastFailureTime": format_ts(summary.last_failure_time),
        "deliveries": totals or None,
    }


async def reconcile_app(ctx: Context, namespace: str, name: str) -> float | None:
    obj = ctx.store.apps.get((namespace, name))
    if obj is None:
        return None
    gen = obj["metadata"].get("generation")
    now = ctx.clock()
    observed = obj.get("status") or {}
    try:
        spec = WebhookAppSpec.model_validate(obj.get("spec") or {})
        errors = schema_errors(spec)
    except ValidationError as exc:
        spec, errors = None, [str(exc)[:1000]]
    if errors:
        catalog = cond.make(
            cond.CATALOG_VALID,
            False,
            cond.INVALID_EVENT_SCHEMA,
            "invalid JSON schema in the event catalog: " + "; ".join(errors),
            gen,
            now,
        )
    else:
        catalog = cond.make(cond.CATALOG_VALID, True, "CatalogValid", "", gen, now)
    new_conditions = [catalog, cond.ready([catalog], gen, now)]
    merged = cond.merge(cond.parse(observed.get("conditions")), readable(new_conditions))
    types = [t.name for t in spec.event_types] if spec else []
    categories = sorted({t.category for t in spec.event_types if t.category}) if spec else []
    fields = {
        "observedGeneration": gen,
        "conditions": cond.to_wire(merged),
        "eventTypes": types,
        "categories": categories,
        **summary_fields(ctx, namespace, name),
    }
    ctx.writer.update((APPS, namespace, name), fields, observed)
    ready = cond.find(merged, cond.READY)
    key = ("app", namespace, name)
    if ready is not None and ready.status == "False":
        announced = f"{ready.reason}:{ready.message}"
        if ctx.warned.get(key) != announced:
            ctx.warned[key] = announced
            await ctx.kube.post_event(obj, "Warning", ready.reason, event_message(ready.message))
    else:
        ctx.warned.pop(key, None)
    return None
