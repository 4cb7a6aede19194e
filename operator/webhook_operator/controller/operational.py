"""Operational notifications, the operator's side: when an endpoint's delivery state changes
(webhook_operator.operational says which changes count), tell the app's operational
endpoint through the delivery service, which stores, signs and delivers the event.

The operator is the one place that sees every endpoint's state change once (one leader,
fed by the delivery service's results from every replica), so it decides; the delivery
service's idempotency keys make a change told twice (a retry, a restart, a new leader)
one event. A notification that cannot be handed over fails the reconcile, which is
retried with backoff, and the change is told then; what was told is remembered only once
it was handed over."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from webhook_operator.api import delivery_wire as w
from webhook_operator.api.names import OPERATIONAL_ENDPOINT_NOT_FOUND
from webhook_operator.api.v1alpha1 import WebhookAppSpec
from webhook_operator.controller.context import Context
from webhook_operator.operational import (
    DEFAULT_FAILING_AFTER,
    Notification,
    Snapshot,
    announced_by,
    step,
)

log = logging.getLogger(__name__)
PATH = "/internal/v1/namespaces/{namespace}/endpoints/{endpoint}/notifications"


class NotificationRefused(Exception):
    """The delivery service will not take it as sent (no such endpoint yet, no permission)."""


class Notifier(Protocol):
    async def send(self, namespace: str, endpoint: str, note: Notification) -> None: ...


class HttpNotifier:
    def __init__(
        self,
        base_url: str,
        headers: Callable[[], Awaitable[dict[str, str]]],
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        self.headers = headers

    async def send(self, namespace: str, endpoint: str, note: Notification) -> None:
        body = w.NotificationRequest(
            type=w.OperationalType(note.type), id=note.idempotency_key, data=note.data
        )
        async with self.http.post(
            self.base_url + PATH.format(namespace=namespace, endpoint=endpoint),
            data=body.model_dump_json(by_alias=True),
            headers={"Content-Type": "application/json", **await self.headers()},
        ) as response:
            if response.status >= 400:
                text = await response.text()
                raise NotificationRefused(
                    f"the delivery service answered {response.status}: {text[:300]}"
                )

    async def close(self) -> None:
        await self.http.close()


def _target(app: WebhookAppSpec | None, endpoint: str) -> str | None:
    ref = app.operational_endpoint_ref if app is not None else None
    # Never about itself: a failing operational endpoint would feed its own failures.
    if ref is None or ref.name == endpoint:
        return None
    return ref.name


async def announce_operational(
    ctx: Context,
    namespace: str,
    name: str,
    app_name: str,
    app: WebhookAppSpec | None,
    observed: dict[str, Any],
    fields: dict[str, Any],
) -> None:
    """Tell the app's operational endpoint about this endpoint's change, if it is one."""
    key = (namespace, name)
    failing_after = app.operational_failing_after if app is not None else DEFAULT_FAILING_AFTER
    announced = ctx.operational.get(key)
    if announced is None:
        announced = announced_by(Snapshot.of_status(observed), failing_after)
    told, note = step(
        namespace, app_name, name, announced, Snapshot.of_status(fields), failing_after
    )
    target = _target(app, name)
    if note is not None and target is not None and (namespace, target) not in ctx.store.endpoints:
        await _missing_target(ctx, namespace, app_name, target, note)
    elif note is not None and target is not None and ctx.notifier is not None:
        try:
            await ctx.notifier.send(namespace, target, note)
        except (aiohttp.ClientError, TimeoutError, NotificationRefused) as exc:
            raise NotificationRefused(
                f"telling operational endpoint {namespace}/{target} {note.type}"
                f" about {name} failed: {exc}"
            ) from exc
        log.info("told %s/%s %s about %s", namespace, target, note.type, name)
    ctx.operational[key] = told


async def _missing_target(
    ctx: Context, namespace: str, app_name: str, target: str, note: Notification
) -> None:
    """A notification for an endpoint that does not exist is not kept for later (it could
    wait forever): the app gets a Warning Event that says so, once per missing name."""
    log.warning(
        "operational endpoint %s/%s does not exist; %s not sent", namespace, target, note.type
    )
    app_obj = ctx.store.apps.get((namespace, app_name))
    key = ("operational", namespace, app_name)
    if app_obj is None or ctx.warned.get(key) == target:
        return
    ctx.warned[key] = target
    await ctx.kube.post_event(
        app_obj,
        "Warning",
        OPERATIONAL_ENDPOINT_NOT_FOUND,
        f"spec.operationalEndpointRef names WebhookEndpoint {target}, which does not exist in"
        f" namespace {namespace}: {note.type} was not sent",
    )
