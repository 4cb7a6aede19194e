"""Deliveries through an egress proxy (HTTPS_PROXY / HTTP_PROXY / NO_PROXY): HTTP CONNECT
tunnels to a small proxy on 127.0.0.1 started by the tests, TLS to the receiver inside the
tunnel, the SSRF policy applied to the target before the proxy is asked anything.

First the client (delivery/http1.py behind delivery/sender.py) on asyncio's loop and on
uvloop, no cluster needed; then the real delivery service, configured by its environment,
against the real control plane. Only loopback addresses are ever contacted: the proxy
itself refuses to open a tunnel anywhere else. NO_PROXY matching and proxy URL parsing are
tested as pure functions in tests/unit/test_egress_proxy.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Producer, eventually
from tests.harness import Receiver as HarnessReceiver
from webhook_operator.delivery.egress_proxy import EgressProxy, parse_no_proxy, parse_proxy_url
from webhook_operator.delivery.http1 import ConnectionPool, TLSChoice
from webhook_operator.delivery.sender import USER_AGENT, GuardedResolver, Sender, SendResult
from webhook_operator.tls_context import TLSMaterial, client_context
from webhook_operator.url_policy import AddressPolicy

LOOPBACK_ONLY = AddressPolicy.from_strings(["127.0.0.1/32"])
LIMIT = 5.0
USER, PASSWORD = "deliveries", "s3cret:with/odd@chars"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
QUOTED = "deliveries:s3cret%3Awith%2Fodd%40chars"  # the same credentials, in a URL

Run = Callable[[Coroutine[Any, Any, None]], None]
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    def run(scenario: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            runner.run(scenario)

    return run


# --- the proxy ----------------------------------------------------------------------------


@dataclass
class ConnectProxy:
    """A CONNECT proxy on 127.0.0.1. Records every CONNECT (its authority and
    Proxy-Authorization); answers 407 without the expected credentials when `auth` is set,
    `refuse[port]` for CONNECTs to that port, and opens tunnels only to loopback IP
    literals (403 for anything else, names included: the client must send the address it
    checked)."""

    auth: str | None = None
    refuse: dict[int, tuple[int, str]] = field(default_factory=dict)
    connects: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    tunnels: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.split("\r\n")
        method, authority, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        self.connects.append(authority)
        self.authorizations.append(headers.get("proxy-authorization"))
        host, _, port = authority.rpartition(":")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if method != "CONNECT":
            await self._answer(writer, 405, "Method Not Allowed")
        elif self.auth is not None and headers.get("proxy-authorization") != self.auth:
            await self._answer(
                writer, 407, "Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="t"'
            )
        elif int(port) in self.refuse:
            await self._answer(writer, *self.refuse[int(port)])
        elif address is None or not address.is_loopback:
            await self._answer(writer, 403, "Forbidden")
        else:
            try:
                up_reader, up_writer = await asyncio.open_connection(str(address), int(port))
            except OSError:
                await self._answer(writer, 502, "Bad Gateway")
                return
            self.tunnels += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, reason: str, *extra: str) -> None:
        lines = [f"HTTP/1.1 {status} {reason}", *extra, "Content-Length: 0", "Connection: close"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class ThreadedProxy:
    """A ConnectProxy on an event loop of its own, for tests that are not coroutines."""

    def __init__(self, proxy: ConnectProxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)
        return self.proxy

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# --- receivers and certificates -------------------------------------------------------------


@dataclass
class Receiver:
    """An aiohttp receiver on 127.0.0.1 recording each request's Host header, body and the
    SNI name of its TLS connection."""

    ssl_context: ssl.SSLContext | None = None
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    port: int = 0

    async def __aenter__(self) -> Self:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append((request.headers.get("Host", ""), await request.read()))
            return web.Response(text="ok")

        if self.ssl_context is not None:

            def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
                self.server_names.append(name)

            self.ssl_context.sni_callback = sni  # type: ignore[assignment]
        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def url(self, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}/hook"


@dataclass(frozen=True)
class Certs:
    ca_pem: str
    chain: Path  # for localhost and 127.0.0.1, issued by the CA

    def server(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.chain)
        return context

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("proxy-tls")
    now = dt.datetime.now(dt.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("egress-proxy-test-ca"))
        .issuer_name(name("egress-proxy-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = directory / "localhost.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certs(ca.public_bytes(serialization.Encoding.PEM).decode(), chain)


@contextlib.asynccontextmanager
async def sending(
    proxy: EgressProxy,
    policy: AddressPolicy = LOOPBACK_ONLY,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Sender]:
    sender = Sender(policy, proxy)
    if ssl_context is not None:
        sender.pool = ConnectionPool(GuardedResolver(policy), USER_AGENT, ssl_context, proxy=proxy)
    try:
        yield sender
    finally:
        await sender.close()


def through(proxy: ConnectProxy, credentials: str = "", no_proxy: str = "") -> EgressProxy:
    url = parse_proxy_url(
        f"http://{credentials + '@' if credentials else ''}127.0.0.1:{proxy.port}"
    )
    return EgressProxy(https=url, http=url, no_proxy=parse_no_proxy(no_proxy))


async def send(sender: Sender, url: str, body: bytes = b'{"type":"invoice.paid"}') -> SendResult:
    return await sender.send(url, True, body, {"webhook-id": "msg_1"}, LIMIT)


def ok(result: SendResult) -> None:
    assert result.error is None, result
    assert result.http_status == 200, result


# --- the client ---------------------------------------------------------------------------


def test_http_delivery_goes_through_a_connect_tunnel_and_keeps_it(run: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy() as proxy, Receiver() as rx, sending(through(proxy)) as sender:
            for n in range(3):
                ok(await send(sender, rx.url(), b'{"n":%d}' % n))
            assert proxy.connects == [f"127.0.0.1:{rx.port}"]  # one tunnel, kept alive
            assert proxy.tunnels == 1
            assert proxy.authorizations == [None]
            # Sent as to the receiver itself: origin-form request line, its own Host.
            assert rx.requests == [(f"127.0.0.1:{rx.port}", b'{"n":%d}' % n) for n in range(3)]

    run(scenario())


def test_https_runs_tls_inside_the_tunnel_with_the_host_name(run: Run, certs: Certs) -> None:
    async def scenario() -> None:
        async with (
            ConnectProxy() as proxy,
            Receiver(ssl_context=certs.server()) as rx,
            sending(through(proxy), ssl_context=certs.client()) as sender,
        ):
            ok(await send(sender, rx.url("localhost", "https")))
            ok(await send(sender, rx.url("localhost", "https")))
            # localhost resolved and checked by the policy (its ::1 refused); the proxy is
            # given the checked address, the receiver the name: SNI, certificate, Host.
            assert proxy.connects == [f"127.0.0.1:{rx.port}"]
            assert rx.server_names == ["localhost"]
            assert [host for host, _ in rx.requests] == [f"localhost:{rx.port}"] * 2

    run(scenario())


def test_certificate_is_checked_for_the_target_not_the_proxy(run: Run, certs: Certs) -> None:
    async def scenario() -> None:
        async with (
            ConnectProxy() as proxy,
            Receiver(ssl_context=certs.server()) as rx,
            sending(through(proxy)) as sender,  # the system's trust store: no test CA
        ):
            result = await send(sender, rx.url("localhost", "https"))
            assert result.http_status is None
            assert result.error is not None
            assert result.error.startswith("TLS certificate not trusted"), result
            assert proxy.tunnels == 1
            assert rx.requests == []

    run(scenario())


def test_an_endpoints_own_tls_context_is_used_inside_the_tunnel(run: Run, certs: Certs) -> None:
    """tls.caSecretRef through a proxy: the endpoint's context (trusting the test CA) does
    the handshake inside the tunnel, and its connections are pooled apart."""
    material = TLSMaterial(ca_pem=certs.ca_pem.encode(), ca_source="test CA")
    own = TLSChoice(client_context(material), material.fingerprint())

    async def scenario() -> None:
        async with (
            ConnectProxy() as proxy,
            Receiver(ssl_context=certs.server()) as rx,
            sending(through(proxy)) as sender,  # the pool's own context: the system's store
        ):
            url = rx.url("localhost", "https")
            for _ in range(2):
                ok(await sender.send(url, False, b"{}", {"webhook-id": "msg_1"}, LIMIT, own))
            failed = await send(sender, url)
            assert failed.error is not None
            assert failed.error.startswith("TLS certificate not trusted"), failed
            assert proxy.tunnels == 2  # one kept for the endpoint's context, one that failed

    run(scenario())


def test_proxy_credentials_are_sent_to_the_proxy_only(run: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy(auth=AUTH) as proxy, Receiver() as rx:
            async with sending(through(proxy)) as sender:
                result = await send(sender, rx.url())
                assert result.http_status is None
                assert result.error == "proxy refused CONNECT: 407 Proxy Authentication Required"
            async with sending(through(proxy, QUOTED)) as sender:
                ok(await send(sender, rx.url()))
            assert proxy.authorizations == [None, AUTH]
            assert rx.requests == [(f"127.0.0.1:{rx.port}", b'{"type":"invoice.paid"}')]

    run(scenario())


def test_refused_connect_is_a_failed_attempt_with_the_proxys_reason(run: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy() as proxy, Receiver() as rx:
            proxy.refuse[rx.port] = (403, "Forbidden by policy")
            async with sending(through(proxy)) as sender:
                result = await send(sender, rx.url())
                assert (result.http_status, result.error) == (
                    None,
                    "proxy refused CONNECT: 403 Forbidden by policy",
                )
                del proxy.refuse[rx.port]
                ok(await send(sender, rx.url()))  # a refusal leaves nothing behind
            assert len(rx.requests) == 1

    run(scenario())


def test_a_proxy_that_cannot_be_reached(run: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy() as proxy:
            pass  # started and stopped: its port is free again
        async with Receiver() as rx, sending(through(proxy)) as sender:
            result = await send(sender, rx.url())
            assert result.error is not None
            assert result.error.startswith(f"cannot connect to the proxy 127.0.0.1:{proxy.port}")
            assert rx.requests == []

    run(scenario())


def test_no_proxy_hosts_are_reached_directly(run: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy() as proxy, Receiver() as rx, Receiver() as other:
            egress = through(proxy, no_proxy=f"localhost, 127.0.0.1:{other.port}")
            async with sending(egress) as sender:
                ok(await send(sender, rx.url("localhost")))  # by name
                ok(await send(sender, other.url()))  # by address and port
                assert proxy.connects == []
                ok(await send(sender, rx.url()))  # the same receiver, not excepted
                assert proxy.connects == [f"127.0.0.1:{rx.port}"]

    run(scenario())


def test_tunnelled_and_direct_connections_are_pooled_apart(run: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy() as proxy, Receiver() as rx:
            egress = EgressProxy(https=parse_proxy_url(proxy.url))  # http URLs go direct
            async with sending(egress) as sender:
                for _ in range(2):
                    ok(await send(sender, rx.url()))
                assert proxy.connects == []
                origins = list(sender.pool._idle)
                assert origins == [(False, "127.0.0.1", rx.port, False)]

    run(scenario())


def test_the_address_policy_applies_to_the_target_before_the_proxy_is_asked(run: Run) -> None:
    async def scenario() -> None:
        async with ConnectProxy() as proxy, Receiver() as rx:
            async with sending(through(proxy)) as sender:  # allows 127.0.0.1 only
                for host in ("127.0.0.2", "[::1]"):
                    result = await send(sender, rx.url(host))
                    assert result.error is not None
                    assert result.error.startswith("refused by the address policy"), result
            policy = AddressPolicy.from_strings(["10.0.0.0/8"])  # loopback not allowed
            async with sending(through(proxy), policy) as sender:
                result = await send(sender, rx.url("localhost"))
                assert result.error is not None
                assert result.error.startswith("refused by the address policy"), result
            assert proxy.connects == []
            assert rx.requests == []

    run(scenario())


# --- the delivery service -----------------------------------------------------------------


GROUP, VERSION = "webhook-operator.dev", "v1alpha1"


class ProxiedDelivery(DeliveryProcess):
    """The delivery service with proxy variables in its environment (and only in its own:
    this test process keeps reaching it directly)."""

    def __init__(self, *args: Any, env: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env = env

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}


class TLSReceiver:
    """A threaded HTTPS receiver on 127.0.0.1 with the test CA's certificate for localhost,
    recording each request and the SNI name of each connection."""

    def __init__(self, certs: Certs) -> None:
        self.requests: list[dict[str, Any]] = []
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"headers": dict(self.headers.items()), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        context = certs.server()

        def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.server_names.append(name)

        context.sni_callback = sni  # type: ignore[assignment]
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Setup:
    proxy: ConnectProxy
    service: ProxiedDelivery
    bypassed: HarnessReceiver  # its port is in NO_PROXY


@pytest.fixture(scope="module")
def proxied(
    cluster: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
    operator: OperatorProcess,
    certs: Certs,
) -> Iterator[Setup]:
    bypassed = HarnessReceiver()
    bypassed_port = bypassed.base.rsplit(":", 1)[1]
    workdir = tmp_path_factory.mktemp("delivery-proxied")
    (workdir / "ca.pem").write_text(certs.ca_pem)
    with ThreadedProxy(ConnectProxy(auth=AUTH)) as proxy:
        service = ProxiedDelivery(
            cluster.kubeconfig,
            workdir,
            f"sqlite:///{workdir / 'delivery.db'}",
            name="delivery-proxied",
            env={
                # Lower case wins over upper case: the upper-case values would fail.
                "http_proxy": f"http://{QUOTED}@127.0.0.1:{proxy.port}",
                "HTTP_PROXY": "http://127.0.0.1:1",
                "HTTPS_PROXY": f"http://{QUOTED}@127.0.0.1:{proxy.port}",
                "NO_PROXY": f"example.com,127.0.0.1:{bypassed_port}",
                # The system trust store of the service: the test CA (for https receivers).
                "SSL_CERT_FILE": str(workdir / "ca.pem"),
            },
        ).start()
        try:
            yield Setup(proxy, service, bypassed)
        finally:
            service.stop()
            bypassed.close()


def apply(cluster: Cluster, namespace: str, *objs: dict[str, Any]) -> None:
    for obj in objs:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def setup_endpoint(cluster: Cluster, namespace: str, url: str, ready: bool = True) -> Producer:
    app = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookApp",
        "metadata": {"name": "billing"},
        "spec": {"eventTypes": [{"name": "invoice.paid"}]},
    }
    endpoint = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookEndpoint",
        "metadata": {"name": "ep"},
        "spec": {
            "appRef": {"name": "billing"},
            "url": url,
            "allowInsecureHttp": True,
            "events": ["invoice.*"],
            "retry": {"schedule": []},
        },
    }
    apply(cluster, namespace, app, endpoint)
    if ready:

        def is_ready() -> bool:
            secret = cluster.kubectl(
                "get", "secret", "ep-signing-secret", "-n", namespace, check=False
            )
            return secret.returncode == 0

        eventually(is_ready, what="signing secret")
    return Producer(cluster, namespace, ["billing"])


def emit(setup: Setup, namespace: str, producer: Producer) -> str:
    response = httpx.post(
        f"{setup.service.url}/v1/namespaces/{namespace}/apps/billing/events",
        content=json.dumps({"type": "invoice.paid", "data": {"invoiceId": "in_1"}}).encode(),
        headers={**producer.headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    event_id: str = response.json()["eventId"]
    return event_id


def finished(setup: Setup, namespace: str, producer: Producer) -> dict[str, Any]:
    def last() -> dict[str, Any] | None:
        response = httpx.get(
            f"{setup.service.url}/v1/namespaces/{namespace}/endpoints/ep/deliveries",
            headers=producer.headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        return items[0] if items and items[0]["status"] in ("delivered", "exhausted") else None

    item = eventually(last, timeout=30, what="delivery finished")
    assert isinstance(item, dict)
    return item


def secret(cluster: Cluster, namespace: str) -> str:
    out = cluster.kubectl(
        "get", "secret", "ep-signing-secret", "-n", namespace, "-o", "jsonpath={.data.secret}"
    ).stdout
    return base64.b64decode(out).decode()


def test_service_delivers_through_the_proxy_signed(
    cluster: Cluster, namespace: str, proxied: Setup, receiver: HarnessReceiver
) -> None:
    port = int(receiver.base.rsplit(":", 1)[1])
    producer = setup_endpoint(cluster, namespace, receiver.url("/hook"))
    event_id = emit(proxied, namespace, producer)
    assert finished(proxied, namespace, producer)["status"] == "delivered"
    (request,) = receiver.received("/hook")
    payload = Webhook(secret(cluster, namespace)).verify(request["body"], request["headers"])
    assert payload["data"] == {"invoiceId": "in_1"}
    assert request["headers"]["webhook-id"] == event_id
    assert request["headers"]["Host"] == f"127.0.0.1:{port}"
    assert "Proxy-Authorization" not in request["headers"]
    assert f"127.0.0.1:{port}" in proxied.proxy.connects
    assert AUTH in proxied.proxy.authorizations
    log = proxied.service.log()
    assert f"https URLs through http://{USER}:***@127.0.0.1:{proxied.proxy.port}" in log
    assert PASSWORD not in log
    assert "s3cret" not in log


def test_service_delivers_https_through_the_tunnel_with_sni(
    cluster: Cluster, namespace: str, proxied: Setup, certs: Certs
) -> None:
    receiver = TLSReceiver(certs)
    try:
        producer = setup_endpoint(cluster, namespace, f"https://localhost:{receiver.port}/hook")
        event_id = emit(proxied, namespace, producer)
        assert finished(proxied, namespace, producer)["status"] == "delivered"
        (request,) = receiver.requests
        Webhook(secret(cluster, namespace)).verify(request["body"], request["headers"])
        assert request["headers"]["webhook-id"] == event_id
        assert request["headers"]["Host"] == f"localhost:{receiver.port}"
        assert receiver.server_names == ["localhost"]
        # The proxy was asked for the address the policy checked, not for the name.
        assert f"127.0.0.1:{receiver.port}" in proxied.proxy.connects
        assert not [c for c in proxied.proxy.connects if c.startswith("localhost")]
    finally:
        receiver.close()


def test_service_reaches_no_proxy_hosts_directly(
    cluster: Cluster, namespace: str, proxied: Setup
) -> None:
    port = proxied.bypassed.base.rsplit(":", 1)[1]
    producer = setup_endpoint(cluster, namespace, proxied.bypassed.url(f"/{namespace}"))
    emit(proxied, namespace, producer)
    assert finished(proxied, namespace, producer)["status"] == "delivered"
    assert len(proxied.bypassed.received(f"/{namespace}")) == 1
    assert f"127.0.0.1:{port}" not in proxied.proxy.connects


def test_service_records_a_refused_connect_as_a_failed_attempt(
    cluster: Cluster, namespace: str, proxied: Setup, receiver: HarnessReceiver
) -> None:
    port = int(receiver.base.rsplit(":", 1)[1])
    proxied.proxy.refuse[port] = (403, "Forbidden")
    producer = setup_endpoint(cluster, namespace, receiver.url("/hook"))
    emit(proxied, namespace, producer)
    item = finished(proxied, namespace, producer)
    assert item["status"] == "exhausted"
    assert item["lastError"] == "proxy refused CONNECT: 403 Forbidden"
    detail = httpx.get(
        f"{proxied.service.url}/v1/namespaces/{namespace}/deliveries/{item['id']}",
        headers=producer.headers,
        timeout=10,
    ).json()
    assert [(a["httpStatus"], a["error"]) for a in detail["attemptLog"]] == [
        (None, "proxy refused CONNECT: 403 Forbidden")
    ]
    assert receiver.requests == []


def test_service_applies_the_address_policy_before_the_proxy(
    cluster: Cluster, namespace: str, proxied: Setup, receiver: HarnessReceiver
) -> None:
    # 127.0.0.2 is loopback but not on the service's allow-list (127.0.0.1/32).
    port = receiver.base.rsplit(":", 1)[1]
    producer = setup_endpoint(cluster, namespace, f"http://127.0.0.2:{port}/hook")
    emit(proxied, namespace, producer)
    item = finished(proxied, namespace, producer)
    assert item["status"] == "exhausted"
    assert "refused by the address policy" in item["lastError"]
    assert not [c for c in proxied.proxy.connects if c.startswith("127.0.0.2")]
    assert receiver.requests == []


def test_service_refuses_to_start_with_a_bad_proxy_url(cluster: Cluster, tmp_path: Path) -> None:
    service = ProxiedDelivery(
        cluster.kubeconfig,
        tmp_path,
        f"sqlite:///{tmp_path / 'delivery.db'}",
        env={"HTTPS_PROXY": "socks5://user:hunter2@127.0.0.1:1080"},
    ).start(wait=False)
    assert service.process is not None
    assert service.process.wait(timeout=30) == 2
    log = service.log()
    assert "only http:// proxies are supported" in log
    assert "HTTPS_PROXY" in log
    assert "hunter2" not in log
