"""The key tickets are signed with, kept in a Kubernetes Secret so every portal replica
signs and verifies with the same one, and so replacing it revokes every ticket at once.

The portal creates the Secret when it is absent (two replicas racing both end up reading
the winner's). Each replica reads it again every few seconds, and at once (at most once a
second) when a ticket names a key it does not hold, which is how a ticket issued by a
replica that saw a rotation first is still accepted by one that has not yet."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from webhook_operator.api.names import K8S_MANAGED_BY, MANAGER
from webhook_operator.portal.tickets import key_id

log = logging.getLogger(__name__)
DATA_KEY = "key"
KEY_BYTES = 32


class KeyUnavailable(Exception):
    """The Secret cannot be read or created (yet)."""


class TicketKeys:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        *,
        refresh_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.namespace, self.name = namespace, name
        self.refresh_every = refresh_every
        self.clock = clock
        self._key: bytes | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self._key is not None

    def signing_key(self) -> bytes:
        if self._key is None:
            raise KeyUnavailable(
                f"the ticket key Secret {self.namespace}/{self.name} has not been read yet"
            )
        return self._key

    def verification_keys(self) -> dict[str, bytes]:
        # Only the current key: replacing the Secret is meant to revoke every ticket.
        return {key_id(self._key): self._key} if self._key is not None else {}

    async def load(self) -> None:
        """Read the Secret, creating it first when it does not exist."""
        async with self._lock:
            try:
                secret = await self.core.read_namespaced_secret(self.name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                secret = await self._create()
            self._key = _decode(secret, self.namespace, self.name)
            self._loaded_at = self.clock()

    async def _create(self) -> Any:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {K8S_MANAGED_BY: MANAGER},
                "annotations": {
                    "webhook-operator.dev/purpose": "Signs portal access tickets. Delete this"
                    " Secret to revoke every ticket; the portal creates a new key."
                },
            },
            "data": {DATA_KEY: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()},
        }
        try:
            created = await self.core.create_namespaced_secret(self.namespace, body)
            log.info("created the ticket key Secret %s/%s", self.namespace, self.name)
            return created
        except ApiException as exc:
            if exc.status != 409:
                raise
            return await self.core.read_namespaced_secret(self.name, self.namespace)

    async def reload_if_due(self, least_interval: float = 1.0) -> bool:
        """Read the key again unless that happened within `least_interval` seconds; True
        when it was read."""
        if self.clock() - self._loaded_at < least_interval:
            return False
        try:
            await self.load()
        except Exception as exc:
            log.warning("reading the ticket key Secret: %r", exc)
            return False
        return True

    async def run(self) -> None:
        """Keep the key fresh; a failure keeps the last key and tries again."""
        while True:
            await asyncio.sleep(self.refresh_every if self.ready else 1.0)
            await self.reload_if_due(least_interval=0.0)


def _decode(secret: Any, namespace: str, name: str) -> bytes:
    data = getattr(secret, "data", None) or {}
    raw = data.get(DATA_KEY)
    try:
        key = base64.b64decode(raw or "", validate=True)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise KeyUnavailable(
            f"Secret {namespace}/{name} has no usable {DATA_KEY!r} (at least {KEY_BYTES} random"
            " bytes); delete it and the portal creates a new one"
        )
    return key
