"""The delivery service's authorizer when Kubernetes is slow, down or warming up: what a
caller is told (allowed, 401/403, or 503 with Retry-After) and how long answers are kept.

The apiserver is faked here (TokenReview, SubjectAccessReview, /readyz) and the clock is
an argument; tests/integration/test_kube_unavailable.py does the same against a real
apiserver that is stopped and restarted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from webhook_operator.kube_auth import (
    ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    AuthorizationUnavailable,
    Authorizer,
    CachePolicy,
    Forbidden,
    Unauthenticated,
)
from webhook_operator.kube_rest import KubeApiError

TOKEN = "Bearer sa-token"
USER = "system:serviceaccount:shop:billing"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def api_error(status: int, headers: dict[str, str] | None = None) -> KubeApiError:
    return KubeApiError(status, "Service Unavailable", "", headers)


class FakeApiserver:
    """Answers reviews as scripted; an exception instance in place of an answer is raised,
    the string "hang" never answers."""

    def __init__(self) -> None:
        self.allowed: Any = True
        self.evaluation_error = ""
        self.authenticated: Any = True
        self.ready: Any = True
        self.calls: dict[str, int] = {"token": 0, "access": 0, "readyz": 0}

    async def _answer(self, kind: str, value: Any) -> Any:
        self.calls[kind] += 1
        if isinstance(value, BaseException):
            raise value
        if value == "hang":
            await asyncio.sleep(3600)
        return value

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        if path == TOKEN_REVIEWS:
            ok = await self._answer("token", self.authenticated)
            user = {"username": USER, "groups": ["system:serviceaccounts"], "uid": "u1"}
            return {"status": {"authenticated": ok, **({"user": user} if ok else {})}}
        assert path == ACCESS_REVIEWS
        ok = await self._answer("access", self.allowed)
        status = {"allowed": ok}
        if self.evaluation_error:
            status["evaluationError"] = self.evaluation_error
        return {"status": status}

    async def get(self, path: str) -> str:
        assert path == "/readyz"
        ready = await self._answer("readyz", self.ready)
        if not ready:
            raise api_error(500)
        return "ok"


Make = Callable[..., tuple[Authorizer, FakeApiserver, Clock]]


@pytest.fixture
def make() -> Make:
    def build(**kwargs: Any) -> tuple[Authorizer, FakeApiserver, Clock]:
        server, clock = FakeApiserver(), Clock()
        auth = Authorizer(server, clock=clock, **kwargs)  # type: ignore[arg-type]
        return auth, server, clock

    return build


def emit(auth: Authorizer) -> Any:
    return asyncio.run(auth.require(TOKEN, "emit", "shop", "billing"))


def unavailable(auth: Authorizer) -> AuthorizationUnavailable:
    with pytest.raises(AuthorizationUnavailable) as info:
        emit(auth)
    return info.value


def test_allowed_answers_are_kept_30s(make: Make) -> None:
    auth, server, clock = make()
    assert emit(auth).username == USER
    clock.now += 29
    server.allowed = server.authenticated = api_error(503)  # down: the cache still answers
    assert emit(auth).username == USER
    assert server.calls == {"token": 1, "access": 1, "readyz": 0}
    clock.now += 2
    assert unavailable(auth).retry_after == 5


def test_a_certain_refusal_is_kept_30s(make: Make) -> None:
    auth, server, clock = make()
    server.allowed = False
    with pytest.raises(Forbidden, match="may not emit"):
        emit(auth)
    server.allowed = True  # granted now: the caller waits out the cached refusal
    clock.now += 29
    with pytest.raises(Forbidden):
        emit(auth)
    clock.now += 2
    assert emit(auth).username == USER


@pytest.mark.parametrize(
    "failure",
    [
        aiohttp.ClientConnectionError("connection refused"),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        api_error(500),
        api_error(503),
        api_error(429),
    ],
)
def test_kubernetes_not_answering_is_503_not_500(make: Make, failure: BaseException) -> None:
    auth, server, _ = make()
    server.authenticated = failure
    exc = unavailable(auth)
    assert exc.retry_after == 5
    assert "retry later" in str(exc)
    assert "127.0.0.1" not in str(exc)  # the apiserver's address is not the caller's business
    server.authenticated = True
    server.allowed = failure
    assert unavailable(auth).retry_after == 5


def test_the_apiservers_retry_after_is_passed_on(make: Make) -> None:
    auth, server, _ = make()
    server.authenticated = api_error(429, {"retry-after": "7"})
    assert unavailable(auth).retry_after == 7


def test_our_own_missing_rbac_is_not_a_503(make: Make) -> None:
    """The service not being allowed to create TokenReviews is a deployment error: it
    surfaces (as a 500 with the log saying why), not as 'retry later' forever."""
    auth, server, _ = make()
    server.authenticated = api_error(403)
    with pytest.raises(KubeApiError):
        emit(auth)


def test_a_hung_apiserver_costs_at_most_the_timeout(make: Make) -> None:
    auth, server, _ = make(timeout=0.2)
    server.authenticated = "hang"
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        with pytest.raises(AuthorizationUnavailable, match="no answer in time"):
            loop.run_until_complete(auth.require(TOKEN, "emit", "shop", "billing"))
        assert loop.time() - started < 1.0
    finally:
        loop.close()


def test_a_refusal_from_an_apiserver_not_ready_is_503_and_not_kept(make: Make) -> None:
    """After a restart the apiserver answers before its RBAC caches are filled and
    refuses a correctly bound caller: that must not become a 403, let alone a cached one."""
    auth, server, clock = make()
    server.allowed, server.ready = False, False
    exc = unavailable(auth)
    assert exc.retry_after == 2
    assert "starting up" in str(exc)
    clock.now += 1.5  # readiness is asked again after a second
    server.allowed, server.ready = True, True
    assert emit(auth).username == USER
    assert server.calls["access"] == 2


def test_a_wrongly_refused_token_while_warming_up_is_503(make: Make) -> None:
    auth, server, clock = make()
    server.authenticated, server.ready = False, False
    assert unavailable(auth).retry_after == 2
    clock.now += 1.5
    server.authenticated, server.ready = True, True
    assert emit(auth).username == USER


def test_refusals_soon_after_an_outage_are_kept_2s(make: Make) -> None:
    auth, server, clock = make()
    server.authenticated = aiohttp.ClientConnectionError()
    unavailable(auth)
    server.authenticated, server.allowed = True, False
    clock.now += 10  # back, and says it is ready, but its refusals may still be wrong
    with pytest.raises(Forbidden):
        emit(auth)
    server.allowed = True
    clock.now += 2.5
    assert emit(auth).username == USER


def test_refusals_a_minute_after_an_outage_are_certain_again(make: Make) -> None:
    auth, server, clock = make()
    server.authenticated = aiohttp.ClientConnectionError()
    unavailable(auth)
    server.authenticated, server.allowed = True, False
    clock.now += 61
    with pytest.raises(Forbidden):
        emit(auth)
    server.allowed = True
    clock.now += 2.5
    with pytest.raises(Forbidden):  # cached for the full 30 s
        emit(auth)


def test_a_refusal_with_an_evaluation_error_is_kept_2s(make: Make) -> None:
    auth, server, clock = make()
    server.allowed, server.evaluation_error = False, "webhook authorizer timed out"
    with pytest.raises(Forbidden):
        emit(auth)
    server.allowed, server.evaluation_error = True, ""
    clock.now += 2.5
    assert emit(auth).username == USER


def test_an_invalid_token_is_401_and_kept_30s(make: Make) -> None:
    auth, server, clock = make()
    server.authenticated = False
    with pytest.raises(Unauthenticated, match="not valid"):
        emit(auth)
    clock.now += 29
    with pytest.raises(Unauthenticated):
        emit(auth)
    assert server.calls["token"] == 1


def test_no_readyz_permission_falls_back_to_the_outage_window(make: Make) -> None:
    auth, server, clock = make()
    server.ready = api_error(403)
    server.allowed = False
    with pytest.raises(Forbidden):
        emit(auth)
    server.allowed = True
    clock.now += 2.5
    with pytest.raises(Forbidden):  # no outage seen: a certain refusal, kept 30 s
        emit(auth)


@pytest.mark.parametrize(
    ("since_outage", "evaluation_error", "ttl"),
    [(None, False, 30.0), (None, True, 2.0), (59.0, False, 2.0), (60.0, False, 30.0)],
)
def test_refusal_ttl(since_outage: float | None, evaluation_error: bool, ttl: float) -> None:
    now = 500.0
    at = None if since_outage is None else now - since_outage
    assert CachePolicy().refusal_ttl(now, at, evaluation_error) == ttl
