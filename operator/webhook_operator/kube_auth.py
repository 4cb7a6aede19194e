"""Who is calling, and may they? Kubernetes RBAC is the permission system, for the
delivery service and the portal alike.

A bearer token is checked with a TokenReview; the permission with a SubjectAccessReview
on `webhookapps` in group webhook-operator.dev (verb `emit` to post events, `get`/`list`
to read history, `update` for resend/replay/ping, `issue-tickets` for the portal's access
tickets). Both answers are cached briefly so the
ingest path costs no API round trip per event.

When Kubernetes cannot answer, nobody is let in and nobody is turned away for good: a
connection error, a timeout, a 5xx or a 429 raises AuthorizationUnavailable (a 503 with
Retry-After for the caller), and a call never waits longer than a few seconds. A restarted
apiserver answers before its RBAC and ServiceAccount caches are filled, and meanwhile
denies callers it would allow; so a refusal is believed only from an apiserver that says
it is ready, is cached for 30 s only when it is certain, and for 2 s when the apiserver
reported an evaluation error or was unreachable within the last minute. Allowed answers
are cached as before: RBAC only grants, so a partial view can deny wrongly, never allow
wrongly."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from webhook_operator.api.v1alpha1 import GROUP
from webhook_operator.kube_rest import KubeApiError, KubeRest

log = logging.getLogger(__name__)
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

Clock = Callable[[], float]

# One call to the apiserver, credential refresh included; a caller waits for at most two
# (TokenReview, then SubjectAccessReview), plus a readiness check when refused.
REVIEW_TIMEOUT = 3.0
# Retry-After when the apiserver cannot be reached, and while it is warming up.
RETRY_UNREACHABLE = 5
RETRY_WARMING_UP = 2
# How long /readyz's answer is reused: a burst of refusals costs one probe.
READY_TTL = 1.0


@dataclass(frozen=True)
class Caller:
    username: str
    groups: tuple[str, ...]
    uid: str
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Unauthenticated(Exception):
    pass


class AuthorizationUnavailable(Exception):
    """Kubernetes could not answer whether the caller may act (apiserver down, slow or
    still warming up): the caller should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int = RETRY_UNREACHABLE) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


@dataclass(frozen=True)
class CachePolicy:
    """How long answers are believed. Pure: the caller supplies the times."""

    ttl: float = 30.0
    # A refusal that may be wrong: kept just long enough to absorb a burst of retries.
    uncertain_ttl: float = 2.0
    # After the apiserver was last unreachable, its refusals may come from caches that are
    # still filling (observed: about 10 s of wrong 403s after a restart).
    warmup: float = 60.0

    def refusal_ttl(
        self, now: float, unreachable_at: float | None, evaluation_error: bool
    ) -> float:
        recently_down = unreachable_at is not None and now - unreachable_at < self.warmup
        return self.uncertain_ttl if evaluation_error or recently_down else self.ttl


@dataclass
class _Cache:
    clock: Clock
    entries: dict[Any, tuple[float, Any]] = field(default_factory=dict)

    def get(self, key: Any) -> Any:
        hit = self.entries.get(key)
        if hit is None or hit[0] <= self.clock():
            return None
        return hit[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if len(self.entries) > 10_000:
            self.entries.clear()  # bounded: a flood of distinct tokens cannot grow it
        self.entries[key] = (self.clock() + ttl, value)


def unavailable(exc: BaseException) -> bool:
    """Whether a failed call means Kubernetes could not answer (retry later), as opposed
    to a mistake of ours such as missing RBAC for the service itself."""
    if isinstance(exc, KubeApiError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, aiohttp.ClientError | TimeoutError | OSError)


def _retry_after(exc: BaseException, default: int) -> int:
    """The apiserver's own Retry-After on a 429/503, within sensible bounds."""
    headers = getattr(exc, "headers", None) or {}
    try:
        return min(max(int(headers.get("Retry-After", default)), 1), 60)
    except (TypeError, ValueError):
        return default


def _describe(exc: BaseException) -> str:
    """What went wrong, for the caller: no addresses, which are the cluster's business."""
    if isinstance(exc, KubeApiError):
        return f"HTTP {exc.status} {exc.reason}".strip()
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError | aiohttp.ClientConnectionError):
        return "cannot connect"
    return type(exc).__name__


class Authorizer:
    def __init__(
        self,
        api: KubeRest,
        ttl: float = 30.0,
        *,
        policy: CachePolicy | None = None,
        clock: Clock = time.monotonic,
        timeout: float = REVIEW_TIMEOUT,
    ) -> None:
        self.api = api
        self.policy = policy or CachePolicy(ttl=ttl)
        self.clock = clock
        self.timeout = timeout
        self._tokens = _Cache(clock)
        self._decisions = _Cache(clock)
        self._unreachable_at: float | None = None
        self._logged_at: float | None = None
        self._ready: tuple[float, bool | None] | None = None

    # -- talking to the apiserver ----------------------------------------------------------

    async def _ask(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One call to the apiserver; AuthorizationUnavailable when it cannot answer."""
        try:
            async with asyncio.timeout(self.timeout):
                return await call()
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._note_unreachable(what, exc)
            raise AuthorizationUnavailable(
                f"Kubernetes did not answer, so {what} cannot be checked now "
                f"({_describe(exc)}); retry later",
                _retry_after(exc, RETRY_UNREACHABLE),
            ) from None

    def _note_unreachable(self, what: str, exc: BaseException) -> None:
        now = self.clock()
        self._unreachable_at = now
        self._ready = None
        # One line per outage minute, not one per request.
        if self._logged_at is None or now - self._logged_at > 60:
            self._logged_at = now
            log.warning("Kubernetes API unavailable while checking %s: %r", what, exc)

    async def _apiserver_ready(self) -> bool | None:
        """Whether the apiserver says it is ready (its caches filled); None when it will
        not tell us (no permission on /readyz): then only the time since an outage counts."""
        now = self.clock()
        if self._ready is not None and now - self._ready[0] < READY_TTL:
            return self._ready[1]
        ready: bool | None
        try:
            async with asyncio.timeout(self.timeout):
                await self.api.get("/readyz")
            ready = True
        except KubeApiError as exc:
            ready = None if exc.status in (401, 403, 404) else False
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._note_unreachable("readiness", exc)
            ready = False
        if ready is False:
            # Not ready counts as an outage: its refusals stay doubtful for a while after.
            self._unreachable_at = now
        self._ready = (now, ready)
        return ready

    async def _refusal_ttl(self, what: str, evaluation_error: bool) -> float:
        """How long to remember a refusal; raises while the apiserver is not ready, since
        its refusal then says nothing."""
        if await self._apiserver_ready() is False:
            raise AuthorizationUnavailable(
                f"Kubernetes is starting up and cannot decide {what} yet; retry shortly",
                RETRY_WARMING_UP,
            )
        return self.policy.refusal_ttl(self.clock(), self._unreachable_at, evaluation_error)

    # -- the checks ------------------------------------------------------------------------

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
        review = await self._ask(
            "the token",
            lambda: self.api.post(
                TOKEN_REVIEWS,
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "spec": {"token": token},
                },
            ),
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            error = status.get("error")
            reason = "the token is not valid" + (f": {error}" if error else "")
            ttl = await self._refusal_ttl("whether the token is valid", evaluation_error=False)
            self._tokens.put(digest, reason, ttl)
            raise Unauthenticated(reason)
        user = status.get("user") or {}
        caller = Caller(
            username=user.get("username") or "",
            groups=tuple(user.get("groups") or ()),
            uid=user.get("uid") or "",
            extra=tuple(sorted((k, tuple(v)) for k, v in (user.get("extra") or {}).items())),
        )
        self._tokens.put(digest, caller, self.policy.ttl)
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
        review = await self._ask(
            "the permission",
            lambda: self.api.post(
                ACCESS_REVIEWS,
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
                },
            ),
        )
        status = review.get("status") or {}
        if status.get("allowed"):
            self._decisions.put(key, True, self.policy.ttl)
            return True
        evaluation_error = bool(status.get("evaluationError"))
        if evaluation_error:
            log.info("SubjectAccessReview evaluation error: %s", status["evaluationError"])
        ttl = await self._refusal_ttl(f"whether {caller.username} may {verb}", evaluation_error)
        self._decisions.put(key, False, ttl)
        return False

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
