"""The delivery service's HTTP API: ingest, delivery history and operations, results for
the operator, probes and metrics. Every error is JSON that says what is wrong:
{"error": {"reason": "CamelCase", "message": "for people"}}."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from webhook_operator import __version__, ids
from webhook_operator.api import delivery_wire as w
from webhook_operator.delivery import ingest, wire
from webhook_operator.delivery.registry import AppConfig
from webhook_operator.http_api import inputs, openapi
from webhook_operator.http_api.errors import ApiError, error_response, middleware
from webhook_operator.http_api.openapi import Operation, Param
from webhook_operator.http_api.wire import respond
from webhook_operator.store.base import (
    DeliveryDetail,
    DeliveryQuery,
    DeliveryStatus,
    store_unavailable,
)

if TYPE_CHECKING:
    from webhook_operator.delivery.service import Service

log = logging.getLogger(__name__)
T = TypeVar("T")
# The database is down, locked past its busy timeout or out of connections: the request
# may succeed later, so it is a 503 rather than a 500.
STORE_UNAVAILABLE_MESSAGE = (
    "the delivery service cannot reach its database; nothing was stored, try again"
)
RETRY_AFTER = "5"
MAX_PAGE = 500
REPLAYABLE = (DeliveryStatus.FAILED, DeliveryStatus.EXHAUSTED)
TITLE = "webhook-operator delivery service"
DESCRIPTION = (
    "Emit events, read delivery history, resend, replay and ping. Authenticate with"
    " `Authorization: Bearer <ServiceAccount token>`; permissions are Kubernetes RBAC on"
    " `webhookapps.webhook-operator.dev` (emit, get, list, update)."
)


def _ingest_error(_: web.Request, exc: Exception) -> web.StreamResponse | None:
    if isinstance(exc, ingest.IngestError):
        return error_response(exc.status, exc.reason, exc.message)
    return None


def _store_unavailable(request: web.Request, exc: Exception) -> web.StreamResponse | None:
    if not store_unavailable(exc):
        return None
    log.warning("%s %s: the store is unavailable: %s", request.method, request.path, exc)
    return error_response(
        503,
        "StoreUnavailable",
        STORE_UNAVAILABLE_MESSAGE,
        headers={"Retry-After": RETRY_AFTER},
    )


def _batch_item(
    index: int, answer: ingest.IngestError | BaseException | dict[str, Any]
) -> w.EmitBatchItem:
    """One event's place in a batch answer: the status and body the single route would
    have answered for it."""
    if isinstance(answer, dict):
        return w.EmitBatchItem.model_validate({"index": index, "status": 202, **answer})
    if isinstance(answer, ingest.IngestError):
        status, reason, message = answer.status, answer.reason, answer.message
    elif store_unavailable(answer):
        log.warning("batch event %d: the store is unavailable: %s", index, answer)
        status, reason, message = 503, "StoreUnavailable", STORE_UNAVAILABLE_MESSAGE
    else:
        log.error("batch event %d failed", index, exc_info=answer)
        status, reason = 500, "InternalError"
        message = "the delivery service failed on this event; see its log"
    return w.EmitBatchItem(
        index=index, status=status, error=w.EventError(reason=reason, message=message)
    )


errors = middleware(_ingest_error, _store_unavailable, server="the delivery service")
_name = inputs.path_name
_query_name = inputs.query_name
_cursor = inputs.cursor


def _limit(request: web.Request) -> int:
    return inputs.limit(request, most=MAX_PAGE)


def _query(parse: Callable[[list[str]], T], request: web.Request, key: str) -> T:
    try:
        return parse(request.query.getall(key, []))
    except w.BadQuery as exc:
        raise ApiError(400, exc.reason, exc.message) from None


def _statuses(request: web.Request) -> tuple[DeliveryStatus, ...]:
    return _query(w.statuses, request, "status")


def _event_types(request: web.Request) -> tuple[str, ...]:
    return _query(w.event_types, request, "eventType")


# Which field of a replay body a validation problem is about, and the reason it answers.
_REPLAY_REASONS = {"since": "BadSince", "until": "BadUntil", "statuses": "BadStatus"}
_REPLAY_EXAMPLE = '{"since": "<RFC 3339 time>"}'


def replay_request(raw: bytes) -> w.ReplayRequest:
    """The replay body: 400 with a reason for each field (MissingSince, BadSince, BadUntil,
    BadStatus), 422 for fields it does not know."""
    raw = raw or b"{}"
    body = ingest.parse_object(raw, _REPLAY_EXAMPLE, max_depth=4)  # MalformedJSON/-Request
    if "since" not in body:
        raise ApiError(400, "MissingSince", f"send {_REPLAY_EXAMPLE}")
    try:
        # From the JSON text: times must be strings there, never numbers of seconds.
        parsed = w.ReplayRequest.model_validate_json(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        field = str(problems[0]["loc"][0]) if problems[0]["loc"] else ""
        reason = _REPLAY_REASONS.get(field)
        if reason is None:
            raise ApiError(422, "Invalid", inputs.describe(problems)) from None
        if field == "statuses":
            allowed = ", ".join(s.value for s in DeliveryStatus)
            message = f'"statuses" must be a list of delivery statuses ({allowed})'
        else:
            message = f'"{field}" must be an RFC 3339 time such as 2026-11-25T10:00:00Z'
        raise ApiError(400, reason, message) from None
    if parsed.until is not None and parsed.until < parsed.since:
        raise ApiError(400, "BadUntil", '"until" must not be before "since"')
    return parsed


_STATUS = Param(
    "status",
    "pending, failed, delivered, exhausted, held, cancelled or expired; repeat or comma-separate",
    {"type": "array", "items": {"type": "string", "enum": [s.value for s in DeliveryStatus]}},
)
_EVENT_TYPE = Param(
    "eventType",
    "Exact event types such as invoice.paid; repeat or comma-separate",
    {"type": "array", "items": {"type": "string", "maxLength": w.MAX_EVENT_TYPE_LENGTH}},
)
_CURSOR = Param("cursor", "`next` of the previous page")
_LIMIT = Param(
    "limit",
    "Deliveries per page",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
)
PAGE_PARAMS = (_STATUS, _EVENT_TYPE, _CURSOR, _LIMIT)
TRACEPARENT = Param(
    "traceparent",
    "W3C Trace Context of the producer's span: kept with each event and sent with every"
    " attempt, so the trace continues into the receiver",
    where="header",
)
HOUR = 3600
_HOURS = Param(
    "hours",
    "How many hours back, the current one included",
    {"type": "integer", "minimum": 1, "maximum": w.MAX_ACTIVITY_HOURS, "default": 24},
)


def activity_window(now: float, hours: int) -> float:
    """The start of a window of `hours` whole hours whose last one is the current hour:
    hour-aligned buckets read the same on every call within an hour."""
    return float((int(now) // HOUR - hours + 1) * HOUR)


class Routes:
    def __init__(self, service: Service) -> None:
        self.svc = service
        self._document: dict[str, Any] = {}

    def operations(self) -> list[Operation]:
        """Every route, documented: /openapi.json is written from this list."""
        history, operations, probes = "history", "operations", "probes"
        return [
            Operation(
                "POST",
                "/v1/namespaces/{namespace}/apps/{app}/events",
                self.emit,
                "Emit an event to every subscribed endpoint of the app (RBAC verb emit)",
                request=w.EmitRequest,
                response=w.EmitResult,
                status=202,
                params=(TRACEPARENT,),
                errors=(400, 401, 403, 404, 408, 413, 415, 422, 503),
                tag="ingest",
            ),
            Operation(
                "POST",
                "/v1/namespaces/{namespace}/apps/{app}/events:batch",
                self.emit_batch,
                f"Emit 1 to {ingest.MAX_BATCH_EVENTS} events at once, each checked and stored as"
                " the single route would, with a result per event (RBAC verb emit)",
                request=w.EmitBatchRequest,
                response=w.EmitBatchResult,
                params=(TRACEPARENT,),
                errors=(400, 401, 403, 404, 408, 413, 415, 503),
                tag="ingest",
                description=(
                    "200 whenever the batch itself could be read: `results` holds one entry per"
                    " event, in the order sent, with the status the single route would have"
                    " answered for it (202 accepted, including duplicates; 400, 413 or 422"
                    " refused, with the same reasons; 503 not stored, retry it). One event"
                    " refused never fails the others. The batch as a whole is refused, and"
                    " nothing stored, when it is not an object with an `events` list of 1 to"
                    f" {ingest.MAX_BATCH_EVENTS} events (400 EmptyBatch, TooManyEvents,"
                    " MalformedRequest, MalformedJSON), when its body is over the limit"
                    f" ({ingest.MAX_BATCH_BYTES // 1048576} MiB, each event within the single"
                    " route's limit: 413 TooLarge), and when the database is down"
                    " (503 StoreUnavailable, Retry-After)."
                ),
            ),
            Operation(
                "GET",
                "/v1/namespaces/{namespace}/apps/{app}/deliveries",
                self.app_deliveries,
                "Deliveries of the app, newest first (RBAC verb list)",
                response=w.DeliveryPage,
                params=(*PAGE_PARAMS, Param("endpoint", "Only deliveries to this endpoint")),
                errors=(400, 401, 403, 503),
                tag=history,
            ),
            Operation(
                "GET",
                "/v1/namespaces/{namespace}/apps/{app}/activity",
                self.app_activity,
                "The app's deliveries per hour over the last hours: delivered, and not got"
                " through (RBAC verb list)",
                response=w.Activity,
                params=(_HOURS,),
                errors=(400, 401, 403, 503),
                tag=history,
            ),
            Operation(
                "GET",
                "/v1/namespaces/{namespace}/endpoints/{endpoint}/deliveries",
                self.endpoint_deliveries,
                "Deliveries to one endpoint, newest first (RBAC verb list)",
                response=w.DeliveryPage,
                params=PAGE_PARAMS,
                errors=(400, 401, 403, 404, 503),
                tag=history,
            ),
            Operation(
                "GET",
                "/v1/namespaces/{namespace}/deliveries/{id}",
                self.get_delivery,
                "One delivery with its attempts and payload (RBAC verb get)",
                response=w.DeliveryDetail,
                errors=(400, 401, 403, 404, 503),
                tag=history,
            ),
            Operation(
                "POST",
                "/v1/namespaces/{namespace}/deliveries/{id}/resend",
                self.resend,
                "Deliver the same event to the same endpoint again (RBAC verb update)",
                response=w.ResendResult,
                status=202,
                errors=(400, 401, 403, 404, 503),
                tag=operations,
            ),
            Operation(
                "POST",
                "/v1/namespaces/{namespace}/endpoints/{endpoint}/replay",
                self.replay,
                "Deliver again the endpoint's failed or exhausted deliveries (or those of"
                " `statuses`, such as expired) created since a time, and before another"
                " (RBAC verb update)",
                request=w.ReplayRequest,
                response=w.ReplayResult,
                status=202,
                errors=(400, 401, 403, 404, 413, 415, 422, 503),
                tag=operations,
            ),
            Operation(
                "POST",
                "/v1/namespaces/{namespace}/apps/{app}/replay",
                self.replay_app,
                "Deliver again the failed or exhausted deliveries (or those of `statuses`,"
                " such as expired) of every endpoint of the app created since a time, and"
                " before another (RBAC verb update on the app)",
                request=w.ReplayRequest,
                response=w.AppReplayResult,
                status=202,
                errors=(400, 401, 403, 404, 413, 415, 422, 503),
                tag=operations,
            ),
            Operation(
                "POST",
                "/v1/namespaces/{namespace}/endpoints/{endpoint}/ping",
                self.ping,
                "Send a webhook.ping event to this endpoint only (RBAC verb update)",
                response=w.PingResult,
                status=202,
                errors=(400, 401, 403, 404, 503),
                tag=operations,
            ),
            Operation(
                "POST",
                "/internal/v1/namespaces/{namespace}/endpoints/{endpoint}/notifications",
                self.notify,
                "An operational notification for this endpoint only, stored in its app,"
                " signed and retried like any event (for the operator; RBAC verb emit on the"
                " endpoint's app)",
                request=w.NotificationRequest,
                response=w.NotificationResult,
                status=202,
                errors=(400, 401, 403, 404, 413, 415, 422, 503),
                internal=True,
            ),
            Operation(
                "GET",
                "/internal/v1/endpoint-stats",
                self.endpoint_stats,
                "Endpoints whose delivery state changed since a cursor (for the operator;"
                " RBAC verb list on webhookendpoints)",
                response=w.EndpointStatsList,
                params=(Param("since", "`cursor` of the previous answer; 0 for all"),),
                errors=(400, 401, 403, 503),
                internal=True,
            ),
            Operation("GET", "/openapi.json", self.openapi, "This document", errors=(), tag=probes),
            Operation(
                "GET",
                "/healthz",
                self.healthz,
                "Liveness: the process answers",
                response=w.Probe,
                errors=(),
                tag=probes,
            ),
            Operation(
                "GET",
                "/readyz",
                self.readyz,
                "Readiness: apps and endpoints are loaded from Kubernetes",
                response=w.Probe,
                errors=(503,),
                tag=probes,
            ),
        ]

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[errors], client_max_size=self.svc.settings.max_body + 65536
        )
        operations = self.operations()
        self._document = document(operations)
        openapi.add_routes(app.router, operations)
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
        trace = ingest.trace_context(request.headers.get("traceparent"))
        body = await self._body(request)
        app = self._app(namespace, app_name)
        submitted = replace(ingest.check_event(app, body), traceparent=trace)
        result = await self.svc.accept(namespace, app, submitted)
        return respond(w.EmitResult.model_validate(result), status=202)

    async def emit_batch(self, request: web.Request) -> web.Response:
        namespace, app_name = _name(request, "namespace"), _name(request, "app")
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "emit", namespace, app_name
        )
        settings = self.svc.settings
        # One trace context for the batch: the producer's span that sent it.
        trace = ingest.trace_context(request.headers.get("traceparent"))
        body = await inputs.read_body(
            request, ingest.batch_limit(settings.max_body), settings.body_timeout
        )
        app = self._app(namespace, app_name)
        checked = [
            replace(c, traceparent=trace) if isinstance(c, ingest.Submitted) else c
            for c in ingest.check_batch(app, body, settings.max_body)
        ]
        results = await self._accept_batch(namespace, app, checked)
        accepted = sum(r.status == 202 for r in results)
        answer = w.EmitBatchResult(
            accepted=accepted, failed=len(results) - accepted, results=results
        )
        return web.Response(
            body=answer.model_dump_json(exclude_none=True),
            content_type="application/json",
            headers={"Retry-After": RETRY_AFTER} if any(r.status == 503 for r in results) else None,
        )

    async def _accept_batch(
        self, namespace: str, app: AppConfig, checked: list[ingest.Submitted | ingest.IngestError]
    ) -> list[w.EmitBatchItem]:
        """Every valid event through the single route's path at once: the ingest batcher
        stores them in as few commits as the store allows, in this order (a repeated id is
        a duplicate of its first use), and answers each one alone."""
        valid = [(i, c) for i, c in enumerate(checked) if isinstance(c, ingest.Submitted)]
        outcomes = await asyncio.gather(
            *(self.svc.accept(namespace, app, submitted) for _, submitted in valid),
            return_exceptions=True,
        )
        stored = any(isinstance(o, dict) for o in outcomes)
        for outcome in outcomes:
            if store_unavailable(outcome) and not stored:
                raise outcome  # nothing was stored: 503 for the whole batch, send it all again
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled
        stored_as = {index: o for (index, _), o in zip(valid, outcomes, strict=True)}
        return [
            _batch_item(i, stored_as[i] if isinstance(c, ingest.Submitted) else c)
            for i, c in enumerate(checked)
        ]

    def _app(self, namespace: str, app_name: str) -> AppConfig:
        app = self.svc.registry.apps.get((namespace, app_name))
        if app is None:
            raise ApiError(
                404, "AppNotFound", f"WebhookApp {app_name} does not exist in namespace {namespace}"
            )
        return app

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
        return respond(wire.page(rows, cursor))

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
                event_types=_event_types(request),
                cursor=_cursor(request),
                limit=_limit(request),
            )
        )

    async def app_activity(self, request: web.Request) -> web.Response:
        namespace, app = _name(request, "namespace"), _name(request, "app")
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "list", namespace, app
        )
        hours = inputs.whole_number(
            request.query.get("hours", "24"), "hours", 1, w.MAX_ACTIVITY_HOURS, "BadHours"
        )
        now = time.time()
        since = activity_window(now, hours)
        buckets = await self.svc.store.activity(namespace, app, since, now, HOUR)
        return respond(wire.activity(since, HOUR, buckets))

    async def endpoint_deliveries(self, request: web.Request) -> web.Response:
        namespace, endpoint, _ = await self._endpoint_app(request, "list")
        return await self._page(
            DeliveryQuery(
                namespace=namespace,
                endpoint=endpoint,
                statuses=_statuses(request),
                event_types=_event_types(request),
                cursor=_cursor(request),
                limit=_limit(request),
            )
        )

    async def _delivery(self, request: web.Request, verb: str) -> DeliveryDetail:
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
        return respond(wire.detail(found))

    # -- operations ------------------------------------------------------------------------

    async def resend(self, request: web.Request) -> web.Response:
        found = await self._delivery(request, "update")
        now = time.time()
        new_id = await self.svc.store.resend(
            found.delivery.namespace, found.delivery.id, now, ids.delivery_id(now)
        )
        if new_id is None:  # deleted (purged) since it was read
            raise ApiError(404, "DeliveryNotFound", f"no delivery {found.delivery.id} any more")
        self.svc.dispatcher.wake()
        return respond(w.ResendResult(delivery_id=new_id), status=202)

    async def replay(self, request: web.Request) -> web.Response:
        namespace, endpoint, _ = await self._endpoint_app(request, "update")
        counts = await self._replay(namespace, [endpoint], await self._body(request))
        return respond(w.ReplayResult(replayed=counts[endpoint]), status=202)

    async def replay_app(self, request: web.Request) -> web.Response:
        namespace, app_name = _name(request, "namespace"), _name(request, "app")
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "update", namespace, app_name
        )
        self._app(namespace, app_name)  # 404 AppNotFound
        endpoints = sorted(
            name
            for (ns, name), config in self.svc.registry.endpoints.items()
            if ns == namespace and config.app == app_name
        )
        counts = await self._replay(namespace, endpoints, await self._body(request))
        result = w.AppReplayResult(replayed=sum(counts.values()), endpoints=counts)
        return respond(result, status=202)

    async def _replay(self, namespace: str, endpoints: list[str], raw: bytes) -> dict[str, int]:
        """The replay body applied to each endpoint: how many deliveries each made anew."""
        body = replay_request(raw)
        statuses = tuple(body.statuses) if body.statuses else REPLAYABLE
        until = body.until.timestamp() if body.until is not None else None
        now = time.time()
        counts = {
            name: await self.svc.store.replay(
                namespace, name, body.since.timestamp(), now, statuses, until=until
            )
            for name in endpoints
        }
        self.svc.dispatcher.wake()
        return counts

    async def ping(self, request: web.Request) -> web.Response:
        namespace, endpoint, app = await self._endpoint_app(request, "update")
        sent = await self.svc.addressed.ping(namespace, endpoint, app)
        assert sent.delivery_id is not None  # a ping has no idempotency key
        return respond(
            w.PingResult(event_id=sent.event_id, delivery_id=sent.delivery_id, held=sent.held),
            status=202,
        )

    async def notify(self, request: web.Request) -> web.Response:
        # The RBAC verb emit on the endpoint's app: the operator's role has it for every app.
        namespace, endpoint, app = await self._endpoint_app(request, "emit")
        raw = await self._body(request)
        ingest.parse_object(raw, '{"type": "...", "id": "...", "data": {}}')
        try:
            note = w.NotificationRequest.model_validate_json(raw)
        except ValidationError as exc:
            problems = exc.errors(include_url=False, include_input=False)
            raise ApiError(422, "Invalid", inputs.describe(problems)) from None
        sent = await self.svc.addressed.send(
            namespace, endpoint, app, note.type.value, note.data, note.id
        )
        return respond(
            w.NotificationResult(
                event_id=sent.event_id,
                delivery_id=sent.delivery_id,
                held=sent.held,
                duplicate=sent.duplicate,
            ),
            status=202,
        )

    # -- operator, probes, metrics ---------------------------------------------------------

    async def endpoint_stats(self, request: web.Request) -> web.Response:
        await self.svc.authorizer.require(
            request.headers.get("Authorization"), "list", None, None, resource="webhookendpoints"
        )
        raw = request.query.get("since", "") or "0"
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise ApiError(400, "BadCursor", "since must be a cursor returned by this endpoint")
        states, cursor = await self.svc.store.stats_since(int(raw), time.time())
        return respond(
            w.EndpointStatsList(
                cursor=str(cursor), endpoints=[wire.endpoint_stats(s, "24h") for s in states]
            )
        )

    async def openapi(self, _: web.Request) -> web.Response:
        return web.json_response(self._document)

    async def healthz(self, _: web.Request) -> web.Response:
        return respond(w.Probe(status="ok"))

    async def readyz(self, _: web.Request) -> web.Response:
        if not self.svc.ready():
            return error_response(
                503, "NotReady", "still loading apps and endpoints from Kubernetes"
            )
        return respond(w.Probe(status="ready"))


def document(operations: list[Operation]) -> dict[str, Any]:
    """The OpenAPI document of these operations, with the bearer scheme every call uses."""
    doc = openapi.document(TITLE, __version__, DESCRIPTION, operations)
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    doc["security"] = [{"bearer": []}]
    for path in ("/openapi.json", "/healthz", "/readyz"):
        for entry in doc["paths"][path].values():
            entry["security"] = []  # probes and the document need no token
    return doc


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """The metrics listener: Prometheus text, nothing else."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application(middlewares=[errors])
    app.router.add_get("/metrics", metrics)
    return app
