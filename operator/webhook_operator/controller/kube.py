"""The operator's own Kubernetes calls: Secrets, status patches, Events and Leases.

Kopf drives the watches; everything the operator writes goes through here, so the set of
API writes (and the RBAC the chart grants) is visible in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from webhook_operator.api.v1alpha1 import GROUP, VERSION
from webhook_operator.kube_events import event_body

log = logging.getLogger(__name__)
COMPONENT = "webhook-operator"


def _status(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def is_not_found(exc: BaseException) -> bool:
    return _status(exc) == 404


def is_conflict(exc: BaseException) -> bool:
    return _status(exc) == 409


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        # The generated client takes plain dicts as bodies at run time, while its hints ask
        # for its model classes; Any keeps the dict bodies here readable.
        self.core: Any = client.CoreV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        self.coordination: Any = client.CoordinationV1Api(api)
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._event_senders: list[asyncio.Task[None]] = []

    # -- Secrets ---------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], self.api.sanitize_for_serialization(secret))

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """The Secret as the apiserver stored it."""
        created = await self.core.create_namespaced_secret(namespace, body)
        return cast(dict[str, Any], self.api.sanitize_for_serialization(created))

    async def replace_secret(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Replace with the resourceVersion in `body`: a stale view fails with 409, so two
        writers can never both rotate. Returns the Secret as stored."""
        replaced = await self.core.replace_namespaced_secret(name, namespace, body)
        return cast(dict[str, Any], self.api.sanitize_for_serialization(replaced))

    # -- status ----------------------------------------------------------------------------

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        await self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
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
                await self.core.create_namespaced_event(namespace, body)
            except ApiException as exc:
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

    async def read_lease(self, namespace: str, name: str) -> Any:
        try:
            return await self.coordination.read_namespaced_lease(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> Any:
        return await self.coordination.create_namespaced_lease(namespace, body)

    async def replace_lease(self, namespace: str, name: str, body: Any) -> Any:
        return await self.coordination.replace_namespaced_lease(name, namespace, body)
