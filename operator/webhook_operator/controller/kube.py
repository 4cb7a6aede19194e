"""The operator's own Kubernetes calls: Secrets, status patches, Events and Leases.

Kopf drives the watches; everything the operator writes goes through here, so the set of
API writes (and the RBAC the chart grants) is visible in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from webhook_operator.api.v1alpha1 import GROUP, VERSION
from webhook_operator.kube_events import event_body
from webhook_operator.kube_rest import KubeApiError, KubeRest

log = logging.getLogger(__name__)
COMPONENT = "webhook-operator"


def _status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, KubeApiError) else None


def is_not_found(exc: BaseException) -> bool:
    return _status(exc) == 404


def is_conflict(exc: BaseException) -> bool:
    return _status(exc) == 409


def _secrets(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets"


def _leases(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


class Kube:
    def __init__(self, api: KubeRest) -> None:
        self.api = api
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._event_senders: list[asyncio.Task[None]] = []

    # -- Secrets ---------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            secret = await self.api.get(f"{_secrets(namespace)}/{name}")
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], secret)

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """The Secret as the apiserver stored it."""
        return cast(dict[str, Any], await self.api.post(_secrets(namespace), body))

    async def replace_secret(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace with the resourceVersion in `body`: a stale view fails with 409, so two
        writers can never both rotate. Returns the Secret as stored."""
        return cast(dict[str, Any], await self.api.put(f"{_secrets(namespace)}/{name}", body))

    # -- status ----------------------------------------------------------------------------

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        await self.api.merge_patch(
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status",
            {"status": status},
        )

    # -- Events ----------------------------------------------------------------------------

    async def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        body = event_body(
            obj,
            type_,
            reason,
            message,
            component=COMPONENT,
            instance=os.environ.get("HOSTNAME", COMPONENT),
            now=datetime.now(UTC),
        )
        namespace = body["metadata"]["namespace"]
        self._queue_event(namespace, body)

    # Events are posted in the background, as client-go's recorder does: a reconcile does
    # not wait for them (posting inline held a reconcile worker for one more API round
    # trip per new endpoint), and when too many are waiting the newest are dropped.
    EVENT_BACKLOG = 1000
    EVENT_SENDERS = 4

    def _queue_event(self, namespace: str, body: dict[str, Any]) -> None:
        if self._events is None:
            self._events = asyncio.Queue(self.EVENT_BACKLOG)
            self._event_senders = [
                asyncio.create_task(self._send_events(self._events))
                for _ in range(self.EVENT_SENDERS)
            ]
        try:
            self._events.put_nowait((namespace, body))
        except asyncio.QueueFull:
            log.warning("too many Events waiting; dropped %s on %s", body["reason"], namespace)

    async def _send_events(self, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        while True:
            namespace, body = await queue.get()
            try:
                await self.api.post(f"/api/v1/namespaces/{namespace}/events", body)
            except KubeApiError as exc:
                # An Event is a courtesy: failing to post one must not fail anything.
                name = body["involvedObject"]["name"]
                log.warning("could not post event %s on %s: %s", body["reason"], name, exc)
            except Exception:
                log.exception("posting an Event failed")
            finally:
                queue.task_done()

    async def flush_events(self, grace: float = 5.0) -> None:
        """Post what is waiting (within `grace` seconds), then stop the senders."""
        if self._events is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), grace)
        for task in self._event_senders:
            task.cancel()
        for task in self._event_senders:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._events, self._event_senders = None, []

    # -- Leases ----------------------------------------------------------------------------

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], await self.api.get(f"{_leases(namespace)}/{name}"))
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> Any:
        return await self.api.post(_leases(namespace), body)

    async def replace_lease(self, namespace: str, name: str, body: Any) -> Any:
        return await self.api.put(f"{_leases(namespace)}/{name}", body)

    async def watch_lease(
        self, namespace: str, name: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, Lease) of each change of the one Lease until the server ends the watch
        (after a minute). By name: the Role grants watch on that Lease only."""
        params = {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": "60"}
        async for kind, lease in self.api.watch(_leases(namespace), params):
            yield kind, lease
