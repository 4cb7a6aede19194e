"""Kopf registrations. Watch events only update the store and enqueue keys; the reconcile
work happens in the workers (`runner.py`), level-based, from the store's current view."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from webhook_operator.api.names import ENDPOINT_LABEL
from webhook_operator.api.v1alpha1 import GROUP, VERSION
from webhook_operator.controller.context import APPS, ENDPOINTS, Context
from webhook_operator.controller.store import endpoint_app, without_managed_fields

log = logging.getLogger(__name__)
# Endpoint events touch the app's summary; batching them keeps a burst of endpoint changes
# to one app reconcile.
APP_SUMMARY_DELAY = 1.0


def _raw(event: dict[str, Any]) -> dict[str, Any]:
    obj = event.get("object")
    return without_managed_fields(obj) if isinstance(obj, dict) else {}


def register(registry: kopf.OperatorRegistry, ctx: Context) -> None:
    @kopf.on.event(GROUP, VERSION, ENDPOINTS, registry=registry)  # type: ignore[arg-type]
    async def endpoint_event(event: dict[str, Any], namespace: str, name: str, **_: Any) -> None:
        obj = _raw(event)
        if event.get("type") == "DELETED":
            old = ctx.store.remove_endpoint((namespace, name))
            ctx.writer.forget((ENDPOINTS, namespace, name))
            ctx.delivery.pop((namespace, name), None)
            ctx.warned.pop(("endpoint", namespace, name), None)
            ctx.warned.pop(("health", namespace, name), None)
            app = endpoint_app(old) if old else endpoint_app(obj)
        else:
            old = ctx.store.put_endpoint(obj)
            app = endpoint_app(obj)
            if old is None or _essence(old) != _essence(obj):
                ctx.queue.add(("endpoint", namespace, name))
            previous_app = endpoint_app(old) if old else None
            if previous_app and previous_app != app:
                ctx.queue.add(("app", namespace, previous_app), APP_SUMMARY_DELAY)
        if app:
            ctx.queue.add(("app", namespace, app), APP_SUMMARY_DELAY)

    @kopf.on.event(GROUP, VERSION, APPS, registry=registry)  # type: ignore[arg-type]
    async def app_event(event: dict[str, Any], namespace: str, name: str, **_: Any) -> None:
        obj = _raw(event)
        if event.get("type") == "DELETED":
            ctx.store.apps.pop((namespace, name), None)
            ctx.writer.forget((APPS, namespace, name))
            ctx.warned.pop(("app", namespace, name), None)
            changed = True
        else:
            old = ctx.store.apps.get((namespace, name))
            ctx.store.apps[(namespace, name)] = obj
            changed = old is None or _essence(old) != _essence(obj)
            if changed:
                ctx.queue.add(("app", namespace, name))
        if changed:
            # Endpoints depend on their app's existence and catalog.
            for ns, ep in ctx.store.endpoints_of_app(namespace, name):
                ctx.queue.add(("endpoint", ns, ep))

    def secret_is_relevant(namespace: str, name: str, labels: Any, **_: Any) -> bool:
        return ctx.store.secret_is_relevant(namespace, name, dict(labels or {}))

    @kopf.on.event("", "v1", "secrets", when=secret_is_relevant, registry=registry)  # type: ignore[arg-type]
    async def secret_event(
        event: dict[str, Any], namespace: str, name: str, labels: Any, **_: Any
    ) -> None:
        if event.get("type") == "DELETED":
            ctx.store.secrets.pop((namespace, name), None)
        else:
            new = _raw(event)
            old = ctx.store.secrets.get((namespace, name))
            ctx.store.secrets[(namespace, name)] = new
            if old is not None and _version(old) == _version(new):
                return  # the operator wrote this version itself and has reconciled it
        users = ctx.store.endpoints_using_secret(namespace, name)
        owner = dict(labels or {}).get(ENDPOINT_LABEL)
        if owner and (namespace, owner) in ctx.store.endpoints:
            users.append((namespace, owner))
        for ns, ep in users:
            ctx.queue.add(("endpoint", ns, ep))


def _version(obj: dict[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("resourceVersion")


def _essence(obj: dict[str, Any]) -> Any:
    """What a reconcile reads: spec, generation and annotations, not status."""
    meta = obj.get("metadata") or {}
    return (obj.get("spec"), meta.get("generation"), meta.get("annotations"))
