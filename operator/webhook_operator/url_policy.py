"""The SSRF guard: which URLs and which addresses outgoing deliveries may go to.

Endpoint URLs are written by tenants, and the delivery service runs inside the cluster,
next to the apiserver, the cloud metadata service and every other pod. Without a guard a
webhook is a request forgery primitive: point the URL (or the DNS name behind it) at
169.254.169.254 or 10.0.0.1 and the service fetches it on the tenant's behalf. So:

* `check_url` refuses URL shapes that are never legitimate (other schemes, credentials,
  plain http unless the endpoint opted in, hosts that different parsers might read
  differently). It does no DNS.
* `is_forbidden` says whether an address is anything other than public unicast, looking
  inside the IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, Teredo,
  6to4), which would otherwise smuggle 127.0.0.1 past an IPv6-only check.
* `AddressPolicy` adds an operator-configured allow-list on top (tests, in-cluster
  receivers), and `pick_address` applies it to a resolver's answers.

The ranges are spelled out here rather than taken from `ipaddress`'s `is_private` and
friends, whose exact coverage has changed between Python releases.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins, so the narrower entries come before the ranges containing them.
_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), '"this network"'),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignment"),
    (_V4("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_V4("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

# IPv6 ranges refused outright. The ranges that embed an IPv4 address are handled by
# `_embedded_ipv4`, and everything outside 2000::/3 (global unicast) is refused last.
_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("100::/64"), "discard-only"),
    (_V6("fc00::/7"), "private (unique local)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("5f00::/16"), "segment routing (SRv6 SID)"),
)
# Checked after Teredo (2001::/32), which lies inside it.
_V6_IETF = _V6("2001::/23")
_V6_GLOBAL_UNICAST = _V6("2000::/3")

_V6_COMPATIBLE = _V6("::/96")
_V6_NAT64 = _V6("64:ff9b::/96")
_V6_NAT64_LOCAL = _V6("64:ff9b:1::/48")

# Well-known instance metadata services, named in the reason because they are the usual
# target of an SSRF attempt and an operator reading the log should see that at once.
_METADATA: frozenset[Address] = frozenset(
    {
        ipaddress.IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.IPv4Address("169.254.170.2"),  # AWS ECS task credentials
        ipaddress.IPv4Address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.IPv6Address("fd00:ec2::254"),  # AWS over IPv6
    }
)


def _describe(kind: str, addr: Address) -> str:
    note = " (cloud metadata)" if addr in _METADATA else ""
    return f"{kind} address {addr}{note}"


def _ipv4_reason(addr: ipaddress.IPv4Address) -> str | None:
    for network, kind in _V4_RANGES:
        if addr in network:
            return _describe(kind, addr)
    return None


def _low32(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(addr) & 0xFFFF_FFFF)


def _rfc6052_readings(addr: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address `addr` can carry under RFC 6052 inside 64:ff9b:1::/48.

    The local-use NAT64 prefix may be deployed with any prefix length from /48 to /96, and
    each length puts the IPv4 address somewhere else (skipping the reserved octet 8 for
    the shorter ones). Not knowing which the cluster's translator uses, all are read.
    """
    packed = addr.packed
    without_u = packed[:8] + packed[9:]
    readings = [ipaddress.IPv4Address(without_u[start : start + 4]) for start in (6, 7, 8)]
    readings.append(ipaddress.IPv4Address(packed[12:16]))
    return tuple(readings)


def _embedded_ipv4(
    addr: ipaddress.IPv6Address,
) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """The kind of IPv4-carrying form `addr` is, and the IPv4 address(es) inside it."""
    if addr.ipv4_mapped is not None:
        return "IPv4-mapped", (addr.ipv4_mapped,)
    if addr in _V6_COMPATIBLE:
        return "IPv4-compatible", (_low32(addr),)
    if addr in _V6_NAT64:
        return "NAT64", (_low32(addr),)
    if addr in _V6_NAT64_LOCAL:
        return "local-use NAT64 (read at every RFC 6052 prefix length)", _rfc6052_readings(addr)
    if addr.teredo is not None:
        return "Teredo", addr.teredo  # (server, client): traffic reaches both
    if addr.sixtofour is not None:
        return "6to4", (addr.sixtofour,)
    return None


def _embedded_reason(addr: ipaddress.IPv6Address) -> str | None:
    embedded = _embedded_ipv4(addr)
    if embedded is None:
        return None
    kind, inner = embedded
    for candidate in inner:
        reason = _ipv4_reason(candidate)
        if reason is not None:
            return f"{reason} (embedded in {kind} address {addr})"
    return None


def _ipv6_reason(addr: ipaddress.IPv6Address) -> str | None:
    for network, kind in _V6_RANGES:
        if addr in network:
            return _describe(kind, addr)
    if _embedded_ipv4(addr) is not None:
        # These forms stand for their IPv4 address: judged by it, and by it alone.
        return _embedded_reason(addr)
    if addr in _V6_IETF:
        return _describe("IETF protocol assignment", addr)
    if addr not in _V6_GLOBAL_UNICAST:
        return _describe("reserved (not global unicast)", addr)
    return None


def is_forbidden(addr: Address) -> str | None:
    """Why `addr` is not a public unicast address, or None when it is one."""
    if isinstance(addr, ipaddress.IPv4Address):
        return _ipv4_reason(addr)
    return _ipv6_reason(addr)


def _forms(addr: Address) -> tuple[Address, ...]:
    """`addr` and its IPv4 / IPv4-mapped twin, so allow entries match either spelling."""
    if isinstance(addr, ipaddress.IPv4Address):
        return addr, ipaddress.IPv6Address((0xFFFF << 32) | int(addr))
    if addr.ipv4_mapped is not None:
        return addr, addr.ipv4_mapped
    return (addr,)


def _parse_network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(
            f"invalid allow-list entry {text!r}: {exc} (expected a CIDR such as 10.0.0.0/8)"
        ) from None


@dataclass(frozen=True)
class AddressPolicy:
    """Refuse every non-public address except those inside an allow-listed network.

    The allow-list is the operator's escape hatch: 127.0.0.0/8 for tests, 10.0.0.0/8 or a
    Service CIDR for receivers inside the cluster. It matches the address itself and its
    IPv4 / IPv4-mapped twin; other embeddings (6to4, NAT64, ...) are not unwrapped for it.
    """

    allow: tuple[Network, ...] = ()

    @classmethod
    def from_strings(cls, cidrs: Iterable[str]) -> AddressPolicy:
        """A policy from CIDR strings (a bare address means /32 or /128); ValueError if bad."""
        return cls(allow=tuple(_parse_network(text) for text in cidrs))

    def allows(self, addr: Address) -> bool:
        """Whether `addr` is inside one of the allow-listed networks."""
        forms = _forms(addr)
        return any(form in network for network in self.allow for form in forms)

    def check(self, addr: Address) -> str | None:
        """Why the service must not connect to `addr`, or None when it may."""
        if self.allows(addr):
            return None
        return is_forbidden(addr)


# urlsplit silently drops tabs and newlines, and other parsers treat spaces and control
# characters differently; a URL that means different things to different code is refused.
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f]")
# Dot-separated labels of letters (any script), digits, "-" and "_", an optional final
# dot. Keeps out "\", "%" and the like, which aiohttp/yarl might read differently.
_HOST_NAME = re.compile(r"(?:[\w-]+\.)*[\w-]+\.?")


def _scheme_reason(scheme: str, allow_plain_http: bool) -> str | None:
    if scheme == "https":
        return None
    if scheme == "http":
        return None if allow_plain_http else "plain http is not allowed for this endpoint"
    if not scheme:
        return "the URL has no scheme (expected https://...)"
    return f"scheme {scheme!r} is not allowed (only https, or http when allowed)"


def _host_reason(host: str) -> str | None:
    if ":" in host:  # an IPv6 literal, brackets already removed by urlsplit
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"invalid IPv6 address {host!r} in the URL"
        return None
    if not _HOST_NAME.fullmatch(host):
        return f"invalid host name {host!r} in the URL"
    return None


def check_url(url: str, allow_plain_http: bool) -> str | None:
    """Why `url` may not be delivered to, judging its shape only (no DNS); None when fine.

    The addresses the host stands for, literal IPs included, are for `AddressPolicy`.
    """
    if _UNSAFE_CHARS.search(url):
        return "the URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    scheme_reason = _scheme_reason(parts.scheme.lower(), allow_plain_http)
    if scheme_reason is not None:
        return scheme_reason
    if "@" in parts.netloc:
        return "credentials (user info) in the URL are not allowed"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "port 0 is not a valid port"
    return _host_reason(parts.hostname)


def _answer_reason(policy: AddressPolicy, text: str) -> tuple[Address | None, str | None]:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None, f"unparseable address {text!r}"
    return addr, policy.check(addr)


def pick_address(policy: AddressPolicy, addresses: Sequence[str]) -> tuple[str | None, str | None]:
    """The first allowed address among a resolver's answers, or why there is none.

    Returns (address, None) or (None, reason naming every refused answer).

    Only allowed answers are ever used, and a name that resolves to a mix of public and
    forbidden addresses still gets delivered to, over a public one. That is safe because
    the caller connects to the returned address itself instead of resolving again, so
    the forbidden answers are never contacted and a DNS rebind between check and connect
    is impossible. Refusing the whole name on any forbidden answer would add no safety,
    only break hosts with a stray private record (split-horizon DNS does this).
    """
    if isinstance(addresses, str):
        raise TypeError("addresses must be a sequence of strings, not one string")
    reasons: list[str] = []
    for text in addresses:
        addr, reason = _answer_reason(policy, text)
        if addr is not None and reason is None:
            return str(addr), None
        reasons.append(reason or f"refused address {text!r}")
    if not reasons:
        return None, "the host name resolved to no addresses"
    return None, "refused by the address policy: " + "; ".join(dict.fromkeys(reasons))
