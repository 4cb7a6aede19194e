"""The one place that writes `status` of WebhookApps and WebhookEndpoints.

Reconciles and delivery results hand it the status fields they compute; it writes only
the fields that differ from what the object shows (or what it wrote last, which the watch
may not have delivered yet), at most once per object per `min_interval`, coalescing
whatever arrives in between into the next write. Nothing changed: no write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from webhook_operator.controller.kube import is_not_found

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (plural, namespace, name)
Patcher = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


@dataclass
class StatusWriter:
    patch: Patcher
    min_interval: float = 2.0
    _pending: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _written: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _last_write: dict[Key, float] = field(default_factory=dict)
    _scheduled: set[Key] = field(default_factory=set)
    writes: int = 0

    def update(self, key: Key, fields: dict[str, Any], observed: dict[str, Any] | None) -> None:
        """Ask for `fields` to be in the status of `key`; `observed` is its current status."""
        shown = {**(observed or {}), **self._written.get(key, {})}
        changed = {k: v for k, v in fields.items() if shown.get(k) != v}
        pending = self._pending.get(key)
        if pending is not None:
            # Later values win; a field now back at its shown value needs no write.
            pending.update(changed)
            for k in fields:
                if k not in changed:
                    pending.pop(k, None)
            if not pending:
                del self._pending[key]
            return
        if not changed:
            return
        self._pending[key] = changed
        self._schedule(key)

    def forget(self, key: Key) -> None:
        """The object is gone: drop what was pending and remembered for it."""
        self._pending.pop(key, None)
        self._written.pop(key, None)
        self._last_write.pop(key, None)

    def _schedule(self, key: Key) -> None:
        if key in self._scheduled:
            return
        self._scheduled.add(key)
        loop = asyncio.get_running_loop()
        delay = self._last_write.get(key, -1e9) + self.min_interval - loop.time()
        loop.call_later(max(delay, 0.0), lambda: asyncio.ensure_future(self._flush(key)))

    async def _flush(self, key: Key) -> None:
        self._scheduled.discard(key)
        fields = self._pending.pop(key, None)
        if not fields:
            return
        plural, namespace, name = key
        self._last_write[key] = asyncio.get_running_loop().time()
        try:
            await self.patch(plural, namespace, name, fields)
        except Exception as exc:
            if is_not_found(exc):
                self.forget(key)
                return
            log.warning("status write for %s/%s failed, will retry: %s", namespace, name, exc)
            merged = {**fields, **self._pending.get(key, {})}
            self._pending[key] = merged
            self._schedule(key)
            return
        self.writes += 1
        self._written.setdefault(key, {}).update(fields)
        if key in self._pending:
            self._schedule(key)

    def idle(self) -> bool:
        return not self._pending and not self._scheduled
