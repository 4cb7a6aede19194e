"""The delivery service process: watches configuration, serves the HTTP API and runs the
dispatcher, in one event loop. Kubernetes is only read (plus TokenReviews and
SubjectAccessReviews); events, deliveries and attempts live in the store."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from webhook_operator.api.names import K8S_MANAGED_BY, MANAGER
from webhook_operator.delivery import ingest
from webhook_operator.delivery.addressed import AddressedEvents
from webhook_operator.delivery.api import Routes, metrics_app
from webhook_operator.delivery.dispatcher import Dispatcher, DispatcherSettings
from webhook_operator.delivery.egress_proxy import EgressProxy
from webhook_operator.delivery.endpoint_states import EndpointStates
from webhook_operator.delivery.hold_expiry import HoldExpiry
from webhook_operator.delivery.ingest_batcher import IngestBatcher
from webhook_operator.delivery.metrics import Metrics
from webhook_operator.delivery.registry import AppConfig, EndpointConfig, Registry
from webhook_operator.delivery.sender import Sender
from webhook_operator.event_filter import Verdict
from webhook_operator.kube_auth import Authorizer
from webhook_operator.kube_informer import Informer, of_custom_objects, of_secrets
from webhook_operator.kube_rest import KubeApiError, KubeRest, connect
from webhook_operator.store.base import DeliveryStatus, Store
from webhook_operator.store.factory import open_store
from webhook_operator.url_policy import AddressPolicy

log = logging.getLogger(__name__)
GENERATED_SECRETS = f"{K8S_MANAGED_BY}={MANAGER}"
HELD = DeliveryStatus.HELD


@dataclass
class ServiceSettings:
    store_url: str = "sqlite:///webhook-operator.db"
    kubeconfig: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    allow_cidrs: tuple[str, ...] = ()
    # HTTPS_PROXY / HTTP_PROXY / NO_PROXY, read once by the CLI (None: connect directly).
    proxy: EgressProxy | None = None
    max_body: int = 256 * 1024
    # /metrics names every tenant's namespaces, apps and endpoints: it has its own listener
    # (port None: not served), which NetworkPolicy or the Service can keep to Prometheus.
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = 9090
    # A client that has not finished its request headers this long after connecting (or
    # after its previous response) is disconnected; so is one idle that long.
    header_timeout: float = 15.0
    body_timeout: float = 30.0
    retention_seconds: float = 30 * 86400.0
    user_secret_refresh: float = 10.0
    # The claim owner: unique to this process, not stable across restarts, and it need not
    # be: the store proves an owner gone (see store/base.py). The random part keeps two
    # hosts with one hostname (and pid 1 in containers) from sharing a name.
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
    )
    dispatcher: DispatcherSettings | None = None
    shutdown_timeout: float = 20.0


class Service:
    def __init__(self, settings: ServiceSettings, store: Store, api: KubeRest) -> None:
        self.settings = settings
        self.store = store
        self.api = api
        self.metrics = Metrics()
        self.registry = Registry(listener=self)
        self.authorizer = Authorizer(api)
        self.sender = Sender(AddressPolicy.from_strings(settings.allow_cidrs), settings.proxy)
        if settings.proxy is not None:
            log.info("%s", settings.proxy.describe())
        # The one place that knows which endpoints are disabled (the store's truth, shared
        # by every replica): ingest, ping and the dispatcher ask it.
        self.states = EndpointStates(store, self.registry, self.metrics)
        self.dispatcher = Dispatcher(
            store,
            self.registry,
            self.sender,
            self.metrics,
            settings.dispatcher or DispatcherSettings(owner=settings.owner),
            self.states,
        )
        self.states.released = self.dispatcher.wake
        # Ping and operational notifications: events for one named endpoint.
        self.addressed = AddressedEvents(store, self.states, self.dispatcher.wake)
        self.ingest = IngestBatcher(store, observe=self.metrics.ingest_batch.observe)
        self.hold_expiry = HoldExpiry(store, self.registry, self.metrics)
        self.informers: list[Informer] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._user_secrets_wanted = asyncio.Event()
        # What _filtered has logged per endpoint: (filter source, verdict) pairs.
        self._filter_logged: dict[tuple[str, str], set[tuple[str, Verdict]]] = {}

    # -- ingest ----------------------------------------------------------------------------

    async def accept(
        self, namespace: str, app: AppConfig, submitted: ingest.Submitted
    ) -> dict[str, Any]:
        now = time.time()
        subscribers = self.registry.subscribers(namespace, app.name, submitted.type)
        event, deliveries = ingest.build(
            namespace, app, submitted, subscribers, self.states.holds_config, now, self._filtered
        )
        event_id, count, duplicate = await self.ingest.submit(event, deliveries)
        if not duplicate:
            self.metrics.events.labels(namespace, app.name).inc()
            self.dispatcher.wake()
            held = [(namespace, d.endpoint) for d in deliveries if d.status is HELD]
            if held:
                await self.states.held(held)
        return {"eventId": event_id, "deliveries": count, "duplicate": duplicate}

    def _filtered(self, endpoint: EndpointConfig, verdict: Verdict) -> None:
        """An event left out because of the endpoint's filter itself: counted every time,
        logged once per filter and reason (a filter that fails on every event would
        otherwise log every event). Never the payload: it is the producer's data."""
        self.metrics.count(
            self.metrics.filter_errors, endpoint.namespace, endpoint.name, verdict.value
        )
        assert endpoint.filter is not None
        said = self._filter_logged.setdefault((endpoint.namespace, endpoint.name), set())
        if (endpoint.filter.source, verdict) in said:
            return
        said.add((endpoint.filter.source, verdict))
        if verdict is Verdict.INVALID:
            why = f"does not compile ({endpoint.filter.error})"
        elif verdict is Verdict.NOT_BOOL:
            why = "answered something other than a bool"
        else:
            why = "failed on an event (a missing field or a type mismatch)"
        log.info(
            "endpoint %s/%s: its filter %s; such events are not delivered to it and are"
            " counted in webhook_filter_errors_total{reason=%r} (logged once)",
            endpoint.namespace,
            endpoint.name,
            why,
            verdict.value,
        )

    # -- configuration changes (Registry listener) ----------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def endpoint_changed(self, old: EndpointConfig | None, new: EndpointConfig | None) -> None:
        if new is None:
            if old is not None:
                key = (old.namespace, old.name)
                self.dispatcher.forget_endpoint(key)
                self._filter_logged.pop(key, None)
                self._spawn(self.states.forget(key))
                self._spawn(self.store.cancel_endpoint(old.namespace, old.name, time.time()))
            return
        key = (new.namespace, new.name)
        if new.referenced_secrets() - (old.referenced_secrets() if old else set()):
            self._user_secrets_wanted.set()
        # A new `enable` value is checked against the store, whatever this replica's copy
        # says (another replica may have disabled the endpoint a moment ago); one seen in
        # the first listing only for endpoints known disabled (one read each, not one per
        # endpoint). The store says whether the value was acted on already.
        token = new.enable_token
        if token is not None and (
            (old is not None and token != old.enable_token)
            or (old is None and self.states.disabled(key) is not None)
        ):
            self._spawn(self._enable_or_resume(old, new))
        elif old is not None and not old.active and new.active and not self.states.holds(key):
            self._spawn(self.states.release(key))

    async def _enable_or_resume(self, old: EndpointConfig | None, new: EndpointConfig) -> None:
        key = (new.namespace, new.name)
        if await self.states.enable(new):
            return
        if old is not None and not old.active and new.active and not self.states.holds(key):
            await self.states.release(key)

    # -- background loops ------------------------------------------------------------------

    async def _refresh_user_secrets(self) -> None:
        while True:
            for namespace, name in sorted(self.registry.user_secrets()):
                try:
                    secret = await self.api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
                    self.registry.on_secret("MODIFIED", secret)
                except KubeApiError as exc:
                    if exc.status == 404:
                        self.registry.on_secret(
                            "DELETED", {"metadata": {"namespace": namespace, "name": name}}
                        )
                    else:
                        log.warning("reading Secret %s/%s: %s", namespace, name, exc)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("reading Secret %s/%s: %r", namespace, name, exc)
            self._user_secrets_wanted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._user_secrets_wanted.wait(), self.settings.user_secret_refresh
                )

    async def _gauges(self) -> None:
        while True:
            stats = await self.store.queue_stats(time.time())
            self.metrics.queue_due.set(stats.due)
            self.metrics.queue_scheduled.set(stats.scheduled)
            self.metrics.oldest_due.set(stats.oldest_due_age)
            self.metrics.held.set(stats.held)
            await asyncio.sleep(5)

    async def _purge(self) -> None:
        while True:
            try:
                deleted = await self.store.purge(time.time() - self.settings.retention_seconds)
            except Exception as exc:  # the store is down: the next hour's run catches up
                log.warning("purging old events failed, trying again in an hour: %s", exc)
            else:
                if deleted:
                    log.info("purged %d events older than the retention period", deleted)
            await asyncio.sleep(3600)

    async def _cancel_for_deleted_endpoints(self) -> None:
        """Endpoints deleted while this service was down never sent their deletion through
        the watch; their queued deliveries are cancelled once the first listing is in."""
        await self.states.forget_missing(self.registry.endpoints)
        for namespace, endpoint in await self.store.endpoints_with_open_deliveries():
            if (namespace, endpoint) not in self.registry.endpoints:
                cancelled = await self.store.cancel_endpoint(namespace, endpoint, time.time())
                log.info(
                    "cancelled %d deliveries of deleted endpoint %s/%s",
                    cancelled,
                    namespace,
                    endpoint,
                )

    async def _listen(self, app: web.Application, host: str, port: int) -> web.AppRunner:
        # aiohttp closes a connection whose handler is still waiting for a whole request
        # when the keep-alive timer fires: that timer is the header timeout.
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.settings.header_timeout)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

    def ready(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    def _informers(self) -> list[Informer]:
        return [
            of_custom_objects(self.api, "webhookapps", self.registry.on_app),
            of_custom_objects(self.api, "webhookendpoints", self.registry.on_endpoint),
            of_secrets(self.api, GENERATED_SECRETS, self.registry.on_secret),
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await self.states.load()
        self.informers = self._informers()
        # Apps before endpoints, so endpoint configs see their app's defaults at once.
        watch_tasks = [asyncio.create_task(i.run()) for i in self.informers]
        for informer in self.informers:
            await informer.synced.wait()
        await self._cancel_for_deleted_endpoints()
        runner = await self._listen(Routes(self).app(), self.settings.host, self.settings.port)
        log.info("delivery service listening on %s:%d", self.settings.host, self.settings.port)
        metrics_runner = None
        if self.settings.metrics_port is not None:
            metrics_runner = await self._listen(
                metrics_app(self.metrics.registry),
                self.settings.metrics_host,
                self.settings.metrics_port,
            )
            log.info(
                "metrics on %s:%d/metrics",
                self.settings.metrics_host,
                _bound_port(metrics_runner) or self.settings.metrics_port,
            )
        loops = [
            asyncio.create_task(self.dispatcher.run()),
            asyncio.create_task(self.states.run()),
            asyncio.create_task(self._refresh_user_secrets()),
            asyncio.create_task(self._gauges()),
            asyncio.create_task(self._purge()),
            asyncio.create_task(self.hold_expiry.run()),
        ]
        settle_garbage_collector()
        try:
            await stop.wait()
        finally:
            log.info("stopping: finishing attempts in flight")
            await self.dispatcher.drain(self.settings.shutdown_timeout)
            for task in [*loops, *watch_tasks, *self._background]:
                task.cancel()
            for task in [*loops, *watch_tasks]:
                with contextlib.suppress(BaseException):
                    await task
            await runner.cleanup()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            await self.ingest.close()
            await self.sender.close()


def settle_garbage_collector() -> None:
    """Move everything made so far (modules, code, models: tens of MB of objects that live
    as long as the process) out of the cyclic collector's sight. A full collection over
    them took about 45 ms on this machine, an event-loop pause that every delivery and
    ingest request in flight waited out: the latency tail (docs/benchmarks.md). Objects
    made from now on are collected as before."""
    gc.collect()
    gc.freeze()


def _bound_port(runner: web.AppRunner) -> int | None:
    """The port actually bound (port 0 asks the system for a free one)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or ():
            return int(sock.getsockname()[1])
    return None


async def serve(settings: ServiceSettings) -> None:
    import signal

    api = connect(settings.kubeconfig)
    store = open_store(settings.store_url)
    await store.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Service(settings, store, api).run(stop)
    finally:
        await store.close()
        await api.close()
