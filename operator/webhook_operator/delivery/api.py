"""The delivery service's HTTP API: ingest, delivery history and operations, results for
the operator, probes and metrics. Every error is JSON that says what is wrong:
{"error": {"reason": "CamelCase", "message": "for people"}}."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook_operator import ids
from webhook_operator.delivery import ingest, wire
from webhook_operator.delivery.auth import Forbidden, Unauthenticated
from webhook_operator.delivery.openapi import OPENAPI
from webhook_operator.store.base import DeliveryQuery, DeliveryStatus

if TYPE_CHECKING:
    from webhook_operator.delivery.service import Service

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PAGE = 500
REPLAYABLE = (DeliveryStatus.FAILED, DeliveryStatus.EXHAUSTED)


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def error_response(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"reason": reason, "message": message}}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.reason, exc.message)
    except ingest.IngestError as exc:
        return error_response(exc.status, exc.reason, exc.message)
    except Unauthenticated as exc:
        return error_response(401, "Unauthorized", str(exc))
    except Forbidden as exc:
        return error_response(403, "Forbidden", str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
        raise


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(400, "BadLimit", f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _statuses(request: web.Request) -> tuple[DeliveryStatus, ...]:
    found = []
    for value in request.query.getall("status", []):
        for part in value.split(","):
            try:
                found.append(DeliveryStatus(part.strip()))
            except ValueError:
                allowed = ", ".join(s.value for s in DeliveryStatus)
                raise ApiError(
                    400, "BadStatus", f"unknown status {part!r} (one of {allowed})"
                ) from None
    return tuple(found)


class Routes:
    def __init__(self, service: Service) -> None:
        self.svc = service

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[errors], client_max_size=self.svc.settings.max_body + 65536
        )
        r = app.router
        r.add_post("/v1/namespaces/{namespace}/apps/{app}/events", self.emit)
        r.add_get("/v1/namespaces/{namespace}/apps/{app}/deliveries", self.app_deliveries)
        r.add_get(
            "/v1/namespaces/{namespace}/endpoints/{endpoint}/deliveries", self.endpoint_deliveries
        )
        r.add_get("/v1/namespaces/{namespace}/deliveries/{id}", self.get_delivery)
        r.add_post("/v1/namespaces/{namespace}/deliveries/{id}/resend", self.resend)
        r.add_post("/v1/namespaces/{namespace}/endpoints/{endpoint}/replay", self.replay)
        r.add_post("/v1/namespaces/{namespace}/endpoints/{endpoint}/ping", self.ping)
        r.add_get("/internal/v1/endpoint-stats", self.endpoint_stats)
        r.add_get("/openapi.json", self.openapi)
        r.add_get("/metrics", self.metrics)
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        return app

    # -- ingest ----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes:
        limit = self.svc.settings.max_body
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(
                413, "TooLarge", f"the body is {request.content_length} bytes; the limit is {limit}"
            )
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise ApiError(413, "TooLarge", f"the body is over the limit of {limit} bytes")
        return body

    async def emit(self, request: web.Request) -> web.Response:
        namespace, app_name = request.match_info["namespace"], request.match_info["app"]
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "emit", namespace, app_name
        )
        body = await self._body(request)
        app = self.svc.registry.apps.get((namespace, app_name))
        if app is None:
            raise ApiError(
                404, "AppNotFound", f"WebhookApp {app_name} does not exist in namespace {namespace}"
            )
        submitted = ingest.parse_body(body)
        ingest.check_catalog(app, submitted)
        result = await self.svc.accept(namespace, app, submitted)
        return web.json_response(result, status=202)

    # -- history ---------------------------------------------------------------------------

    async def _endpoint_app(self, request: web.Request, verb: str) -> tuple[str, str, str]:
        namespace, endpoint = request.match_info["namespace"], request.match_info["endpoint"]
        config = self.svc.registry.endpoints.get((namespace, endpoint))
        auth = request.headers.get("Authorization")
        if config is None:
            # Whether it exists is itself information: only tell who may read the namespace's apps.
            await self.svc.authorizer.require(auth, "list", namespace, None)
            raise ApiError(
                404,
                "EndpointNotFound",
                f"WebhookEndpoint {endpoint} does not exist in namespace {namespace}",
            )
        await self.svc.authorizer.require(auth, verb, namespace, config.app)
        return namespace, endpoint, config.app

    async def _page(self, query: DeliveryQuery) -> web.Response:
        rows, cursor = await self.svc.store.list_deliveries(query)
        return web.json_response({"items": [wire.delivery(r) for r in rows], "next": cursor})

    async def app_deliveries(self, request: web.Request) -> web.Response:
        namespace, app = request.match_info["namespace"], request.match_info["app"]
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "list", namespace, app
        )
        return await self._page(
            DeliveryQuery(
                namespace=namespace,
                app=app,
                endpoint=request.query.get("endpoint") or None,
                statuses=_statuses(request),
                cursor=request.query.get("cursor") or None,
                limit=_limit(request),
            )
        )

    async def endpoint_deliveries(self, request: web.Request) -> web.Response:
        namespace, endpoint, _ = await self._endpoint_app(request, "list")
        return await self._page(
            DeliveryQuery(
                namespace=namespace,
                endpoint=endpoint,
                statuses=_statuses(request),
                cursor=request.query.get("cursor") or None,
                limit=_limit(request),
            )
        )

    async def _delivery(self, request: web.Request, verb: str) -> Any:
        namespace, delivery_id = request.match_info["namespace"], request.match_info["id"]
        auth = request.headers.get("Authorization")
        found = await self.svc.store.get_delivery(namespace, delivery_id)
        if found is None:
            await self.svc.authorizer.require(auth, "list", namespace, None)
            raise ApiError(
                404, "DeliveryNotFound", f"no delivery {delivery_id} in namespace {namespace}"
            )
        await self.svc.authorizer.require(auth, verb, namespace, found.delivery.app)
        return found

    async def get_delivery(self, request: web.Request) -> web.Response:
        found = await self._delivery(request, "get")
        return web.json_response(wire.detail(found))

    # -- operations ------------------------------------------------------------------------

    async def resend(self, request: web.Request) -> web.Response:
        found = await self._delivery(request, "update")
        now = time.time()
        new_id = await self.svc.store.resend(
            found.delivery.namespace, found.delivery.id, now, ids.delivery_id(now)
        )
        self.svc.dispatcher.wake()
        return web.json_response({"deliveryId": new_id}, status=202)

    async def replay(self, request: web.Request) -> web.Response:
        namespace, endpoint, _ = await self._endpoint_app(request, "update")
        try:
            body = json.loads(await self._body(request) or b"{}")
            since = wire.parse_time(str(body["since"]))
        except KeyError:
            raise ApiError(400, "MissingSince", 'send {"since": "<RFC 3339 time>"}') from None
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        statuses: tuple[DeliveryStatus, ...] = REPLAYABLE
        if body.get("statuses"):
            try:
                statuses = tuple(DeliveryStatus(s) for s in body["statuses"])
            except (ValueError, TypeError):
                raise ApiError(
                    400, "BadStatus", "statuses must be delivery statuses such as failed, exhausted"
                ) from None
        count = await self.svc.store.replay(namespace, endpoint, since, time.time(), statuses)
        self.svc.dispatcher.wake()
        return web.json_response({"replayed": count}, status=202)

    async def ping(self, request: web.Request) -> web.Response:
        namespace, endpoint, app = await self._endpoint_app(request, "update")
        result = await self.svc.ping(namespace, endpoint, app)
        return web.json_response(result, status=202)

    # -- operator, probes, metrics ---------------------------------------------------------

    async def endpoint_stats(self, request: web.Request) -> web.Response:
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "list", None, None, resource="webhookendpoints"
        )
        raw = request.query.get("since", "") or "0"
        if not raw.isdigit():
            raise ApiError(400, "BadCursor", "since must be a cursor returned by this endpoint")
        states, cursor = await self.svc.store.stats_since(int(raw), time.time())
        return web.json_response(
            {"cursor": str(cursor), "endpoints": [wire.endpoint_stats(s, "24h") for s in states]}
        )

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.svc.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        if not self.svc.ready():
            return error_response(
                503, "NotReady", "still loading apps and endpoints from Kubernetes"
            )
        return web.json_response({"status": "ready"})
