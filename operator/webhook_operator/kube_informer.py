"""List-then-watch of one resource kind into a callback, reconnecting forever.

The delivery service reads Kubernetes only through these watches (apps, endpoints,
Secrets); it never polls per object. A watch that ends is resumed from the last
resourceVersion; one that is too old (410 Gone) is replaced by a fresh list, whose
differences from what we held are reported as deletions and updates.

While the apiserver is unreachable the last state is kept and served, and the informer
retries with a backoff that stays short (at most 10 s, jittered so replicas do not all
come back in the same instant): once the apiserver is back, changes flow again within
seconds. A list has no total timeout (a big one may take a while) but is abandoned after
60 s without a byte, as is a watch shortly past its server-side timeout."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from webhook_operator.api.v1alpha1 import GROUP, VERSION

log = logging.getLogger(__name__)

Key = tuple[str, str]
OnEvent = Callable[[str, dict[str, Any]], None]

LIST_TIMEOUT = aiohttp.ClientTimeout(sock_connect=5.0, sock_read=60.0)
WATCH_TIMEOUT_SECONDS = 300
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0


def backoff_delay(backoff: float, rand: float) -> float:
    """Sleep between a half and all of `backoff`; `rand` is a draw in [0, 1)."""
    return backoff * (0.5 + rand / 2)


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class Informer:
    def __init__(
        self,
        name: str,
        api: ApiClient,
        list_fn: Callable[..., Awaitable[Any]],
        on_event: OnEvent,
        **list_kwargs: Any,
    ) -> None:
        self.name = name
        self.api = api
        self.list_fn = list_fn
        self.on_event = on_event
        self.list_kwargs = list_kwargs
        self.known: dict[Key, str] = {}  # key -> resourceVersion
        self.synced = asyncio.Event()

    def _as_dict(self, obj: Any) -> dict[str, Any]:
        if isinstance(obj, dict):
            return obj
        result: dict[str, Any] = self.api.sanitize_for_serialization(obj)
        return result

    async def _list(self) -> str:
        listed = await self.list_fn(_request_timeout=LIST_TIMEOUT, **self.list_kwargs)
        result = self._as_dict(listed)
        items = [self._as_dict(i) for i in result.get("items") or []]
        seen = set()
        for item in items:
            # List items carry no kind; the watch's objects do. Keep them alike.
            key = key_of(item)
            seen.add(key)
            item_version = (item.get("metadata") or {}).get("resourceVersion", "")
            if self.known.get(key) != item_version:
                self.known[key] = item_version
                self.on_event("ADDED", item)
        for key in [k for k in self.known if k not in seen]:
            del self.known[key]
            self.on_event("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
        return str((result.get("metadata") or {}).get("resourceVersion", ""))

    def _handle(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "BOOKMARK":
            return
        key = key_of(obj)
        if kind == "DELETED":
            self.known.pop(key, None)
        else:
            self.known[key] = (obj.get("metadata") or {}).get("resourceVersion", "")
        self.on_event(kind, obj)

    async def _pause(self, backoff: float) -> float:
        await asyncio.sleep(backoff_delay(backoff, random.random()))
        return min(backoff * 2, BACKOFF_MAX)

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            try:
                version = await self._list()
                self.synced.set()
                backoff = BACKOFF_FIRST
                while True:
                    w = watch.Watch()
                    async with w.stream(
                        self.list_fn,
                        resource_version=version,
                        timeout_seconds=WATCH_TIMEOUT_SECONDS,
                        allow_watch_bookmarks=True,
                        **self.list_kwargs,
                    ) as stream:
                        async for event in stream:
                            self._handle(str(event["type"]), event["raw_object"])
                    version = w.resource_version or version
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch %s: %s", self.name, exc)
                    backoff = await self._pause(backoff)
            except Exception as exc:
                log.warning("watch %s failed, relisting: %r", self.name, exc)
                backoff = await self._pause(backoff)


def of_custom_objects(api: ApiClient, plural: str, on_event: OnEvent) -> Informer:
    """An informer over one of our kinds (webhookapps, webhookendpoints) in every
    namespace."""
    custom: Any = client.CustomObjectsApi(api)
    return Informer(
        plural,
        api,
        custom.list_cluster_custom_object,
        on_event,
        group=GROUP,
        version=VERSION,
        plural=plural,
    )
