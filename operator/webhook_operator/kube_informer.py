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
from collections.abc import Callable
from typing import Any

import aiohttp

from webhook_operator.api.v1alpha1 import GROUP, VERSION
from webhook_operator.kube_rest import KubeApiError, KubeRest

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
        rest: KubeRest,
        path: str,
        on_event: OnEvent,
        params: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.rest = rest
        self.path = path
        self.on_event = on_event
        self.params = params or {}
        self.known: dict[Key, str] = {}  # key -> resourceVersion
        self.synced = asyncio.Event()

    async def _list(self) -> str:
        result = await self.rest.get(self.path, self.params, limits=LIST_TIMEOUT)
        seen = set()
        for item in result.get("items") or []:
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

    def _handle(self, kind: str, obj: dict[str, Any]) -> str | None:
        """The resourceVersion to resume from after this event."""
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return str(version) if version else None
        key = key_of(obj)
        if kind == "DELETED":
            self.known.pop(key, None)
        else:
            self.known[key] = version or ""
        self.on_event(kind, obj)
        return str(version) if version else None

    async def _pause(self, backoff: float) -> float:
        await asyncio.sleep(backoff_delay(backoff, random.random()))
        return min(backoff * 2, BACKOFF_MAX)

    async def _watch(self, version: str) -> str:
        """Watch from `version` until the server ends the watch; the version reached."""
        params = {
            **self.params,
            "resourceVersion": version,
            "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
            "allowWatchBookmarks": "true",
        }
        async for kind, obj in self.rest.watch(self.path, params):
            version = self._handle(kind, obj) or version
        return version

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            try:
                version = await self._list()
                self.synced.set()
                backoff = BACKOFF_FIRST
                while True:
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except KubeApiError as exc:
                if exc.status != 410:
                    log.warning("watch %s: %s", self.name, exc)
                    backoff = await self._pause(backoff)
            except Exception as exc:
                log.warning("watch %s failed, relisting: %r", self.name, exc)
                backoff = await self._pause(backoff)


def of_custom_objects(rest: KubeRest, plural: str, on_event: OnEvent) -> Informer:
    """An informer over one of our kinds (webhookapps, webhookendpoints) in every
    namespace."""
    return Informer(plural, rest, f"/apis/{GROUP}/{VERSION}/{plural}", on_event)


def of_secrets(rest: KubeRest, label_selector: str, on_event: OnEvent) -> Informer:
    """An informer over the Secrets of every namespace that carry these labels."""
    return Informer("secrets", rest, "/api/v1/secrets", on_event, {"labelSelector": label_selector})
