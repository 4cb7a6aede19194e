"""Which deliveries go through an egress proxy, from HTTPS_PROXY, HTTP_PROXY and NO_PROXY.

Pure: the environment is read once, in the composition root (`cli.py`), and handed to
`from_environment`; what it returns travels to the HTTP client (`http1.py`), which asks it
once per URL (the answer is kept with the parsed URL), never per request.

The conventions are curl's and Python's (urllib, requests), documented in
docs/configuration.md:

* the lower-case variable wins over the upper-case one (`https_proxy` over `HTTPS_PROXY`);
  an empty value counts as unset;
* https URLs use HTTPS_PROXY, http URLs use HTTP_PROXY; ALL_PROXY is not read;
* a proxy URL is `http://[user:password@]host[:port]` (port 80 when left out, `http://`
  when there is no scheme); only plain-HTTP proxies, reached with CONNECT, are supported;
* NO_PROXY is a comma-separated list: `*` (nothing is proxied), host names and domains
  (`example.com` and `.example.com` both match example.com and every name under it),
  IP addresses and CIDRs (matched against URLs whose host is an IP literal: names are not
  resolved to decide), each optionally with `:port`.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class ProxyConfigError(ValueError):
    """A proxy setting that cannot be used; the message names the variable (never a
    password) and says what is expected."""


@dataclass(frozen=True)
class ProxyURL:
    """Where the proxy is, and the Proxy-Authorization value when the URL had credentials."""

    host: str
    port: int
    shown: str  # the URL with its password replaced by ***: safe to log
    authorization: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.shown

    @property
    def address(self) -> str:
        """host:port, for messages."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class _Entry:
    name: str | None = None  # a host name or domain, lower-case, no leading or trailing dot
    network: Network | None = None  # an address is a /32 or /128 network
    port: int | None = None  # None: any port


@dataclass(frozen=True)
class NoProxy:
    """The parsed NO_PROXY list."""

    everything: bool = False
    entries: tuple[_Entry, ...] = ()
    text: str = ""

    def matches(self, host: str, port: int) -> bool:
        """Whether a URL's host (lower-case, ASCII form, IPv6 without brackets) and port
        bypass the proxy."""
        if self.everything:
            return True
        if not self.entries:
            return False
        try:
            address: Address | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        name = host.lower().rstrip(".")
        for entry in self.entries:
            if entry.port is not None and entry.port != port:
                continue
            if address is not None:
                if entry.network is not None and address in entry.network:
                    return True
            elif entry.name is not None and (name == entry.name or name.endswith("." + entry.name)):
                return True
        return False


@dataclass(frozen=True)
class EgressProxy:
    """The proxy for each scheme and the NO_PROXY exceptions."""

    https: ProxyURL | None = None
    http: ProxyURL | None = None
    no_proxy: NoProxy = field(default_factory=NoProxy)

    def for_target(self, tls: bool, host: str, port: int) -> ProxyURL | None:
        """The proxy a URL goes through, or None to connect directly."""
        proxy = self.https if tls else self.http
        if proxy is None or self.no_proxy.matches(host, port):
            return None
        return proxy

    def describe(self) -> str:
        """One line for the start-up log (no password)."""
        parts = [
            f"https URLs through {self.https}" if self.https else "https URLs directly",
            f"http URLs through {self.http}" if self.http else "http URLs directly",
        ]
        if self.no_proxy.text:
            parts.append(f"except NO_PROXY={self.no_proxy.text}")
        return "deliveries go " + ", ".join(parts)


def _redact(text: str) -> str:
    """A proxy URL as it may be shown: whatever stands before an @ is hidden."""
    return re.sub(r"^([^/]*//)?[^/@]*@", lambda m: (m.group(1) or "") + "***@", text)


def parse_proxy_url(value: str, source: str = "proxy URL") -> ProxyURL:
    """`http://[user:password@]host[:port]`; raises ProxyConfigError naming `source`."""
    text = value.strip()
    shown = _redact(text)
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ProxyConfigError(f"{source}: {shown!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise ProxyConfigError(
            f"{source}: only http:// proxies are supported (deliveries tunnel through them "
            f"with CONNECT, TLS to the receiver inside), not {scheme}:// ({shown!r})"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyConfigError(
            f"{source}: {shown!r} has a path; expected http://[user:password@]host[:port]"
        )
    host = parts.hostname or ""
    if not host:
        raise ProxyConfigError(f"{source}: {shown!r} names no host")
    host = _proxy_host(host)
    if not host:
        raise ProxyConfigError(f"{source}: {shown!r} has an invalid host name")
    if port == 0:
        raise ProxyConfigError(f"{source}: {shown!r} has port 0")
    port = port or 80
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    authorization = None
    if parts.username is not None:
        user = unquote(parts.username)
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
        shown = f"http://{user}:***@{where}"
    else:
        shown = f"http://{where}"
    return ProxyURL(host, port, shown, authorization)


def _proxy_host(host: str) -> str:
    """The host in the form used to connect, or "" when it is not a valid one."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return ""
    return name if _NAME.match(name) else ""


def parse_no_proxy(value: str, source: str = "NO_PROXY") -> NoProxy:
    """A NO_PROXY list; raises ProxyConfigError for an entry that cannot match anything."""
    entries: list[_Entry] = []
    everything = False
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            everything = True
            continue
        entries.append(_no_proxy_entry(item, source))
    return NoProxy(everything, tuple(entries), value.strip())


def _no_proxy_entry(item: str, source: str) -> _Entry:
    host, port = item, None
    if item.startswith("["):  # [v6] or [v6]:port
        end = item.find("]")
        if end < 0:
            raise ProxyConfigError(f"{source}: {item!r} has no closing ]")
        host, rest = item[1:end], item[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ProxyConfigError(f"{source}: {item!r} is not [address]:port")
            port = _port(rest[1:], item, source)
    elif item.count(":") == 1:  # name:port or v4:port (several colons: a bare IPv6 address)
        host, _, raw_port = item.partition(":")
        port = _port(raw_port, item, source)
    if "/" in host:
        try:
            return _Entry(network=ipaddress.ip_network(host, strict=False), port=port)
        except ValueError as exc:
            raise ProxyConfigError(f"{source}: {item!r} is not a valid CIDR: {exc}") from None
    try:
        return _Entry(network=ipaddress.ip_network(ipaddress.ip_address(host)), port=port)
    except ValueError:
        pass
    name = host.lower()
    name = name.removeprefix("*.").lstrip(".").rstrip(".")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ProxyConfigError(f"{source}: {item!r} is not a valid host or domain") from None
    if not _NAME.match(name):
        raise ProxyConfigError(f"{source}: {item!r} is not a host name, domain, IP address or CIDR")
    return _Entry(name=name, port=port)


def _port(text: str, item: str, source: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ProxyConfigError(f"{source}: {item!r} has an invalid port")
    return int(text)


def _variable(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(the variable's name as set, its value): lower case first, as curl and Python do."""
    for key in (name.lower(), name.upper()):
        value = environ.get(key, "").strip()
        if value:
            return key, value
    return None


def from_environment(
    environ: Mapping[str, str],
    https_proxy: str | None = None,
    http_proxy: str | None = None,
    no_proxy: str | None = None,
) -> EgressProxy | None:
    """The proxy settings from the environment, each replaced by the matching command-line
    value when one is given; None when no proxy is set (deliveries connect directly).
    Raises ProxyConfigError for a value that cannot be used."""

    def pick(value: str | None, name: str, flag: str) -> tuple[str, str] | None:
        if value is not None:
            return (flag, value.strip()) if value.strip() else None
        return _variable(environ, name)

    https = pick(https_proxy, "HTTPS_PROXY", "--https-proxy")
    http = pick(http_proxy, "HTTP_PROXY", "--http-proxy")
    if https is None and http is None:
        return None
    exceptions = pick(no_proxy, "NO_PROXY", "--no-proxy")
    return EgressProxy(
        https=parse_proxy_url(https[1], https[0]) if https else None,
        http=parse_proxy_url(http[1], http[0]) if http else None,
        no_proxy=parse_no_proxy(exceptions[1], exceptions[0]) if exceptions else NoProxy(),
    )
