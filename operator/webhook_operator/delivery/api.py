"""The delivery service's HTTP API: ingest, delivery history and operations, results for
the operator, probes and metrics. Every error is JSON that says what is wrong:
{"error": {"reason": "CamelCase", "message": "for people"}}."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg_pool
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from webhook_operator import ids
from webhook_operator.delivery import ingest, wire
from webhook_operator.delivery.openapi import OPENAPI
from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError, error_response, middleware
from webhook_operator.store.base import DeliveryQuery, DeliveryStatus

if TYPE_CHECKING:
    from webhook_operator.delivery.service import Service

log = logging.getLogger(__name__)
# The database is down, locked past its busy timeout or out of connections: the request
# may succeed later, so it is a 503 rather than a 500.
STORE_UNAVAILABLE = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
)
MAX_PAGE = 500
REPLAYABLE = (DeliveryStatus.FAILED, DeliveryStatus.EXHAUSTED)


def _ingest_error(_: web.Request, exc: Exception) -> web.StreamResponse | None:
    if isinstance(exc, ingest.IngestError):
        return error_response(exc.status, exc.reason, exc.message)
    return None


def _store_unavailable(request: web.Request, exc: Exception) -> web.StreamResponse | None:
    if not isinstance(exc, STORE_UNAVAILABLE):
        return None
    log.warning("%s %s: the store is unavailable: %s", request.method, request.path, exc)
    return error_response(
        503,
        "StoreUnavailable",
        "the delivery service cannot reach its database; nothing was stored, try again",
        headers={"Retry-After": "5"},
    )


errors = middleware(_ingest_error, _store_unavailable, server="the delivery service")
_name = inputs.path_name
_query_name = inputs.query_name
_cursor = inputs.cursor


def _limit(request: web.Request) -> int:
    return inputs.limit(request, most=MAX_PAGE)


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
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        return app

    # -- ingest ----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes:
        settings = self.svc.settings
        return await inputs.read_body(request, settings.max_body, settings.body_timeout)

    async def emit(self, request: web.Request) -> web.Response:
        namespace, app_name = _name(request, "namespace"), _name(request, "app")
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
        namespace, endpoint = _name(request, "namespace"), _name(request, "endpoint")
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
        namespace, app = _name(request, "namespace"), _name(request, "app")
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "list", namespace, app
        )
        return await self._page(
            DeliveryQuery(
                namespace=namespace,
                app=app,
                endpoint=_query_name(request, "endpoint"),
                statuses=_statuses(request),
                cursor=_cursor(request),
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
                cursor=_cursor(request),
                limit=_limit(request),
            )
        )

    async def _delivery(self, request: web.Request, verb: str) -> Any:
        namespace, delivery_id = _name(request, "namespace"), _name(request, "id")
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
        raw = await self._body(request)
        body = ingest.parse_object(raw or b"{}", '{"since": "<RFC 3339 time>"}', max_depth=4)
        if "since" not in body:
            raise ApiError(400, "MissingSince", 'send {"since": "<RFC 3339 time>"}')
        if not isinstance(body["since"], str):
            raise ApiError(400, "BadSince", '"since" must be an RFC 3339 time as a string')
        try:
            since = wire.parse_time(body["since"])
        except ValueError as exc:
            raise ApiError(400, "BadSince", str(exc)) from None
        statuses: tuple[DeliveryStatus, ...] = REPLAYABLE
        wanted = body.get("statuses")
        if wanted:
            try:
                if not isinstance(wanted, list):
                    raise TypeError
                statuses = tuple(DeliveryStatus(s) for s in wanted)
            except (ValueError, TypeError):
                raise ApiError(
                    400,
                    "BadStatus",
                    '"statuses" must be a list of delivery statuses such as ["failed"]',
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
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise ApiError(400, "BadCursor", "since must be a cursor returned by this endpoint")
        states, cursor = await self.svc.store.stats_since(int(raw), time.time())
        return web.json_response(
            {"cursor": str(cursor), "endpoints": [wire.endpoint_stats(s, "24h") for s in states]}
        )

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        if not self.svc.ready():
            return error_response(
                503, "NotReady", "still loading apps and endpoints from Kubernetes"
            )
        return web.json_response({"status": "ready"})


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """The metrics listener: Prometheus text, nothing else."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application(middlewares=[errors])
    app.router.add_get("/metrics", metrics)
    return app
