"""The portal's client of the delivery service's API. The portal authenticates with its
own ServiceAccount token (the one its Kubernetes client uses), which the delivery service
checks with a TokenReview and RBAC like any caller's; the customer's ticket never leaves
the portal. Answers the delivery service gives for bad input (4xx) pass through with their
reason; when it cannot be reached the customer gets a 503 with Retry-After."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from kubernetes_asyncio import client

from webhook_operator.http_api.errors import ApiError

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class DeliveryClient:
    def __init__(self, base_url: str, api: client.ApiClient) -> None:
        self.api = api
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=TIMEOUT)

    async def close(self) -> None:
        await self.http.aclose()

    def _headers(self) -> dict[str, str]:
        raw = self.api.configuration.api_key.get("BearerToken")
        if not raw:
            return {}
        return {"Authorization": "Bearer " + str(raw).removeprefix("Bearer ").strip()}

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        try:
            response = await self.http.request(
                method,
                path,
                params=tuple(params or ()),
                json=body,
                headers=self._headers(),
            )
        except httpx.HTTPError as exc:
            log.warning("delivery service %s %s: %r", method, path, exc)
            raise ApiError(
                503,
                "DeliveryServiceUnavailable",
                "the delivery service cannot be reached; try again shortly",
                headers={"Retry-After": "5"},
            ) from None
        if response.status_code < 400:
            return response.json()
        reason, message = _error(response)
        if response.status_code in (401, 403):
            log.error("the delivery service refused the portal: %s", message)
            raise ApiError(
                502,
                "DeliveryServiceRefused",
                "the delivery service refused the portal's own credentials; the platform"
                " must grant the portal's ServiceAccount get, list and update on webhookapps",
            )
        if response.status_code >= 500:
            raise ApiError(
                503,
                "DeliveryServiceUnavailable",
                f"the delivery service could not answer ({message}); try again shortly",
                headers={"Retry-After": response.headers.get("Retry-After", "5")},
            )
        raise ApiError(response.status_code, reason, message)

    # -- the calls the tenant API makes ------------------------------------------------------

    async def endpoint_deliveries(
        self, namespace: str, endpoint: str, params: list[tuple[str, str]]
    ) -> Any:
        return await self.call(
            "GET", f"/v1/namespaces/{namespace}/endpoints/{endpoint}/deliveries", params=params
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


def _error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["reason"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return "DeliveryServiceError", f"HTTP {response.status_code}"
