"""Leader election on a coordination.k8s.io Lease, so a second replica waits as a standby.

Kopf's own peering freezes every operator of equal priority and does not cover work that
runs outside its handlers; a Lease is what the rest of Kubernetes uses, and `kubectl get
lease` shows who leads. The leader renews every `renew_every` seconds; a standby takes
over once a lease has not been renewed for `duration` seconds. A leader that cannot renew
stops at once rather than risk two leaders. A leader that stops cleanly hands the Lease
back, and a standby watches the Lease besides polling it, so it takes a handed-back Lease
at once, usually before the Pod a Deployment starts in the old leader's place asks for it,
instead of racing that Pod at its next poll.

Every Lease call is cut off in time: a renewal may take no longer than what is left until
the renew deadline (two thirds of the lease duration after the last success), so an
apiserver that stops answering cannot keep a leader running past its lease while a
standby takes over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from webhook_operator.controller.kube import Kube, is_conflict
from webhook_operator.timestamps import parse_ts

log = logging.getLogger(__name__)


class LostLeadership(RuntimeError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expired(spec: dict[str, Any], now: datetime) -> bool:
    renew = parse_ts(spec.get("renewTime") or spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if renew is None or not isinstance(duration, int):
        return True
    return bool(now > renew + timedelta(seconds=duration))


@dataclass
class LeaderElector:
    kube: Kube
    namespace: str
    name: str
    identity: str
    duration: int = 15
    renew_every: float = 5.0

    def _lease(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def _spec(self, now: datetime, transitions: int, acquired: datetime | None) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": _micro(acquired or now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        now = _now()
        lease = await self.kube.read_lease(self.namespace, self.name)
        if lease is None:
            body = self._lease(self._spec(now, 0, None))
            try:
                await self.kube.create_lease(self.namespace, body)
            except Exception as exc:
                if is_conflict(exc):
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        held_by_us = holder == self.identity
        if not held_by_us and holder and not expired(spec, now):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if held_by_us else 1)
        acquired = parse_ts(spec.get("acquireTime")) if held_by_us else None
        version = (lease.get("metadata") or {}).get("resourceVersion")
        body = self._lease(self._spec(now, transitions, acquired), version)
        try:
            await self.kube.replace_lease(self.namespace, self.name, body)
        except Exception as exc:
            if is_conflict(exc):
                return False
            raise
        return True

    @property
    def renew_deadline(self) -> float:
        """Seconds after the last renewal at which the leader gives up: a third of the
        lease before a standby may take over, so the two never overlap."""
        return self.duration * 2 / 3

    async def acquire(self) -> None:
        changed = asyncio.Event()
        watcher = asyncio.create_task(self._watch(changed))
        try:
            await self._acquire(changed)
        finally:
            watcher.cancel()
            # Not `await watcher` under suppress(CancelledError): that would also swallow
            # a cancellation of this task arriving meanwhile (Ctrl-C just as the Lease is
            # won), and the operator would lead on instead of stopping.
            await asyncio.wait([watcher])

    async def _acquire(self, changed: asyncio.Event) -> None:
        announced = False
        while True:
            changed.clear()
            try:
                # Bounded: a hung call must not keep a standby from ever trying again.
                if await asyncio.wait_for(self.try_acquire(), max(self.renew_every, 1.0)):
                    log.info(
                        "leading as %s (lease %s/%s)", self.identity, self.namespace, self.name
                    )
                    return
            except TimeoutError:
                log.warning("lease %s/%s: no answer from the apiserver", self.namespace, self.name)
            except Exception as exc:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            if not announced:
                log.info("standby: another replica holds lease %s/%s", self.namespace, self.name)
                announced = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.renew_every / 2)

    async def _watch(self, changed: asyncio.Event) -> None:
        """Wake the standby when the Lease changes hands. Polling goes on beside it, so a
        watch that fails only makes the standby as slow as its poll."""
        while True:
            try:
                async for kind, lease in self.kube.watch_lease(self.namespace, self.name):
                    if kind == "DELETED" or not (lease.get("spec") or {}).get("holderIdentity"):
                        changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("watching lease %s/%s: %s", self.namespace, self.name, exc)
            await asyncio.sleep(self.renew_every / 2)

    async def keep(self) -> None:
        """Renew until cancelled; raise LostLeadership when the lease cannot be held."""
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        pause = self.renew_every
        while True:
            await asyncio.sleep(min(pause, max(last_ok + self.renew_deadline - loop.time(), 0)))
            left = last_ok + self.renew_deadline - loop.time()
            if left <= 0:
                raise LostLeadership(
                    f"could not renew lease {self.namespace}/{self.name} "
                    f"within {self.renew_deadline:.1f}s"
                )
            # The renewTime written is taken when the attempt starts: count from there.
            started = loop.time()
            try:
                held = await asyncio.wait_for(self.try_acquire(), left)
            except TimeoutError:
                log.warning("renewing lease: no answer from the apiserver")
            except Exception as exc:
                log.warning("renewing lease failed: %s", exc)
            else:
                if not held:
                    raise LostLeadership(
                        f"lease {self.namespace}/{self.name} taken by another replica"
                    )
                last_ok = started
                pause = self.renew_every
                continue
            # Failed: try again sooner, while there is still time before the deadline.
            pause = self.renew_every / 2

    async def release(self) -> None:
        """Hand over at once on a clean shutdown instead of making the standby wait."""
        try:
            # Bounded: a shutdown must not wait on an apiserver that does not answer.
            await asyncio.wait_for(self._release(), self.renew_deadline)
        except Exception as exc:
            log.warning("releasing lease failed: %s", str(exc) or "no answer from the apiserver")

    async def _release(self) -> None:
        lease = await self.kube.read_lease(self.namespace, self.name)
        held = (lease or {}).get("spec") or {}
        if lease is None or held.get("holderIdentity") != self.identity:
            return
        spec = {
            **self._spec(_now(), int(held.get("leaseTransitions") or 0), None),
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
        }
        body = self._lease(spec, (lease.get("metadata") or {}).get("resourceVersion"))
        await self.kube.replace_lease(self.namespace, self.name, body)
