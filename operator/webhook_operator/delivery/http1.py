"""A small HTTP/1.1 client made for deliveries: POST a body, read the status, a few headers
and the start of the answer, keep the connection for the next delivery.

Why not aiohttp's client: the delivery service spends most of its time sending, and on
these machines aiohttp used about 200 microseconds of CPU per signed request in a bare
loop, where this client, an asyncio protocol with llhttp (httptools) parsing the answer,
uses about 85-110 (bench/ceiling.py; docs/benchmarks.md). The features a webhook sender
needs are few: keep-alive pools per origin, TLS with the system's trust store, a total
time limit, no redirects, no decompression, and connecting only to addresses the
caller's resolver approved.

Through an egress proxy (egress_proxy.py decides which URLs), every connection is an HTTP
CONNECT tunnel to an address the resolver approved, TLS to the receiver running inside it;
the direct path does no more work than without a proxy.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

from webhook_operator.delivery.egress_proxy import EgressProxy, ProxyURL

READ_LIMIT = 64 * 1024
# What an answer may hold besides its body: status line, headers, trailers, chunk framing.
# More is refused at once rather than held in memory until the time limit (llhttp sets no
# limit of its own, and httptools gathers a header value until it ends).
HEAD_LIMIT = 64 * 1024
# A reused connection the receiver had already closed fails before any answer arrives;
# such a request is sent again once, on a new connection.
_STALE = "stale"


class HttpError(Exception):
    """Why no answer was received; the message is meant for a person."""


class ConnectError(HttpError):
    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {reason}")


class CertificateError(HttpError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"TLS certificate not trusted: {reason}")


class InvalidRequest(HttpError):
    pass


class ProxyError(HttpError):
    """The egress proxy could not be reached or would not open the tunnel."""


class ProxyRefused(ProxyError):
    """The proxy answered CONNECT with a status other than 2xx."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"proxy refused CONNECT: {status} {reason}".strip())
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes  # at most READ_LIMIT bytes of the answer


Origin = tuple[bool, str, int, bool]


@dataclass(frozen=True)
class TLSChoice:
    """An endpoint's own TLS context (private CA, client certificate) and what tells it
    apart: connections are pooled per origin and fingerprint, so a connection made with
    one client certificate is never used for a request meant to carry another."""

    context: ssl.SSLContext
    fingerprint: str


# An origin, or an origin with an endpoint's own TLS context.
PoolKey = Origin | tuple[Origin, str]


@dataclass(frozen=True)
class Target:
    """What a URL becomes once, instead of on every request."""

    tls: bool
    host: str
    port: int
    head: str  # the request line and Host header
    proxy: ProxyURL | None = None  # a CONNECT tunnel through this proxy, else direct
    # The pool's key: connections through a tunnel are never mixed with direct ones.
    origin: Origin = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", (self.tls, self.host, self.port, self.proxy is not None))


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"not an http(s) URL: {url}")
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    try:
        port = parts.port or default
    except ValueError as exc:
        raise InvalidRequest(f"invalid port in {url}: {exc}") from None
    host = parts.hostname
    if ":" not in host:  # IPv6 literals stay as they are
        # What DNS, the Host header and SNI carry is the ASCII (IDNA) form of the name.
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidRequest(f"invalid host name {host!r}: {exc.__cause__ or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == default else f"{shown}:{port}"
    # Non-ASCII or spaces in a path would break the request line; percent-encode them and
    # leave what is already encoded as it is.
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return Target(tls, host, port, f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n")


def _check_header(name: str, value: str) -> None:
    if any(c in name for c in "\r\n:\0 ") or any(c in value for c in "\r\n\0"):
        raise InvalidRequest(f"header {name!r} has a character not allowed in HTTP headers")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Response | str] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._reason = ""
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._head_bytes = 0  # bytes of the answer that were not body
        self._headers_done = False
        self._answered = False
        self.keep_alive = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        self._answered = True
        self._head_bytes += len(data)  # on_body takes the body back out
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError("the receiver switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"invalid HTTP response: {exc}"))
        else:
            if self._head_bytes > HEAD_LIMIT and self._parser is not None:
                self._fail(
                    HttpError(f"the answer's headers are too large (over {HEAD_LIMIT // 1024} KiB)")
                )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and self._parser is not None:
            # An answer without Content-Length ends when the connection does.
            self._finish()
        elif isinstance(exc, ssl.SSLError) and not self._answered:
            # In TLS 1.3 a receiver checks the client certificate after the handshake, so
            # its refusal (an alert such as certificate required) arrives here.
            self._fail(HttpError(f"the receiver ended TLS: {exc.reason or exc}"))
        elif not self._answered:
            waiter.set_result(_STALE)
        else:
            self._fail(HttpError("the receiver closed the connection in the middle of its answer"))

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._parser is None:
            # A second answer to one request, in the same read as the first: the receiver
            # is out of step, and the connection is not used again.
            self.keep_alive = False
            self.close()

    def on_status(self, status: bytes) -> None:
        self._reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._head_bytes -= len(body)
        room = READ_LIMIT - len(self._body)
        self._body += body[:room]
        if len(body) > room:
            # Enough has been read to report; the rest is not waited for.
            self.keep_alive = False
            self._finish()
            self.close()

    def on_message_complete(self) -> None:
        parser = self._parser
        if parser is None:  # the answer was already reported (it was too long)
            return
        if 100 <= parser.get_status_code() < 200:  # informational; the real answer follows
            self._reason, self._headers, self._headers_done = "", {}, False
            return
        self.keep_alive = parser.should_keep_alive()
        self._finish()

    # -- use ---------------------------------------------------------------------------

    def exchange(self, request: bytes) -> asyncio.Future[Response | str]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._reason, self._headers, self._body = "", {}, bytearray()
        self._head_bytes = 0
        self._headers_done = self._answered = self.keep_alive = False
        self.transport.write(request)
        return self._waiter

    def _finish(self) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or waiter.done() or parser is None:
            return
        self._parser = None
        # The Response gets its own headers: whatever the parser still reads after this
        # (bytes that followed the answer) goes to a dict nobody looks at.
        headers, self._headers = self._headers, {}
        waiter.set_result(
            Response(parser.get_status_code(), self._reason, headers, bytes(self._body))
        )

    def time_out(self, waiter: asyncio.Future[Response | str]) -> None:
        if waiter is self._waiter and not waiter.done():
            self._fail(TimeoutError())

    def _fail(self, exc: Exception) -> None:
        self._parser = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


Resolve = Callable[[str, int], Awaitable[list[str]]]


class ConnectionPool:
    """Keep-alive connections per origin (scheme, host, port)."""

    def __init__(
        self,
        resolve: Resolve,
        user_agent: str,
        ssl_context: ssl.SSLContext | None = None,
        idle_seconds: float = 30.0,
        # As many as the dispatcher keeps in flight: fewer would close and reopen
        # connections under load (the profile showed 11% of the loop in connecting).
        max_idle_per_origin: int = 1024,
        proxy: EgressProxy | None = None,
    ) -> None:
        self._resolve = resolve
        self._proxy = proxy
        self._user_agent = user_agent
        self._ssl = ssl_context or ssl.create_default_context()
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle_per_origin
        self._idle: dict[PoolKey, collections.deque[_Connection]] = {}
        self._targets: dict[str, Target] = {}
        self._last_sweep = time.monotonic()

    def target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:
                self._targets.clear()
            target = parse_target(url)
            if self._proxy is not None:
                # Decided once per URL, kept with it: no per-request work either way.
                proxy = self._proxy.for_target(target.tls, target.host, target.port)
                if proxy is not None:
                    target = dataclasses.replace(target, proxy=proxy)
            self._targets[url] = target
        return target

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        time_limit: float,
        tls: TLSChoice | None = None,
    ) -> Response:
        """Raises HttpError, or TimeoutError when `time_limit` seconds pass first. `tls`:
        the endpoint's own TLS context, else the pool's (the system's trust store)."""
        target = self.target(url)
        request = self._encode(target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        key: PoolKey = target.origin if tls is None else (target.origin, tls.fingerprint)
        conn: _Connection | None = None
        try:
            conn = self._reuse(key)
            if conn is not None:
                answer = await self._exchange(loop, conn, request, deadline)
                if answer == _STALE:
                    conn = None
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(target, self._ssl if tls is None else tls.context)
                answer = await self._exchange(loop, conn, request, deadline)
                if answer == _STALE:
                    raise HttpError("the receiver closed the connection without answering")
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        assert isinstance(answer, Response)
        self._release(key, conn)
        return answer

    @staticmethod
    async def _exchange(
        loop: asyncio.AbstractEventLoop, conn: _Connection, request: bytes, deadline: float
    ) -> Response | str:
        # A plain timer that fails the waiter: asyncio.timeout() around every request cost
        # about 5% of the delivery loop in profiles.
        waiter = conn.exchange(request)
        timer = loop.call_at(deadline, conn.time_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _encode(self, target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
        lines = [target.head, f"User-Agent: {self._user_agent}\r\n"]
        for name, value in headers.items():
            _check_header(name, value)
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        try:
            return "".join(lines).encode("latin-1") + body
        except UnicodeEncodeError as exc:
            raise InvalidRequest(f"header values must be Latin-1 text: {exc}") from None

    def _reuse(self, origin: PoolKey) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used is the least likely to be stale
            if not conn.closed and now - conn.idle_since < self._idle_seconds:
                return conn
            conn.close()
        return None

    def _release(self, origin: PoolKey, conn: _Connection) -> None:
        if conn.closed or not conn.keep_alive:
            conn.close()
            return
        idle = self._idle.setdefault(origin, collections.deque())
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)
        if conn.idle_since - self._last_sweep > self._idle_seconds:
            self._sweep(conn.idle_since)

    def _sweep(self, now: float) -> None:
        """Close connections idle too long, so receivers no longer sent to are let go."""
        self._last_sweep = now
        for origin in list(self._idle):
            fresh = self._idle_seconds
            keep = collections.deque(
                c for c in self._idle[origin] if not c.closed and now - c.idle_since < fresh
            )
            for conn in self._idle[origin]:
                if conn not in keep:
                    conn.close()
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]

    async def _connect(self, target: Target, context: ssl.SSLContext) -> _Connection:
        if target.proxy is not None:
            return await self._connect_through(target, target.proxy, context)
        loop = asyncio.get_running_loop()
        addresses = await self._resolve(target.host, target.port)
        reason = "no address to connect to"
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    _Connection,
                    address,
                    target.port,
                    ssl=context if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
                return conn
            except ssl.SSLCertVerificationError as exc:
                raise CertificateError(exc.verify_message or str(exc)) from None
            except ssl.SSLError as exc:
                raise HttpError(f"TLS handshake failed: {exc.reason or exc}") from None
            except OSError as exc:
                # asyncio says "Connect call failed (address)" where uvloop says "Connection
                # refused"; the errno says what happened either way.
                reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
        raise ConnectError(target.host, target.port, reason)

    async def _connect_through(
        self, target: Target, proxy: ProxyURL, context: ssl.SSLContext
    ) -> _Connection:
        """A tunnel to one of the addresses the resolver approved (the proxy is given the
        address, not the name, so it connects to what was checked), then TLS inside it
        with the URL's host name for SNI and certificate checks."""
        loop = asyncio.get_running_loop()
        addresses = await self._resolve(target.host, target.port)
        error: HttpError = ConnectError(target.host, target.port, "no address to connect to")
        for address in addresses:
            try:
                sock = await _open_tunnel(loop, proxy, address, target.port)
            except ProxyRefused as exc:
                error = exc
                if exc.status in (502, 503, 504):  # that address failed: try the next
                    continue
                raise
            try:
                _, conn = await loop.create_connection(
                    _Connection,
                    sock=sock,
                    ssl=context if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
                return conn
            except ssl.SSLCertVerificationError as exc:
                sock.close()
                raise CertificateError(exc.verify_message or str(exc)) from None
            except ssl.SSLError as exc:
                sock.close()
                raise HttpError(f"TLS handshake failed: {exc.reason or exc}") from None
            except OSError as exc:
                sock.close()
                reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
                error = ConnectError(target.host, target.port, f"{reason} (through the proxy)")
            except BaseException:
                sock.close()
                raise
        raise error

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _open_tunnel(
    loop: asyncio.AbstractEventLoop, proxy: ProxyURL, address: str, port: int
) -> socket.socket:
    """A socket to `proxy` on which CONNECT address:port succeeded. The Proxy-Authorization
    value goes only to the proxy, never into an error or a log."""
    try:
        infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProxyError(f"cannot resolve the proxy {proxy.host}: {exc.strerror or exc}") from None
    reason = "no address to connect to"
    sock: socket.socket | None = None
    for family, kind, proto, _, sockaddr in infos:
        candidate = socket.socket(family, kind, proto)
        try:
            candidate.setblocking(False)
            await loop.sock_connect(candidate, sockaddr)
        except OSError as exc:
            candidate.close()
            reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
            continue
        except BaseException:
            candidate.close()
            raise
        sock = candidate
        break
    if sock is None:
        raise ProxyError(f"cannot connect to the proxy {proxy.address}: {reason}")
    try:
        authority = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if proxy.authorization is not None:
            request += f"Proxy-Authorization: {proxy.authorization}\r\n"
        await loop.sock_sendall(sock, (request + "\r\n").encode("latin-1"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            if len(answer) > HEAD_LIMIT:
                raise ProxyError("the proxy's answer to CONNECT is too large")
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise ProxyError("the proxy closed the connection without answering CONNECT")
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        version, _, tail = status_line.partition(" ")
        code, _, phrase = tail.partition(" ")
        if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
            raise ProxyError(f"the proxy answered CONNECT with {status_line[:100]!r}")
        if not 200 <= int(code) < 300:
            raise ProxyRefused(int(code), phrase.strip()[:200])
        if rest:  # nothing may come before the request: the receiver cannot have spoken
            raise ProxyError("the proxy sent data after accepting CONNECT")
        return sock
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
        raise ProxyError(f"the connection to the proxy {proxy.address} failed: {reason}") from None
    except BaseException:
        sock.close()
        raise
