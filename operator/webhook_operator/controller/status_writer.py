"""The one place that writes `status` of WebhookApps and WebhookEndpoints.

Reconciles and delivery results hand it the status fields they compute; it writes only
the fields that differ from what the object shows (or what it wrote last, which the watch
may not have delivered yet), at most once per object per `min_interval`, coalescing
whatever arrives in between into the next write. Nothing changed: no write.

What a person just caused (a new generation, a condition, the secret) is written at once:
someone who ran `kubectl apply` is waiting for it. Delivery results (health, counts,
times) change with every delivery and wait for the interval, so a busy endpoint costs one
write per interval and an idle one none."""

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

PROMPT_FIELDS = frozenset({"observedGeneration", "conditions", "secret"})


@dataclass
class StatusWriter:
    patch: Patcher
    min_interval: float = 10.0
    prompt_fields: frozenset[str] = PROMPT_FIELDS
    _pending: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _written: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _last_write: dict[Key, float] = field(default_factory=dict)
    _scheduled: dict[Key, tuple[float, asyncio.TimerHandle]] = field(default_factory=dict)
    _in_flight: set[Key] = field(default_factory=set)
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
        elif not changed:
            return
        else:
            self._pending[key] = changed
        self._schedule(key, prompt=not self.prompt_fields.isdisjoint(changed))

    def forget(self, key: Key) -> None:
        """The object is gone: drop what was pending and remembered for it."""
        self._pending.pop(key, None)
        self._written.pop(key, None)
        self._last_write.pop(key, None)
        scheduled = self._scheduled.pop(key, None)
        if scheduled is not None:
            scheduled[1].cancel()

    def _schedule(self, key: Key, prompt: bool = False) -> None:
        if key in self._in_flight:
            return  # the write under way schedules what arrived meanwhile when it ends
        loop = asyncio.get_running_loop()
        due = loop.time() if prompt else self._last_write.get(key, -1e9) + self.min_interval
        scheduled = self._scheduled.get(key)
        if scheduled is not None:
            if scheduled[0] <= due:
                return
            scheduled[1].cancel()  # something prompt arrived: write sooner
        handle = loop.call_at(due, lambda: asyncio.ensure_future(self._flush(key)))
        self._scheduled[key] = (due, handle)

    def _prompt(self, key: Key) -> bool:
        return not self.prompt_fields.isdisjoint(self._pending.get(key, ()))

    async def _flush(self, key: Key) -> None:
        self._scheduled.pop(key, None)
        fields = self._pending.pop(key, None)
        if not fields:
            return
        self._in_flight.add(key)
        try:
            written = await self._write(key, fields)
        finally:
            self._in_flight.discard(key)
        if key in self._pending:
            # After a failure, retry after the interval: a failing apiserver is not hammered.
            self._schedule(key, prompt=written and self._prompt(key))

    async def _write(self, key: Key, fields: dict[str, Any]) -> bool:
        plural, namespace, name = key
        self._last_write[key] = asyncio.get_running_loop().time()
        try:
            await self.patch(plural, namespace, name, fields)
        except Exception as exc:
            if is_not_found(exc):
                self.forget(key)
                return False
            log.warning("status write for %s/%s failed, will retry: %s", namespace, name, exc)
            self._pending[key] = {**fields, **self._pending.get(key, {})}
            return False
        self.writes += 1
        self._written.setdefault(key, {}).update(fields)
        return True

    def idle(self) -> bool:
        return not self._pending and not self._scheduled and not self._in_flight
