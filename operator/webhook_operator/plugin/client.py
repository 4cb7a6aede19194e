"""HTTP to the delivery service and the portal. httpx, synchronous: one person, a handful
of requests, so readability beats throughput here. Every failure becomes a PluginError
carrying the service's own message (it names the missing RBAC rule on 403) and the
documented exit code; nothing below this module sees an HTTP status. Both services answer
errors the same way (`http_api.errors`), so one client class reads both."""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import quote

import httpx

from webhook_operator import __version__
from webhook_operator.plugin.errors import Exit, PluginError

DEFAULT_TIMEOUT = 30.0


def _seg(value: str) -> str:
    # Names come from the command line: a "/" or "?" must not change which route is hit.
    return quote(value, safe="")


def exit_code(status: int) -> Exit:
    if status in (401, 403):
        return Exit.DENIED
    if status == 404:
        return Exit.NOT_FOUND
    if status == 503:  # Kubernetes or the database is down for now: worth retrying
        return Exit.UNREACHABLE
    if status >= 500:
        return Exit.SERVER
    return Exit.USAGE


def error_message(response: httpx.Response) -> str:
    """The `{"error": {"reason", "message"}}` the service sends, or what there is instead
    (a proxy or port-forward in between may answer with plain text)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message") or "").strip()
        reason = str(error.get("reason") or "").strip()
        retry = response.headers.get("Retry-After")
        if response.status_code == 503:
            when = f"after {retry} s" if retry else "later"
            message = f"{message.rstrip('.')}; retry {when}"
        if message:
            return f"{message} ({reason}, HTTP {response.status_code})" if reason else message
    text = response.text.strip().splitlines()
    snippet = text[0][:200] if text else response.reason_phrase
    return f"HTTP {response.status_code} from {response.request.url}: {snippet}"


class ServiceClient:
    """One of webhook-operator's HTTP services, called with a bearer token."""

    service = "the delivery service"
    flag = "--server"  # the flag that names the service, for the messages

    def __init__(
        self,
        server: str,
        token: str,
        *,
        server_origin: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server
        self.server_origin = server_origin or self.flag
        self.http = httpx.Client(
            base_url=server,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"kubectl-webhooks/{__version__}",
            },
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, params: Any = None, json: Any = None
    ) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, params=params, json=json)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            where = "" if self.server_origin == self.flag else f" (from {self.server_origin})"
            raise PluginError(
                f"cannot reach {self.service} at {self.server}{where}: {reason}",
                Exit.UNREACHABLE,
            ) from None
        if response.status_code >= 400:
            raise PluginError(error_message(response), exit_code(response.status_code))
        try:
            body = response.json()
        except ValueError:
            raise PluginError(
                f"{self.service} at {self.server} answered HTTP {response.status_code}"
                f" with something that is not JSON: is {self.flag} {self.service}?",
                Exit.SERVER,
            ) from None
        if not isinstance(body, dict):
            raise PluginError(
                f"unexpected answer from {self.server}: {str(body)[:200]}", Exit.SERVER
            )
        return body


class DeliveryClient(ServiceClient):
    # -- the routes, one method each ------------------------------------------------------

    def emit(
        self, namespace: str, app: str, event_type: str, data: Any, key: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"type": event_type}
        if data is not None:
            body["data"] = data
        if key is not None:
            body["id"] = key
        return self.request(
            "POST", f"/v1/namespaces/{_seg(namespace)}/apps/{_seg(app)}/events", json=body
        )

    def deliveries(
        self,
        namespace: str,
        *,
        app: str | None,
        endpoint: str | None,
        statuses: list[str],
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("status", s) for s in statuses]
        if cursor:
            params.append(("cursor", cursor))
        if app is not None:
            # The app route filters by endpoint too, so --app and --endpoint may combine.
            if endpoint is not None:
                params.append(("endpoint", endpoint))
            path = f"/v1/namespaces/{_seg(namespace)}/apps/{_seg(app)}/deliveries"
        elif endpoint is not None:
            path = f"/v1/namespaces/{_seg(namespace)}/endpoints/{_seg(endpoint)}/deliveries"
        else:
            raise PluginError("give --app APP or --endpoint ENDPOINT")
        return self.request("GET", path, params=params)

    def delivery(self, namespace: str, delivery_id: str) -> dict[str, Any]:
        return self.request(
            "GET", f"/v1/namespaces/{_seg(namespace)}/deliveries/{_seg(delivery_id)}"
        )

    def resend(self, namespace: str, delivery_id: str) -> dict[str, Any]:
        return self.request(
            "POST", f"/v1/namespaces/{_seg(namespace)}/deliveries/{_seg(delivery_id)}/resend"
        )

    def replay(
        self, namespace: str, endpoint: str, since: str, statuses: list[str]
    ) -> dict[str, Any]:
        path = f"/v1/namespaces/{_seg(namespace)}/endpoints/{_seg(endpoint)}/replay"
        return self.request("POST", path, json=_replay_body(since, statuses))

    def replay_app(
        self, namespace: str, app: str, since: str, statuses: list[str]
    ) -> dict[str, Any]:
        path = f"/v1/namespaces/{_seg(namespace)}/apps/{_seg(app)}/replay"
        return self.request("POST", path, json=_replay_body(since, statuses))

    def ping(self, namespace: str, endpoint: str) -> dict[str, Any]:
        return self.request(
            "POST", f"/v1/namespaces/{_seg(namespace)}/endpoints/{_seg(endpoint)}/ping"
        )


class PortalClient(ServiceClient):
    service = "the portal"
    flag = "--portal-url"

    def issue_ticket(
        self, namespace: str, app: str, *, scope: str, ttl: str | None, subject: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"scope": scope, "subject": subject}
        if ttl is not None:  # absent: the portal's default lifetime
            body["ttl"] = ttl
        return self.request(
            "POST",
            f"/v1/namespaces/{_seg(namespace)}/apps/{_seg(app)}/access-tickets",
            json=body,
        )


def _replay_body(since: str, statuses: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"since": since}
    if statuses:
        body["statuses"] = statuses
    return body
