"""Run the controller: wait for the Lease, then run kopf's watches, the reconcile workers
and the status writer in one event loop, with liveness/readiness probes throughout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from webhook_operator.controller import delivery_results, handlers, kube
from webhook_operator.controller.context import Context, ObjKey
from webhook_operator.controller.leader import LeaderElector, LostLeadership
from webhook_operator.controller.login import login_in_cluster
from webhook_operator.controller.operational import HttpNotifier
from webhook_operator.controller.reconcile_app import reconcile_app
from webhook_operator.controller.reconcile_endpoint import reconcile_endpoint
from webhook_operator.controller.status_writer import StatusWriter
from webhook_operator.kube_rest import connect

log = logging.getLogger(__name__)


def default_identity(environ: Mapping[str, str]) -> str:
    """Who holds the Lease: the Pod's name (POD_NAME, set by the chart from the downward
    API), unique even for host-network Pods that share the node's hostname; elsewhere the
    hostname and process id."""
    return environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ControllerSettings:
    kubeconfig: str | None = None
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    lease_namespace: str = "default"
    lease_name: str = "webhook-operator"
    identity: str = field(default_factory=lambda: default_identity(os.environ))
    lease_duration: int = 15
    probe_host: str = "0.0.0.0"
    probe_port: int = 8081
    # Reconciles wait on the API, not the CPU: enough of them to keep requests in flight.
    workers: int = 16
    status_interval: float = 10.0
    delivery_url: str | None = None  # the delivery service, for delivery results
    delivery_poll_interval: float = 1.0


async def reconcile_one(ctx: Context, key: ObjKey) -> None:
    kind, namespace, name = key
    try:
        if kind == "endpoint":
            requeue = await reconcile_endpoint(ctx, namespace, name)
        else:
            requeue = await reconcile_app(ctx, namespace, name)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        delay = ctx.queue.retry(key)
        log.warning(
            "reconcile %s %s/%s failed, retrying in %.1fs: %s", kind, namespace, name, delay, exc
        )
        return
    ctx.queue.forget(key)
    if requeue is not None:
        ctx.queue.add(key, requeue)


async def worker(ctx: Context) -> None:
    while True:
        key = await ctx.queue.get()
        try:
            await reconcile_one(ctx, key)
        finally:
            ctx.queue.done(key)


def build_registry(ctx: Context) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Reconnect watches well before load balancers cut idle connections.
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.reconnect_backoff = 1.0
        # A stopped apiserver must not hold a call for kopf's default of minutes.
        settings.watching.connect_timeout = 5
        settings.networking.connect_timeout = 5
        settings.networking.request_timeout = 30
        # Our own Events say what happened; kopf's per-handler Events would be noise.
        settings.posting.enabled = False

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            return login_in_cluster(trust_env=settings.networking.trust_env)
        return kopf.login_with_kubeconfig(settings=settings, **kwargs)

    handlers.register(registry, ctx)
    return registry


async def _probes(settings: ControllerSettings, role: dict[str, str]) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": role["role"]})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    # A standby is ready too: it is doing its job (waiting), and a rollout of two replicas
    # must not stall on it.
    app.router.add_get("/readyz", healthz)
    # The keep-alive timer closes connections that never finish a request (header timeout).
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=15.0)
    await runner.setup()
    await web.TCPSite(runner, settings.probe_host, settings.probe_port).start()
    return runner


async def run(settings: ControllerSettings) -> int:
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig
    api = connect(settings.kubeconfig)
    k = kube.Kube(api)
    role = {"role": "standby"}
    probes = await _probes(settings, role)
    elector = LeaderElector(
        k,
        settings.lease_namespace,
        settings.lease_name,
        settings.identity,
        duration=settings.lease_duration,
        renew_every=max(settings.lease_duration / 3, 1.0),
    )
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    try:
        await elector.acquire()
    except asyncio.CancelledError:
        await probes.cleanup()
        await api.close()
        return 0
    role["role"] = "leader"
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)

    ctx = Context(kube=k, writer=StatusWriter(k.patch_status, settings.status_interval))
    registry = build_registry(ctx)
    tasks = [asyncio.create_task(worker(ctx)) for _ in range(settings.workers)]
    if settings.delivery_url:
        notifier = HttpNotifier(settings.delivery_url, lambda: delivery_results.bearer_headers(ctx))
        ctx.notifier = notifier
        tasks.append(
            asyncio.create_task(
                delivery_results.poll(ctx, settings.delivery_url, settings.delivery_poll_interval)
            )
        )
    keeper = asyncio.create_task(elector.keep())
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
        )
    )
    code = 0
    try:
        done, _ = await asyncio.wait({keeper, operator}, return_when=asyncio.FIRST_COMPLETED)
        if keeper in done and isinstance(keeper.exception(), LostLeadership):
            log.error("%s; stopping", keeper.exception())
            code = 1
    finally:
        for task in [*tasks, keeper, operator]:
            task.cancel()
        for task in [*tasks, keeper, operator]:
            with contextlib.suppress(BaseException):
                await task
        await k.flush_events()
        if isinstance(ctx.notifier, HttpNotifier):
            await ctx.notifier.close()
        if code == 0:
            await elector.release()
        await probes.cleanup()
        await api.close()
    return code
