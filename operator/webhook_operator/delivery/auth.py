"""Who is calling, and may they? Kubernetes RBAC is the permission system.

A bearer token is checked with a TokenReview; the permission with a SubjectAccessReview
on `webhookapps` in group webhook-operator.dev (verb `emit` to post events, `get`/`list`
to read history, `update` for resend/replay/ping). Both answers are cached briefly so the
ingest path costs no API round trip per event."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from webhook_operator.api.v1alpha1 import GROUP


@dataclass(frozen=True)
class Caller:
    username: str
    groups: tuple[str, ...]
    uid: str
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Unauthenticated(Exception):
    pass


class Forbidden(Exception):
    def __init__(
        self, caller: Caller, verb: str, namespace: str | None, resource: str, name: str | None
    ) -> None:
        where = f"in namespace {namespace}" if namespace else "at cluster scope"
        target = f"{resource}.{GROUP}" + (f" {name!r}" if name else "")
        super().__init__(
            f"{caller.username} may not {verb} {target} {where}: grant it with a Role allowing "
            f"verb {verb!r} on resource {resource!r} in apiGroup {GROUP!r}"
            + (f" (resourceNames: [{name}])" if name else "")
        )


@dataclass
class _Cache:
    ttl: float
    entries: dict[Any, tuple[float, Any]] = field(default_factory=dict)

    def get(self, key: Any) -> Any:
        hit = self.entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self.entries) > 10_000:
            self.entries.clear()  # bounded: a flood of distinct tokens cannot grow it
        self.entries[key] = (time.monotonic() + self.ttl, value)


class Authorizer:
    def __init__(self, api: client.ApiClient, ttl: float = 30.0) -> None:
        self.authn: Any = client.AuthenticationV1Api(api)
        self.authz: Any = client.AuthorizationV1Api(api)
        self._tokens = _Cache(ttl)
        self._decisions = _Cache(ttl)

    async def authenticate(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthenticated("send Authorization: Bearer <token> (a ServiceAccount token)")
        token = authorization.removeprefix("Bearer ").strip()
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._tokens.get(digest)
        if cached is not None:
            if isinstance(cached, Caller):
                return cached
            raise Unauthenticated(cached)
        review = await self.authn.create_token_review(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            }
        )
        status = review.status
        if not status or not status.authenticated:
            reason = "the token is not valid" + (
                f": {status.error}" if status and status.error else ""
            )
            self._tokens.put(digest, reason)
            raise Unauthenticated(reason)
        user = status.user
        caller = Caller(
            username=user.username or "",
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra=tuple(sorted((k, tuple(v)) for k, v in (user.extra or {}).items())),
        )
        self._tokens.put(digest, caller)
        return caller

    async def allowed(
        self,
        caller: Caller,
        verb: str,
        namespace: str | None,
        name: str | None,
        resource: str = "webhookapps",
    ) -> bool:
        key = (caller, verb, namespace, name, resource)
        cached = self._decisions.get(key)
        if cached is not None:
            return bool(cached)
        attributes: dict[str, Any] = {"group": GROUP, "resource": resource, "verb": verb}
        if namespace:
            attributes["namespace"] = namespace
        if name:
            attributes["name"] = name
        review = await self.authz.create_subject_access_review(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": caller.username,
                    "groups": list(caller.groups),
                    "uid": caller.uid,
                    "extra": {k: list(v) for k, v in caller.extra},
                    "resourceAttributes": attributes,
                },
            }
        )
        decision = bool(review.status and review.status.allowed)
        self._decisions.put(key, decision)
        return decision

    async def require(
        self,
        authorization: str | None,
        verb: str,
        namespace: str | None,
        name: str | None,
        resource: str = "webhookapps",
    ) -> Caller:
        caller = await self.authenticate(authorization)
        if not await self.allowed(caller, verb, namespace, name, resource):
            raise Forbidden(caller, verb, namespace, resource, name)
        return caller
