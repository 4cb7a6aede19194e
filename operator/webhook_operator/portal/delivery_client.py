"""The portal's client of the delivery service's API. The portal authenticates with its
own ServiceAccount token (the one its Kubernetes client uses), which the delivery service
checks with a TokenReview and RBAC like any caller's; the customer's ticket never leaves
the portal. Answers the delivery service gives for bad input (4xx) pass through with their
reason; when it cannot be reached the customer gets a 503 with Retry-After.

aiohttp rather than httpx: it is already the server's library, keeps its connections
alive the same way, and the benchmark put a third of the deliveries route in httpx's
per-request overhead."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import client

from webhook_operator.http_api.errors import ApiError

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=10.0, sock_connect=3.0)


def _unreachable() -> ApiError:
    return ApiError(
        503,
        "DeliveryServiceUnavailable",
        "the delivery service cannot be reached; try again shortly",
        headers={"Retry-After": "5"},
    )


class DeliveryClient:
    def __init__(self, base_url: str, api: client.ApiClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.api = api
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        raw = self.api.configuration.api_key.get("BearerToken")
        if not raw:
            return {}
        return {"Authorization": "Bearer " + str(raw).removeprefix("Bearer ").strip()}

    async def raw(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> bytes:
        """The answer's body as the delivery service wrote it (JSON), after a success."""
        try:
            async with self._http().request(
                method,
                self.base_url + path,
                params=params or [],
                json=body,
                headers=self._headers(),
            ) as response:
                content = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("delivery service %s %s: %r", method, path, exc)
            raise _unreachable() from None
        if status < 400:
            return content
        raise _refusal(status, content, retry_after)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        content = await self.raw(method, path, params=params, body=body)
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise ApiError(
                502, "DeliveryServiceAnswer", "the delivery service answered with no JSON"
            ) from None

    # -- the calls the tenant API makes ------------------------------------------------------

    async def endpoint_deliveries(
        self, namespace: str, endpoint: str, params: list[tuple[str, str]]
    ) -> bytes:
        """One page of the endpoint's deliveries, as JSON to pass on unchanged."""
        return await self.raw(
            "GET", f"/v1/namespaces/{namespace}/endpoints/{endpoint}/deliveries", params=params
        )

    async def activity(self, namespace: str, app: str, hours: int = 24) -> Any:
        """The app's deliveries per hour over the last `hours` (an Activity)."""
        return await self.call(
            "GET",
            f"/v1/namespaces/{namespace}/apps/{app}/activity",
            params=[("hours", str(hours))],
        )

    async def delivery(self, namespace: str, delivery_id: str) -> Any:
        return await self.call("GET", f"/v1/namespaces/{namespace}/deliveries/{delivery_id}")

    async def resend(self, namespace: str, delivery_id: str) -> Any:
        return await self.call(
            "POST", f"/v1/namespaces/{namespace}/deliveries/{delivery_id}/resend"
        )

    async def replay(self, namespace: str, endpoint: str, body: dict[str, Any]) -> Any:
        return await self.call(
            "POST", f"/v1/namespaces/{namespace}/endpoints/{endpoint}/replay", body=body
        )

    async def ping(self, namespace: str, endpoint: str) -> Any:
        return await self.call("POST", f"/v1/namespaces/{namespace}/endpoints/{endpoint}/ping")


def _refusal(status: int, content: bytes, retry_after: str | None) -> ApiError:
    reason, message = _error(status, content)
    if status in (401, 403):
        log.error("the delivery service refused the portal: %s", message)
        return ApiError(
            502,
            "DeliveryServiceRefused",
            "the delivery service refused the portal's own credentials; the platform"
            " must grant the portal's ServiceAccount get, list and update on webhookapps",
        )
    if status >= 500:
        return ApiError(
            503,
            "DeliveryServiceUnavailable",
            f"the delivery service could not answer ({message}); try again shortly",
            headers={"Retry-After": retry_after or "5"},
        )
    return ApiError(status, reason, message)


def _error(status: int, content: bytes) -> tuple[str, str]:
    try:
        error = orjson.loads(content)["error"]
        return str(error["reason"]), str(error["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "DeliveryServiceError", f"HTTP {status}"
