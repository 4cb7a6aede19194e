"""The delivery client (delivery/http1.py behind delivery/sender.py) against real receivers
on this machine: aiohttp servers for well-behaved ones, raw asyncio servers for the rest.

Every scenario runs twice, on asyncio's own event loop and on uvloop (what the delivery
service runs on), whose transports behave differently. Only loopback addresses are ever
contacted, and no Kubernetes cluster is needed. The address policy itself is tested as a
pure function in tests/unit/test_url_policy.py; here it is tested end to end."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook_operator import __version__
from webhook_operator.delivery import http1
from webhook_operator.delivery.http1 import ConnectionPool, parse_target
from webhook_operator.delivery.sender import USER_AGENT, GuardedResolver, Sender, SendResult
from webhook_operator.url_policy import AddressPolicy

pytestmark = pytest.mark.timeout(30)

LOOPBACK_ONLY = AddressPolicy.from_strings(["127.0.0.1/32"])
NOTHING_ALLOWED = AddressPolicy()
LIMIT = 5.0  # seconds per delivery, unless a test is about the limit

Run = Callable[[Coroutine[Any, Any, None]], None]
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def _from_client(context: dict[str, Any]) -> bool:
    """Whether an error the event loop reported came from the client under test."""
    exc = context.get("exception")
    text = str(context)
    if exc is not None:
        text += "".join(traceback.format_exception(exc))
    return "webhook_operator" in text or "_Connection" in text


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario on a fresh event loop of the parametrized kind, and fails it when
    the loop reported an error from the client (a callback raising, a future whose
    exception nobody retrieved) even though the scenario itself passed."""

    def run(scenario: Coroutine[Any, Any, None]) -> None:
        reported: list[dict[str, Any]] = []
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            runner.get_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
            runner.run(scenario)
        client_errors = [ctx for ctx in reported if _from_client(ctx)]
        assert not client_errors, client_errors

    return run


# --- receivers ------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[Any, ...]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """An aiohttp receiver on a loopback address recording every request and the client
    port it came from (one port per connection). Answers 200 "ok" unless given a handler."""

    def __init__(
        self,
        handler: Handler | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        keepalive_timeout: float = 75.0,
        client_max_size: int = 1024**2,
    ) -> None:
        self.handler = handler
        self.keepalive_timeout = keepalive_timeout
        self.client_max_size = client_max_size
        self.ssl_context = ssl_context
        self.host = host
        self.requests: list[Seen] = []
        self.port = 0

    async def __aenter__(self) -> Receiver:
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=0.2,
            keepalive_timeout=self.keepalive_timeout,
        )
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self.ssl_context, backlog=1024)
        await site.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        assert request.transport is not None
        self.requests.append(
            Seen(
                request.method,
                request.raw_path,
                dict(request.headers),
                body,
                tuple(request.transport.get_extra_info("peername")),
            )
        )
        if self.handler is None:
            return web.Response(text="ok")
        return await self.handler(request)

    @property
    def connections(self) -> int:
        return len({seen.peer for seen in self.requests})

    def url(self, path: str = "/hook", *, host: str | None = None, scheme: str = "http") -> str:
        shown = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{shown}:{self.port}{path}"


RawHandler = Callable[["RawReceiver", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawReceiver:
    """A TCP server on 127.0.0.1 whose handler writes whatever bytes it likes; counts
    the connections it accepted and the requests its handler read (`read_request`)."""

    def __init__(self, handler: RawHandler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> RawReceiver:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, backlog=1024, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.handler(self, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request, head and body; IncompleteReadError when the client closed."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    def url(self, path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


def answering(*answers: bytes, then_close: bool = False) -> RawHandler:
    """A raw handler giving these answers, in order, to the requests on each connection
    (the last one repeating), then closing the connection when told to."""

    async def handle(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        n = 0
        while True:
            await rx.read_request(reader)
            w.write(answers[min(n, len(answers) - 1)])
            await w.drain()
            n += 1
            if then_close and n >= len(answers):
                return

    return handle


@contextlib.asynccontextmanager
async def sending(
    policy: AddressPolicy = LOOPBACK_ONLY, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Sender]:
    sender = Sender(policy)
    if ssl_context is not None:
        sender.pool = ConnectionPool(GuardedResolver(policy), USER_AGENT, ssl_context)
    try:
        yield sender
    finally:
        await sender.close()


async def send(
    sender: Sender,
    url: str,
    body: bytes = b'{"type":"invoice.paid"}',
    headers: dict[str, str] | None = None,
    time_limit: float = LIMIT,
) -> SendResult:
    return await sender.send(url, True, body, headers or {}, time_limit)


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released, never listened on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def ok(result: SendResult) -> None:
    assert result.error is None, result
    assert result.http_status is not None
    assert 200 <= result.http_status < 300, result


# --- a 2xx delivery -------------------------------------------------------------------


def test_delivery_arrives_with_exact_body_and_headers(run: Run) -> None:
    body = '{"type":"invoice.paid","data":{"amount":"12,00 €"}}'.encode()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "webhook-timestamp": "1674087231",
        "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        "X-Api-Key": "k-123",
    }

    async def scenario() -> None:
        async with Receiver() as rx, sending() as sender:
            result = await send(sender, rx.url("/hooks/billing"), body, headers)
            ok(result)
            assert result.http_status == 200
            assert result.response_snippet == "ok"
            assert result.retry_after is None
            assert result.duration_ms > 0
        [seen] = rx.requests
        assert seen.method == "POST"
        assert seen.raw_path == "/hooks/billing"
        assert seen.body == body
        for name, value in headers.items():
            assert seen.headers[name] == value
        assert seen.headers["User-Agent"] == f"webhook-operator/{__version__}"
        assert seen.headers["Content-Length"] == str(len(body))
        assert seen.headers["Host"] == f"127.0.0.1:{rx.port}"
        assert "Transfer-Encoding" not in seen.headers
        # Nothing the receiver might read as compressed, chunked or a proxy hop.
        assert set(seen.headers) == {*headers, "User-Agent", "Content-Length", "Host"}

    run(scenario())


def test_empty_body_and_bodiless_answers(run: Run) -> None:
    async def no_content(_: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def scenario() -> None:
        async with Receiver(no_content) as rx, sending() as sender:
            result = await send(sender, rx.url(), b"")
            assert (result.http_status, result.error, result.response_snippet) == (204, None, None)
            ok(await send(sender, rx.url(), b""))  # the same connection, still in step
        assert [seen.body for seen in rx.requests] == [b"", b""]
        assert rx.requests[0].headers["Content-Length"] == "0"
        assert rx.connections == 1

    run(scenario())


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/hook?x=1&y=%2F&z=a+b", "/hook?x=1&y=%2F&z=a+b"),
        ("/a/%7Euser/b;p=1/", "/a/%7Euser/b;p=1/"),
        ("", "/"),
        ("?only=query", "/?only=query"),
        (
            "/café/ünïcode?name=José&emoji=✓",
            "/caf%C3%A9/%C3%BCn%C3%AFcode?name=Jos%C3%A9&emoji=%E2%9C%93",
        ),
        ("/hook#fragment", "/hook"),
    ],
)
def test_path_and_query_are_sent_as_written(run: Run, path: str, sent: str) -> None:
    async def scenario() -> None:
        async with Receiver() as rx, sending() as sender:
            ok(await send(sender, rx.url(path)))
        assert [seen.raw_path for seen in rx.requests] == [sent]

    run(scenario())


def test_request_line_and_host_header_for_each_kind_of_url() -> None:
    # A pure function: no connection is made.
    assert parse_target("https://example.com/x").head == (
        "POST /x HTTP/1.1\r\nHost: example.com\r\n"
    )
    assert parse_target("http://example.com:80/").head.endswith("Host: example.com\r\n")
    assert parse_target("https://example.com:8443/").head.endswith("Host: example.com:8443\r\n")
    assert parse_target("http://EXAMPLE.com:443/").head.endswith("Host: example.com:443\r\n")
    assert parse_target("https://[2001:db8::1]/").head.endswith("Host: [2001:db8::1]\r\n")
    assert parse_target("http://[2001:db8::1]:81/").head.endswith("Host: [2001:db8::1]:81\r\n")
    assert parse_target("https://Bücher.example/").head.endswith("Host: xn--bcher-kva.example\r\n")
    target = parse_target("https://[2001:db8::1]:8443/")
    assert (target.tls, target.host, target.port) == (True, "2001:db8::1", 8443)


def test_ipv6_loopback_receiver(run: Run) -> None:
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")

    async def scenario() -> None:
        async with Receiver(host="::1") as rx, sending(AddressPolicy.from_strings(["::1"])) as s:
            ok(await send(s, rx.url()))
        assert rx.requests[0].headers["Host"] == f"[::1]:{rx.port}"

    run(scenario())


def test_international_host_names_are_sent_in_their_ascii_form(run: Run) -> None:
    # The resolver stands in for DNS and answers 127.0.0.1 for every name.
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    async def scenario() -> None:
        async with Receiver() as rx:
            pool = ConnectionPool(resolve, USER_AGENT)
            try:
                for host in ("bücher.example", "例え.テスト"):
                    answer = await pool.post(rx.url("/", host=host), {}, b"{}", LIMIT)
                    assert answer.status == 200
            finally:
                await pool.close()
        assert [seen.headers["Host"] for seen in rx.requests] == [
            f"xn--bcher-kva.example:{rx.port}",
            f"xn--r8jz45g.xn--zckzah:{rx.port}",
        ]
        assert asked == ["xn--bcher-kva.example", "xn--r8jz45g.xn--zckzah"]

    run(scenario())


def test_a_host_name_dns_cannot_carry_is_a_clear_error(run: Run) -> None:
    # A 64-character label is longer than DNS allows: refused before any lookup.
    async def scenario() -> None:
        async with sending() as sender:
            result = await send(sender, f"http://{'a' * 64}.example/hook")
        assert result.http_status is None
        assert result.error == f"invalid host name '{'a' * 64}.example': label empty or too long"

    run(scenario())


# --- error statuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (400, "400 Bad Request"),
        (401, "401 Unauthorized"),
        (404, "404 Not Found"),
        (410, "410 Gone"),
        (500, "500 Internal Server Error"),
        (502, "502 Bad Gateway"),
    ],
)
def test_error_status_is_reported_with_the_start_of_the_answer(
    run: Run, status: int, text: str
) -> None:
    answer = "x" * 1000 + "0123456789" * 300

    async def failing(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=answer)

    async def scenario() -> None:
        async with Receiver(failing) as rx, sending() as sender:
            result = await send(sender, rx.url())
            assert (result.http_status, result.error) == (status, text)
            assert result.response_snippet == answer[:1024]
            # The connection stays usable after an error status.
            assert (await send(sender, rx.url())).http_status == status
        assert rx.connections == 1

    run(scenario())


def test_reason_phrase_is_the_receivers_own(run: Run) -> None:
    async def scenario() -> None:
        answer = b"HTTP/1.1 599 Network Gremlins\r\nContent-Length: 4\r\n\r\noops"
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            result = await send(sender, rx.url())
        assert (result.http_status, result.error, result.response_snippet) == (
            599,
            "599 Network Gremlins",
            "oops",
        )

    run(scenario())


def test_snippet_of_text_that_is_not_utf8_or_cut_inside_a_character(run: Run) -> None:
    answers = {
        "/latin1": ("déjà vu".encode("latin-1"), "d\ufffdj\ufffd vu"),
        # 1023 ASCII bytes, then "é" (two bytes) cut in half at the 1024-byte boundary.
        "/cut": (("x" * 1023 + "é" * 10).encode(), "x" * 1023),
        "/utf8": (("é" * 100).encode(), "é" * 100),
    }

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, body=answers[request.path][0])

    async def scenario() -> None:
        async with Receiver(handler) as rx, sending() as sender:
            for path, (_, snippet) in answers.items():
                result = await send(sender, rx.url(path))
                assert result.response_snippet == snippet, path

    run(scenario())


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, "7"), (503, "Wed, 21 Oct 2037 07:28:00 GMT"), (429, None)],
)
def test_retry_after_is_captured(run: Run, status: int, retry_after: str | None) -> None:
    async def busy(_: web.Request) -> web.StreamResponse:
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.Response(status=status, text="slow down", headers=headers)

    async def scenario() -> None:
        async with Receiver(busy) as rx, sending() as sender:
            result = await send(sender, rx.url())
        assert result.http_status == status
        assert result.retry_after == retry_after
        assert result.response_snippet == "slow down"

    run(scenario())


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (301, "301 Moved Permanently"),
        (302, "302 Found"),
        (303, "303 See Other"),
        (307, "307 Temporary Redirect"),
        (308, "308 Permanent Redirect"),
    ],
)
def test_redirects_are_not_followed(run: Run, status: int, text: str) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path == "/hook":
            return web.Response(status=status, headers={"Location": "/x"})
        return web.Response(text="followed")

    async def scenario() -> None:
        async with Receiver(redirect) as rx, sending() as sender:
            result = await send(sender, rx.url("/hook"))
        assert result.http_status == status
        assert result.error == f"{text}: redirects are not followed (to /x)"
        assert [seen.raw_path for seen in rx.requests] == ["/hook"]

    run(scenario())


def test_redirect_without_location(run: Run) -> None:
    async def scenario() -> None:
        answer = b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            result = await send(sender, rx.url())
        assert result.error == "302 Found: redirects are not followed"

    run(scenario())


# --- keep-alive -----------------------------------------------------------------------


def test_sequential_sends_reuse_one_connection(run: Run) -> None:
    async def scenario() -> None:
        async with Receiver() as rx, sending() as sender:
            for n in range(50):
                ok(await send(sender, rx.url(f"/hook/{n}"), f'{{"n":{n}}}'.encode()))
        assert len(rx.requests) == 50
        assert rx.connections == 1
        assert [seen.body for seen in rx.requests] == [f'{{"n":{n}}}'.encode() for n in range(50)]

    run(scenario())


def test_concurrent_sends_share_a_few_connections(run: Run) -> None:
    # 1000 deliveries, at most 20 in flight at once: 20 connections at most.
    async def scenario() -> None:
        gate = asyncio.Semaphore(20)

        async def one(sender: Sender, rx: Receiver, n: int) -> SendResult:
            async with gate:
                return await send(sender, rx.url(), str(n).encode())

        async with Receiver() as rx, sending() as sender:
            results = await asyncio.gather(*(one(sender, rx, n) for n in range(1000)))
        for result in results:
            ok(result)
        assert sorted(int(seen.body) for seen in rx.requests) == list(range(1000))
        assert rx.connections <= 20

    run(scenario())


def test_each_origin_has_its_own_connections(run: Run) -> None:
    async def scenario() -> None:
        async with Receiver() as a, Receiver() as b, sending() as sender:
            for _ in range(5):
                ok(await send(sender, a.url()))
                ok(await send(sender, b.url()))
        assert (len(a.requests), a.connections, len(b.requests), b.connections) == (5, 1, 5, 1)

    run(scenario())


def test_receiver_answering_connection_close(run: Run) -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def scenario() -> None:
        async with RawReceiver(answering(answer, then_close=True)) as rx, sending() as sender:
            for _ in range(5):
                ok(await send(sender, rx.url()))
        assert (len(rx.requests), rx.connections) == (5, 5)

    run(scenario())


def test_receiver_asking_to_close_but_keeping_the_connection_open(run: Run) -> None:
    # The client must not reuse it either way; a second request on it would never be read.
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def scenario() -> None:
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            for _ in range(3):
                ok(await send(sender, rx.url(), time_limit=2))
        assert (len(rx.requests), rx.connections) == (3, 3)

    run(scenario())


def test_http10_answer_is_not_reused(run: Run) -> None:
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def scenario() -> None:
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            for _ in range(3):
                ok(await send(sender, rx.url(), time_limit=2))
        assert (len(rx.requests), rx.connections) == (3, 3)

    run(scenario())


def test_receiver_closing_an_idle_connection(run: Run) -> None:
    # The receiver keeps idle connections for 50 ms; the next delivery comes later.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def handle(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)
        while True:
            w.write(answer)
            await w.drain()
            try:
                async with asyncio.timeout(0.05):
                    await rx.read_request(reader)
            except TimeoutError:
                return  # idle too long: hang up

    async def scenario() -> None:
        async with RawReceiver(handle) as rx, sending() as sender:
            for _ in range(3):
                ok(await send(sender, rx.url()))
                await asyncio.sleep(0.2)
        assert (len(rx.requests), rx.connections) == (3, 3)

    run(scenario())


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_stale_connection_is_retried_once_on_a_new_one(run: Run, certs: Certs, tls: bool) -> None:
    # The race every keep-alive client meets: the receiver closes an idle connection just
    # as a request is written to it, and reads nothing. The request goes out again on a
    # new connection, and the delivery succeeds.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def one_answer_per_connection(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)
        w.write(answer)
        await w.drain()
        await rx.read_request(reader)  # arrives, but the receiver has decided to close
        rx.requests.pop()

    async def scenario() -> None:
        server = certs.server_context(certs.trusted) if tls else None
        async with (
            RawReceiver(one_answer_per_connection, server) as rx,
            sending(ssl_context=certs.client_context()) as sender,
        ):
            for n in range(4):
                url = rx.url(scheme="https" if tls else "http")
                result = await send(sender, url, f"{n}".encode())
                ok(result)
        assert [r.rsplit(b"\r\n", 1)[1] for r in rx.requests] == [b"0", b"1", b"2", b"3"]
        assert rx.connections == 4

    run(scenario())


def test_stale_retry_happens_only_once(run: Run) -> None:
    # The first connection answers once; every later one closes without answering.
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def handle(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)
        if rx.connections == 1:
            w.write(answer)
            await w.drain()
            await rx.read_request(reader)

    async def scenario() -> None:
        async with RawReceiver(handle) as rx, sending() as sender:
            ok(await send(sender, rx.url()))
            result = await send(sender, rx.url())
        assert result.http_status is None
        assert result.error == "the receiver closed the connection without answering"
        assert rx.connections == 2  # the stale one, then one new connection: no more

    run(scenario())


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_receiver_timing_out_idle_connections(run: Run, certs: Certs, tls: bool) -> None:
    # aiohttp's own keep-alive timeout, shorter than the pauses between deliveries.
    async def scenario() -> None:
        server = certs.server_context(certs.trusted) if tls else None
        async with (
            Receiver(ssl_context=server, keepalive_timeout=0.05) as rx,
            sending(ssl_context=certs.client_context()) as sender,
        ):
            for _ in range(3):
                ok(await send(sender, rx.url(scheme="https" if tls else "http")))
                await asyncio.sleep(0.2)
        assert (len(rx.requests), rx.connections) == (3, 3)

    run(scenario())


def test_pool_lets_go_of_connections_idle_too_long(run: Run) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def scenario() -> None:
        eofs = 0

        async def handle(
            rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
        ) -> None:
            nonlocal eofs
            with contextlib.suppress(asyncio.IncompleteReadError):
                while True:
                    await rx.read_request(reader)
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    await w.drain()
            eofs += 1

        async with RawReceiver(handle) as rx:
            pool = ConnectionPool(resolve, USER_AGENT, idle_seconds=0.1)
            try:
                for pause in (0.0, 0.0, 0.3, 0.0):
                    await asyncio.sleep(pause)
                    assert (await pool.post(rx.url(), {}, b"", LIMIT)).status == 200
                await asyncio.sleep(0.05)
                assert (rx.connections, eofs) == (2, 1)  # the old one was closed, not kept
            finally:
                await pool.close()

    run(scenario())


def test_large_request_body_arrives_intact(run: Run) -> None:
    body = b'{"blob":"' + bytes(range(65, 91)) * 200_000 + b'"}'  # about 5 MB

    async def scenario() -> None:
        async with Receiver(client_max_size=len(body)) as rx, sending() as sender:
            for _ in range(2):
                ok(await send(sender, rx.url(), body))
        assert [seen.body == body for seen in rx.requests] == [True, True]
        assert rx.requests[0].headers["Content-Length"] == str(len(body))
        assert rx.connections == 1

    run(scenario())


# --- answer framing -------------------------------------------------------------------


def test_chunked_answer(run: Run) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=202)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"accepted", b" in ", b"three chunks"):
            await response.write(part)
        await response.write_eof()
        return response

    async def scenario() -> None:
        async with Receiver(chunked) as rx, sending() as sender:
            for _ in range(3):
                result = await send(sender, rx.url())
                assert (result.http_status, result.response_snippet) == (
                    202,
                    "accepted in three chunks",
                )
        assert rx.connections == 1

    run(scenario())


def test_chunked_answer_with_extensions_and_trailers(run: Run) -> None:
    answer = (
        b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nRetry-After: 9\r\n\r\n"
    )

    async def scenario() -> None:
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            for _ in range(2):
                result = await send(sender, rx.url())
                assert (result.http_status, result.response_snippet) == (500, "hello world")
        assert rx.connections == 1

    run(scenario())


def test_answer_without_length_ends_when_the_connection_does(run: Run) -> None:
    answers = {
        200: b"HTTP/1.1 200 OK\r\n\r\nread until close",
        500: b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\nbroken",
    }

    async def scenario() -> None:
        for status, answer in answers.items():
            async with (
                RawReceiver(answering(answer, then_close=True)) as rx,
                sending() as sender,
            ):
                result = await send(sender, rx.url(), time_limit=2)
                assert result.http_status == status
                assert result.response_snippet == answer.split(b"\r\n\r\n", 1)[1].decode()
                if status == 200:  # and the next delivery goes on a new connection
                    ok(await send(sender, rx.url(), time_limit=2))
                    assert rx.connections == 2

    run(scenario())


def test_informational_answers_before_the_final_one(run: Run) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nRetry-After: 99\r\n\r\n"
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
    )

    async def scenario() -> None:
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            for _ in range(2):
                result = await send(sender, rx.url())
                assert result.http_status == 503
                assert result.error == "503 Service Unavailable"
                assert result.response_snippet == "busy"
                assert result.retry_after is None  # that was the 103's header
        assert rx.connections == 1

    run(scenario())


def test_informational_answer_in_separate_packets(run: Run) -> None:
    async def handle(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)
        for part in (b"HTTP/1.1 100 Cont", b"inue\r\n\r\n", b"HTTP/1.1 201 Created\r\n", b"Co"):
            w.write(part)
            await w.drain()
            await asyncio.sleep(0.02)
        w.write(b"ntent-Length: 3\r\n\r\nnew")
        await w.drain()
        await reader.read()

    async def scenario() -> None:
        async with RawReceiver(handle) as rx, sending() as sender:
            result = await send(sender, rx.url())
        assert (result.http_status, result.error, result.response_snippet) == (201, None, "new")

    run(scenario())


def test_huge_answer_returns_promptly_with_the_snippet(run: Run) -> None:
    # 10 MB, streamed: the client reads the first 64 KiB, reports, and hangs up.
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500)
        response.content_length = 10 * 1024 * 1024
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(160):
                await response.write(b"E" * 65536)
        return response

    async def scenario() -> None:
        async with Receiver(huge) as rx, sending() as sender:
            for _ in range(2):
                started = time.monotonic()
                result = await send(sender, rx.url(), time_limit=10)
                assert time.monotonic() - started < 3
                assert (result.http_status, result.error) == (500, "500 Internal Server Error")
                assert result.response_snippet == "E" * 1024
        assert rx.connections == 2  # the rest is not read: that connection is closed

    run(scenario())


def test_endless_answer_returns_promptly(run: Run) -> None:
    async def endless(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            w.write(b"4000\r\n" + b"z" * 0x4000 + b"\r\n")
            await w.drain()

    async def scenario() -> None:
        async with RawReceiver(endless) as rx, sending() as sender:
            started = time.monotonic()
            result = await send(sender, rx.url(), time_limit=10)
            assert time.monotonic() - started < 3
        ok(result)
        assert result.response_snippet == "z" * 1024

    run(scenario())


@pytest.mark.parametrize(
    "start",
    [
        b"HTTP/1.1 200 OK\r\nX-Endless: ",  # one header that never ends
        b"HTTP/1.1 200 ",  # a reason phrase that never ends
        b"HTTP/1.1 200 OK\r\n",  # headers that never end
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",  # trailers
    ],
)
def test_endless_headers_fail_promptly(run: Run, start: bytes) -> None:
    # Kept in memory until the time limit otherwise: a receiver could make the service
    # hold gigabytes.
    async def endless(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)
        w.write(start)
        n = 0
        while True:
            n += 1
            line = b"a" * 8192 if not start.endswith(b"\r\n") else f"X-{n}: {'b' * 60}\r\n".encode()
            w.write(line * 8)
            await w.drain()

    async def scenario() -> None:
        async with RawReceiver(endless) as rx, sending() as sender:
            started = time.monotonic()
            result = await send(sender, rx.url(), time_limit=10)
            assert time.monotonic() - started < 3
        assert result.http_status is None
        assert result.error is not None
        assert "too large" in result.error, result.error

    run(scenario())


def test_headers_up_to_the_limit_are_fine(run: Run) -> None:
    headers = "".join(f"X-Header-{n}: {'v' * 100}\r\n" for n in range(300))  # ~35 KB
    answer = f"HTTP/1.1 200 OK\r\n{headers}Content-Length: 2\r\n\r\nok".encode()

    async def scenario() -> None:
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            ok(await send(sender, rx.url()))

    run(scenario())


def test_bytes_after_the_answer_do_not_leak_into_it_or_the_next_one(run: Run) -> None:
    # A receiver answering twice to one request, in one packet: the second answer must not
    # change the first, and the connection is not trusted again.
    answer = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
        b"HTTP/1.1 200 OK\r\nRetry-After: 3600\r\nContent-Length: 5\r\n\r\nextra"
    )

    async def scenario() -> None:
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            for _ in range(2):
                result = await send(sender, rx.url())
                assert (result.http_status, result.response_snippet) == (503, "busy")
                assert result.retry_after is None
        assert rx.connections == 2

    run(scenario())


def test_receiver_talking_out_of_turn_between_deliveries(run: Run) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def chatty(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)
        w.write(answer)
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")  # nobody asked
        await w.drain()
        await rx.read_request(reader)

    async def scenario() -> None:
        async with RawReceiver(chatty) as rx, sending() as sender:
            ok(await send(sender, rx.url()))
            await asyncio.sleep(0.2)
            result = await send(sender, rx.url())
            assert (result.http_status, result.response_snippet) == (200, "ok")
        assert rx.connections == 2

    run(scenario())


# --- receivers that misbehave ---------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(64),
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_garbage_instead_of_http_is_a_clear_error(run: Run, garbage: bytes) -> None:
    async def scenario() -> None:
        async with RawReceiver(answering(garbage)) as rx, sending() as sender:
            result = await send(sender, rx.url(), time_limit=2)
            assert result.http_status is None
            assert result.error is not None
            assert result.error.startswith("invalid HTTP response"), result.error
            # The next delivery does not inherit the broken connection.
            result = await send(sender, rx.url(), time_limit=2)
            assert result.error is not None
            assert result.error.startswith("invalid HTTP response"), result.error
        assert rx.connections == 2

    run(scenario())


def test_switching_protocols_is_refused(run: Run) -> None:
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )

    async def scenario() -> None:
        async with RawReceiver(answering(answer)) as rx, sending() as sender:
            result = await send(sender, rx.url(), time_limit=2)
        assert (result.http_status, result.error) == (None, "the receiver switched protocols")

    run(scenario())


def test_receiver_closing_without_answering(run: Run) -> None:
    async def hang_up(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await rx.read_request(reader)

    async def scenario() -> None:
        async with RawReceiver(hang_up) as rx, sending() as sender:
            result = await send(sender, rx.url())
        assert result.http_status is None
        assert result.error == "the receiver closed the connection without answering"
        assert rx.connections == 1

    run(scenario())


def test_receiver_resetting_the_connection(run: Run) -> None:
    async def reset(rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await rx.read_request(reader)
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()

    async def scenario() -> None:
        async with RawReceiver(reset) as rx, sending() as sender:
            result = await send(sender, rx.url())
        assert result.http_status is None
        assert result.error == "the receiver closed the connection without answering"

    run(scenario())


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 20",
    ],
)
def test_receiver_closing_in_the_middle_of_its_answer(run: Run, partial: bytes) -> None:
    async def scenario() -> None:
        async with RawReceiver(answering(partial, then_close=True)) as rx, sending() as sender:
            result = await send(sender, rx.url())
        assert result.http_status is None
        assert result.error == "the receiver closed the connection in the middle of its answer"

    run(scenario())


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # accepts, reads the request, never answers
        b"HTTP/1.1 200 OK\r\n",  # starts answering, then stalls
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",  # stalls in the body
    ],
)
def test_receiver_that_never_finishes_answering_times_out(run: Run, sent: bytes) -> None:
    async def stall(rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await rx.read_request(reader)
        w.write(sent)
        await w.drain()
        await reader.read()  # until the client hangs up

    async def scenario() -> None:
        async with RawReceiver(stall) as rx, sending() as sender:
            started = time.monotonic()
            result = await send(sender, rx.url(), time_limit=0.5)
            elapsed = time.monotonic() - started
            assert 0.45 <= elapsed < 1.5, elapsed
            assert (result.http_status, result.error) == (None, "timed out after 0.5s")
            assert 450 <= result.duration_ms < 1500
            # The abandoned connection is not reused for the next delivery.
            result = await send(sender, rx.url(), time_limit=0.3)
            assert result.error == "timed out after 0.3s"
        assert rx.connections == 2

    run(scenario())


def test_receiver_that_never_accepts_times_out(run: Run) -> None:
    # A listening socket nobody accepts from, its backlog full: the connect itself stalls.
    async def scenario() -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            port = listener.getsockname()[1]
            fillers = []
            try:
                for _ in range(8):  # fill the accept queue so further SYNs go unanswered
                    filler = socket.socket()
                    filler.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        filler.connect(("127.0.0.1", port))
                    fillers.append(filler)
                async with sending() as sender:
                    started = time.monotonic()
                    result = await send(sender, f"http://127.0.0.1:{port}/", time_limit=0.5)
                    elapsed = time.monotonic() - started
            finally:
                for filler in fillers:
                    filler.close()
        assert result.http_status is None
        # Some kernels accept into a full queue anyway; then the answer never comes.
        assert result.error == "timed out after 0.5s", result.error
        assert elapsed < 1.5

    run(scenario())


def test_connection_refused(run: Run) -> None:
    port = unused_port()

    async def scenario() -> None:
        async with sending() as sender:
            result = await send(sender, f"http://127.0.0.1:{port}/hook")
        assert result.http_status is None
        assert result.error == f"cannot connect to 127.0.0.1:{port}: Connection refused"

    run(scenario())


def test_a_failing_receiver_does_not_disturb_deliveries_to_others(run: Run) -> None:
    async def scenario() -> None:
        async def hang_up(
            rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
        ) -> None:
            await rx.read_request(reader)

        async with Receiver() as good, RawReceiver(hang_up) as bad, sending() as sender:
            results = await asyncio.gather(
                *(send(sender, (good if n % 2 else bad).url(), time_limit=2) for n in range(40))
            )
        for n, result in enumerate(results):
            if n % 2:
                ok(result)
            else:
                assert result.error == "the receiver closed the connection without answering"
        assert len(good.requests) == 20

    run(scenario())


# --- TLS ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca_pem: str  # the test CA, which no system trust store holds
    trusted: Path  # chain + key for localhost and 127.0.0.1, issued by the CA
    expired: Path  # the same, expired yesterday
    self_signed: Path  # for localhost and 127.0.0.1, issued by itself

    def server_context(self, chain: Path) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _leaf(
    path: Path,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    days: tuple[int, int] = (-1, 30),
) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer or (_name("localhost"), key)
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("delivery-client-test-ca"))
        .issuer_name(_name("delivery-client-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    issuer = (ca.subject, ca_key)
    return Certs(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM).decode(),
        trusted=_leaf(directory / "trusted.pem", issuer),
        expired=_leaf(directory / "expired.pem", issuer, days=(-30, -1)),
        self_signed=_leaf(directory / "self-signed.pem", None),
    )


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        ("self_signed", "self-signed certificate"),
        ("trusted", "unable to get local issuer certificate"),  # not by the system's store
    ],
)
def test_certificate_not_trusted_by_the_system(
    run: Run, certs: Certs, chain: str, reason: str
) -> None:
    async def scenario() -> None:
        server = certs.server_context(getattr(certs, chain))
        async with Receiver(ssl_context=server) as rx, sending() as sender:
            for host in ("127.0.0.1", "localhost"):
                result = await send(sender, rx.url(host=host, scheme="https"))
                assert result.http_status is None
                assert result.error == f"TLS certificate not trusted: {reason}"
        assert rx.requests == []

    run(scenario())


def test_https_to_a_receiver_with_a_trusted_certificate(run: Run, certs: Certs) -> None:
    async def scenario() -> None:
        server = certs.server_context(certs.trusted)
        async with (
            Receiver(ssl_context=server) as rx,
            sending(ssl_context=certs.client_context()) as sender,
        ):
            for host in ("localhost", "127.0.0.1"):
                for _ in range(3):
                    result = await send(sender, rx.url(host=host, scheme="https"), b"{}")
                    ok(result)
                    assert result.response_snippet == "ok"
        assert [seen.headers["Host"] for seen in rx.requests] == [
            *[f"localhost:{rx.port}"] * 3,
            *[f"127.0.0.1:{rx.port}"] * 3,
        ]
        assert rx.connections == 2  # one per origin, kept alive

    run(scenario())


def test_https_certificate_for_another_name(run: Run, certs: Certs) -> None:
    # The name is checked against the certificate (and sent as SNI), not the address:
    # "wrong.example" resolves to 127.0.0.1 here, whose certificate is for localhost.
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def scenario() -> None:
        server = certs.server_context(certs.trusted)
        async with Receiver(ssl_context=server) as rx:
            pool = ConnectionPool(resolve, USER_AGENT, certs.client_context())
            try:
                with pytest.raises(http1.CertificateError) as caught:
                    await pool.post(rx.url(host="wrong.example", scheme="https"), {}, b"", LIMIT)
                assert str(caught.value) == (
                    "TLS certificate not trusted: Hostname mismatch, certificate is not valid"
                    " for 'wrong.example'."
                )
                answer = await pool.post(rx.url(host="localhost", scheme="https"), {}, b"", LIMIT)
                assert answer.status == 200
            finally:
                await pool.close()

    run(scenario())


def test_https_sends_the_host_name_as_sni(run: Run, certs: Certs) -> None:
    names: list[str | None] = []
    server = certs.server_context(certs.trusted)

    def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    server.sni_callback = remember  # type: ignore[assignment]

    async def scenario() -> None:
        async with (
            Receiver(ssl_context=server) as rx,
            sending(ssl_context=certs.client_context()) as sender,
        ):
            ok(await send(sender, rx.url(host="localhost", scheme="https")))
            ok(await send(sender, rx.url(host="127.0.0.1", scheme="https")))
        assert names == ["localhost", None]  # no SNI for an IP address (RFC 6066)

    run(scenario())


def test_expired_certificate(run: Run, certs: Certs) -> None:
    async def scenario() -> None:
        server = certs.server_context(certs.expired)
        async with (
            Receiver(ssl_context=server) as rx,
            sending(ssl_context=certs.client_context()) as sender,
        ):
            result = await send(sender, rx.url(host="localhost", scheme="https"))
        assert result.error == "TLS certificate not trusted: certificate has expired"

    run(scenario())


def test_https_to_a_plain_http_receiver(run: Run) -> None:
    async def scenario() -> None:
        async with Receiver() as rx, sending() as sender:
            result = await send(sender, rx.url(scheme="https"), time_limit=2)
        assert result.http_status is None
        assert result.error is not None
        assert result.error.startswith("TLS handshake failed: "), result
        assert rx.requests == []

    run(scenario())


def test_plain_http_to_a_tls_receiver(run: Run, certs: Certs) -> None:
    async def scenario() -> None:
        server = certs.server_context(certs.trusted)
        async with Receiver(ssl_context=server) as rx, sending() as sender:
            result = await send(sender, rx.url(), time_limit=2)
        assert result.http_status is None
        assert result.error is not None
        assert result.error == "the receiver closed the connection without answering"
        assert rx.requests == []

    run(scenario())


def test_tls_handshake_that_never_completes_times_out(run: Run, certs: Certs) -> None:
    async def silent(
        rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await reader.read()  # reads the ClientHello, never answers it

    async def scenario() -> None:
        async with (
            RawReceiver(silent) as rx,
            sending(ssl_context=certs.client_context()) as sender,
        ):
            started = time.monotonic()
            result = await send(sender, rx.url(scheme="https"), time_limit=0.5)
            assert time.monotonic() - started < 1.5
        assert (result.http_status, result.error) == (None, "timed out after 0.5s")

    run(scenario())


# --- the SSRF guard -------------------------------------------------------------------


def test_address_policy_refuses_loopback_unless_allowed(run: Run) -> None:
    async def scenario() -> None:
        async with Receiver() as rx:
            async with sending(NOTHING_ALLOWED) as sender:
                for host in ("127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"):
                    result = await send(sender, rx.url(host=host))
                    assert result.http_status is None
                    assert result.error is not None
                    assert result.error.startswith("refused by the address policy: "), result
                    assert "loopback" in result.error
            assert rx.requests == []
            async with sending(LOOPBACK_ONLY) as sender:
                # localhost may also resolve to ::1, which stays refused and unused.
                ok(await send(sender, rx.url(host="localhost")))
                ok(await send(sender, rx.url(host="127.0.0.1")))
                result = await send(sender, rx.url(host="[::1]"))
                assert result.error == "refused by the address policy: loopback address ::1"
        assert len(rx.requests) == 2

    run(scenario())


def test_address_policy_sees_no_connection_from_refused_sends(run: Run) -> None:
    # Counted at the TCP level: not even a connection is opened.
    async def scenario() -> None:
        async with (
            RawReceiver(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as rx,
            sending(AddressPolicy.from_strings(["10.0.0.0/8"])) as sender,
        ):
            for host in ("127.0.0.1", "localhost"):
                result = await send(sender, f"http://{host}:{rx.port}/hook")
                assert result.error is not None
                assert "refused by the address policy" in result.error
            await asyncio.sleep(0.05)
        assert rx.connections == 0

    run(scenario())


def test_url_shape_is_checked_before_anything_else(run: Run) -> None:
    async def scenario() -> None:
        async with Receiver() as rx, sending() as sender:
            plain = await sender.send(rx.url(), False, b"{}", {}, LIMIT)
            assert plain.error == "plain http is not allowed for this endpoint"
            creds = await send(sender, rx.url(host="user:pw@127.0.0.1"))
            assert creds.error == "credentials (user info) in the URL are not allowed"
            other = await send(sender, f"ftp://127.0.0.1:{rx.port}/")
            assert other.error is not None
            assert other.error.startswith("scheme 'ftp' is not allowed")
        assert rx.requests == []

    run(scenario())


# --- header injection -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-Api-Key": "abc\r\nX-Injected: 1"}, "not allowed in HTTP headers"),
        ({"X-Api-Key": "abc\nX-Injected: 1"}, "not allowed in HTTP headers"),
        ({"X-Api-Key": "abc\rX-Injected: 1"}, "not allowed in HTTP headers"),
        ({"X-Api-Key": "abc\x00"}, "not allowed in HTTP headers"),
        ({"X-Api-Key\r\nX-Injected": "1"}, "not allowed in HTTP headers"),
        ({"X-Api-Key: 1\r\nX": "1"}, "not allowed in HTTP headers"),
        ({"X-Api-Key": "price in €"}, "Latin-1"),
    ],
)
def test_header_injection_is_refused_and_nothing_is_sent(
    run: Run, headers: dict[str, str], reason: str
) -> None:
    async def scenario() -> None:
        async with RawReceiver(answering(b"HTTP/1.1 200 OK\r\n\r\n")) as rx, sending() as sender:
            result = await send(sender, rx.url(), headers={"webhook-id": "msg_1", **headers})
            assert result.http_status is None
            assert result.error is not None
            assert reason in result.error, result.error
            await asyncio.sleep(0.05)
        assert rx.connections == 0

    run(scenario())


def test_header_injection_on_a_kept_alive_connection_leaves_it_usable(run: Run) -> None:
    async def scenario() -> None:
        async with Receiver() as rx, sending() as sender:
            ok(await send(sender, rx.url()))
            bad = await send(sender, rx.url(), headers={"X-Key": "a\r\n\r\nPOST /smuggled"})
            assert bad.error is not None
            ok(await send(sender, rx.url()))
        assert [seen.raw_path for seen in rx.requests] == ["/hook", "/hook"]
        assert rx.connections == 1

    run(scenario())


# --- load -----------------------------------------------------------------------------


def test_500_concurrent_sends_all_arrive(run: Run) -> None:
    async def scenario() -> None:
        async with Receiver() as rx, sending() as sender:
            started = time.monotonic()
            results = await asyncio.gather(
                *(send(sender, rx.url(f"/hook/{n}"), str(n).encode()) for n in range(500))
            )
            elapsed = time.monotonic() - started
            for result in results:
                ok(result)
            # A second wave finds connections kept from the first.
            before = rx.connections
            again = await asyncio.gather(*(send(sender, rx.url()) for n in range(200)))
            for result in again:
                ok(result)
            assert rx.connections == before
        assert sorted(int(seen.body) for seen in rx.requests[:500]) == list(range(500))
        assert {seen.raw_path for seen in rx.requests[:500]} == {f"/hook/{n}" for n in range(500)}
        assert elapsed < 15

    run(scenario())


def test_sender_closes_its_connections(run: Run) -> None:
    async def scenario() -> None:
        closed = asyncio.Event()

        async def handle(
            rx: RawReceiver, reader: asyncio.StreamReader, w: asyncio.StreamWriter
        ) -> None:
            await rx.read_request(reader)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await w.drain()
            assert await reader.read() == b""
            closed.set()

        async with RawReceiver(handle) as rx:
            sender = Sender(LOOPBACK_ONLY)
            ok(await send(sender, rx.url()))
            await sender.close()
            async with asyncio.timeout(2):
                await closed.wait()

    run(scenario())
