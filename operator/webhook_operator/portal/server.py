"""The portal process: builds the pieces, serves the API, keeps the watches and the ticket
key fresh, and stops cleanly. Nothing here handles a request itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client

from webhook_operator import __version__, kube_rest
from webhook_operator.api.delivery_wire import Probe
from webhook_operator.http_api import openapi
from webhook_operator.http_api.errors import error_response, middleware
from webhook_operator.http_api.wire import respond
from webhook_operator.kube_auth import Authorizer
from webhook_operator.kube_client import connect
from webhook_operator.kube_informer import of_custom_objects
from webhook_operator.kube_rest import KubeRest
from webhook_operator.portal import deliveries_api, endpoints_api, overview_api, tickets_api
from webhook_operator.portal.context import Portal
from webhook_operator.portal.delivery_client import DeliveryClient
from webhook_operator.portal.directory import Directory
from webhook_operator.portal.settings import PortalSettings
from webhook_operator.portal.tenant import RequestBudget, TenantAuth
from webhook_operator.portal.ticket_keys import TicketKeys
from webhook_operator.portal.web import routes as web_pages
from webhook_operator.url_policy import AddressPolicy

log = logging.getLogger(__name__)
TITLE = "webhook-operator portal"
DESCRIPTION = (
    "Access tickets for the platform's backend, and the tenant API under /v1/portal/ for"
    " its customers: endpoints, secrets, tests, deliveries and replay of one WebhookApp,"
    " authenticated by `Authorization: Bearer <ticket>`."
)


def build(settings: PortalSettings, api: client.ApiClient, rest: KubeRest) -> Portal:
    directory = Directory()
    keys = TicketKeys(api, settings.key_namespace, settings.key_secret)
    return Portal(
        settings=settings,
        api=api,
        rest=rest,
        directory=directory,
        keys=keys,
        authorizer=Authorizer(rest),
        delivery=DeliveryClient(settings.delivery_url, api),
        tenant=TenantAuth(keys, directory, RequestBudget(settings.ticket_rate)),
        addresses=AddressPolicy.from_strings(settings.allow_cidrs),
    )


def operations(portal: Portal) -> list[openapi.Operation]:
    return [
        *tickets_api.operations(portal),
        *endpoints_api.operations(portal),
        *deliveries_api.operations(portal),
        *overview_api.operations(portal),
        *web_pages.operations(portal),
    ]


class Server:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.informers = [
            of_custom_objects(portal.rest, "webhookapps", portal.directory.on_app),
            of_custom_objects(portal.rest, "webhookendpoints", portal.directory.on_endpoint),
        ]

    def ready(self) -> bool:
        return self.portal.keys.ready and all(i.synced.is_set() for i in self.informers)

    def app(self) -> web.Application:
        settings = self.portal.settings
        app = web.Application(
            middlewares=[middleware(server="the portal")],
            client_max_size=settings.max_body + 65536,
        )
        ops = operations(self.portal)
        document: dict[str, Any] = {}

        async def openapi_json(_: web.Request) -> web.Response:
            return web.json_response(document)

        async def healthz(_: web.Request) -> web.Response:
            return respond(Probe(status="ok"))

        async def readyz(_: web.Request) -> web.Response:
            if not self.ready():
                return error_response(
                    503, "NotReady", "still loading apps, endpoints and the ticket key"
                )
            return respond(Probe(status="ready"))

        probes = "probes"
        ops += [
            openapi.Operation(
                "GET", "/openapi.json", openapi_json, "This document", errors=(), tag=probes
            ),
            openapi.Operation(
                "GET",
                "/healthz",
                healthz,
                "Liveness: the process answers",
                response=Probe,
                errors=(),
                tag=probes,
            ),
            openapi.Operation(
                "GET",
                "/readyz",
                readyz,
                "Readiness: apps, endpoints and the ticket key are loaded",
                response=Probe,
                errors=(503,),
                tag=probes,
            ),
        ]
        document.update(openapi.document(TITLE, __version__, DESCRIPTION, ops))
        openapi.add_routes(app.router, ops)
        return app

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.portal.settings
        watches = [asyncio.create_task(i.run()) for i in self.informers]
        keys = asyncio.create_task(self._keys())
        # aiohttp closes a connection still waiting for a whole request when the keep-alive
        # timer fires: that timer is the header timeout. No access log: URLs are harmless,
        # but the habit of never logging requests keeps tickets out of logs for good.
        runner = web.AppRunner(
            self.app(), access_log=None, keepalive_timeout=settings.header_timeout
        )
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("portal listening on %s:%d", settings.host, settings.port)
        try:
            await stop.wait()
        finally:
            for task in [*watches, keys]:
                task.cancel()
            for task in [*watches, keys]:
                with contextlib.suppress(BaseException):
                    await task
            await runner.cleanup()
            await self.portal.delivery.close()

    async def _keys(self) -> None:
        keys = self.portal.keys
        while not keys.ready:
            try:
                await keys.load()
            except Exception as exc:
                log.warning("cannot read or create the ticket key Secret yet: %r", exc)
                await asyncio.sleep(2.0)
        await keys.run()


async def serve(settings: PortalSettings) -> None:
    api = await connect(settings.kubeconfig)
    # Reviews and watches through the small client (as the delivery service); writes of
    # endpoints and Secrets through the generated one.
    rest = kube_rest.connect(settings.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await Server(build(settings, api, rest)).run(stop)
    finally:
        await rest.close()
        await api.close()
