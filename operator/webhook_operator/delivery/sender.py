"""One HTTP attempt to an endpoint, behind the SSRF guard.

The guard sits in the resolver: every address a host name resolves to is checked against
the address policy, and the client connects only to the addresses the resolver returned,
so what was checked is what is connected to. Literal IP hosts are checked the same way.
Through an egress proxy the same holds: the proxy is asked to CONNECT to the checked
address, never to the name. Redirects are not followed. The HTTP client is `http1.py`,
chosen by measurement (see docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from webhook_operator import __version__
from webhook_operator.delivery.egress_proxy import EgressProxy
from webhook_operator.delivery.http1 import ConnectionPool, HttpError, Response, TLSChoice
from webhook_operator.url_policy import AddressPolicy, check_url

USER_AGENT = f"webhook-operator/{__version__}"
SNIPPET_BYTES = 1024
DNS_TTL = 30.0


class RefusedAddress(HttpError):
    """The host resolved only to addresses the policy refuses."""


class GuardedResolver:
    """Host name to the addresses the policy allows, answers kept for DNS_TTL seconds."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            return self._allowed(host, [host])
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise HttpError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = self._allowed(host, found)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(host, port)] = (now + DNS_TTL, allowed)
        return allowed

    def _allowed(self, host: str, addresses: list[str]) -> list[str]:
        allowed, refused = [], []
        for address in addresses:
            reason = self.policy.check(ipaddress.ip_address(address))
            if reason is None:
                allowed.append(address)
            else:
                refused.append(reason)
        if not allowed:
            raise RefusedAddress(
                f"refused by the address policy: {host} resolves to {'; '.join(refused)}"
            )
        return allowed


@dataclass(frozen=True)
class SendResult:
    http_status: int | None
    error: str | None
    response_snippet: str | None
    duration_ms: float
    retry_after: str | None = None


def _literal_ip(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class Sender:
    def __init__(self, policy: AddressPolicy, proxy: EgressProxy | None = None) -> None:
        self.policy = policy
        self.pool = ConnectionPool(GuardedResolver(policy), USER_AGENT, proxy=proxy)
        self._refusals: dict[tuple[str, bool], str | None] = {}

    async def close(self) -> None:
        await self.pool.close()

    def refusal(self, url: str, allow_plain_http: bool) -> str | None:
        # The same few URLs are checked thousands of times a second; the answer only
        # depends on the URL, the flag and the (fixed) policy.
        key = (url, allow_plain_http)
        if key not in self._refusals:
            if len(self._refusals) > 10_000:
                self._refusals.clear()
            self._refusals[key] = self._check(url, allow_plain_http)
        return self._refusals[key]

    def _check(self, url: str, allow_plain_http: bool) -> str | None:
        reason = check_url(url, allow_plain_http)
        if reason:
            return reason
        literal = _literal_ip(url)
        if literal is not None:
            why = self.policy.check(literal)
            if why:
                return f"refused by the address policy: {why}"
        return None

    async def send(
        self,
        url: str,
        allow_plain_http: bool,
        body: bytes,
        headers: dict[str, str],
        time_limit: float,
        tls: TLSChoice | None = None,
    ) -> SendResult:
        started = time.perf_counter()
        refused = self.refusal(url, allow_plain_http)
        if refused:
            return SendResult(None, refused, None, 0.0)
        try:
            response = await self.pool.post(url, headers, body, time_limit, tls)
        except TimeoutError:
            error = f"timed out after {time_limit:g}s"
        except HttpError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc.strerror or exc}"
        else:
            ok = 200 <= response.status < 300
            return SendResult(
                http_status=response.status,
                error=None if ok else _storable(_status_error(response)),
                response_snippet=_storable(_snippet(response.body)),
                duration_ms=(time.perf_counter() - started) * 1000,
                retry_after=response.headers.get("retry-after"),
            )
        return SendResult(None, _storable(error), None, (time.perf_counter() - started) * 1000)


def _storable(text: str | None) -> str | None:
    """What a receiver sent, as any database can hold it: PostgreSQL text refuses NUL, and
    one such answer would otherwise fail the whole batch of recorded results."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd")


def _snippet(body: bytes) -> str | None:
    """The first SNIPPET_BYTES of the answer as text. A character cut in two by the limit is
    left out rather than shown as U+FFFD; bytes that are not UTF-8 are shown as U+FFFD."""
    if len(body) <= SNIPPET_BYTES:
        return body.decode("utf-8", "replace") or None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    return decoder.decode(body[:SNIPPET_BYTES], final=False) or None


def _status_error(response: Response) -> str:
    text = f"{response.status} {response.reason or ''}".strip()
    if 300 <= response.status < 400:
        location = response.headers.get("location")
        return f"{text}: redirects are not followed" + (f" (to {location})" if location else "")
    return text
