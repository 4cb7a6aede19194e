"""The SSRF guard: which addresses and URLs deliveries may go to.

Pure function calls on address values and strings: nothing here resolves or connects.
"""

from __future__ import annotations

import ipaddress

import pytest

from webhook_operator.url_policy import AddressPolicy, check_url, is_forbidden, pick_address

# (address, the start of the reason) for every refused range, IPv4 then IPv6.
FORBIDDEN = [
    # unspecified and "this network"
    ("0.0.0.0", "unspecified address 0.0.0.0"),
    ("0.1.2.3", '"this network" address'),
    ("0.255.255.255", '"this network" address'),
    ("::", "unspecified address ::"),
    # loopback
    ("127.0.0.1", "loopback address 127.0.0.1"),
    ("127.255.255.254", "loopback address"),
    ("127.1.2.3", "loopback address"),
    ("::1", "loopback address ::1"),
    # private
    ("10.0.0.5", "private address 10.0.0.5"),
    ("10.255.255.255", "private address"),
    ("172.16.0.1", "private address"),
    ("172.31.255.254", "private address"),
    ("192.168.0.1", "private address"),
    ("192.168.255.255", "private address"),
    ("fc00::1", "private (unique local) address"),
    ("fd12:3456:789a::1", "private (unique local) address"),
    # link-local, cloud metadata included
    ("169.254.0.1", "link-local address 169.254.0.1"),
    ("169.254.169.254", "link-local address 169.254.169.254 (cloud metadata)"),
    ("169.254.170.2", "link-local address 169.254.170.2 (cloud metadata)"),
    ("fe80::1", "link-local address fe80::1"),
    ("fe80::1%eth0", "link-local address"),
    ("febf:ffff::1", "link-local address"),
    ("fd00:ec2::254", "private (unique local) address fd00:ec2::254 (cloud metadata)"),
    # carrier-grade NAT
    ("100.64.0.1", "carrier-grade NAT address"),
    ("100.127.255.254", "carrier-grade NAT address"),
    ("100.100.100.200", "carrier-grade NAT address 100.100.100.200 (cloud metadata)"),
    # multicast
    ("224.0.0.1", "multicast address"),
    ("239.255.255.250", "multicast address"),
    ("ff02::1", "multicast address"),
    ("ff0e::101", "multicast address"),
    # reserved, broadcast
    ("240.0.0.1", "reserved address"),
    ("250.1.2.3", "reserved address"),
    ("255.255.255.254", "reserved address"),
    ("255.255.255.255", "broadcast address 255.255.255.255"),
    # benchmarking
    ("198.18.0.1", "benchmarking address"),
    ("198.19.255.254", "benchmarking address"),
    ("2001:2::1", "benchmarking address"),
    # documentation
    ("192.0.2.1", "documentation (TEST-NET-1) address"),
    ("198.51.100.7", "documentation (TEST-NET-2) address"),
    ("203.0.113.200", "documentation (TEST-NET-3) address"),
    ("2001:db8::1", "documentation address"),
    ("2001:db8:ffff::1", "documentation address"),
    ("3fff::1", "documentation address"),
    # IETF protocol assignments, 6to4 relay anycast
    ("192.0.0.1", "IETF protocol assignment address"),
    ("192.0.0.170", "IETF protocol assignment address"),
    ("192.88.99.1", "6to4 relay anycast address"),
    ("2001:1::1", "IETF protocol assignment address"),
    ("2001:10::1", "IETF protocol assignment address"),
    # site-local, discard-only, SRv6, everything else outside 2000::/3
    ("fec0::1", "site-local address"),
    ("feff::1", "site-local address"),
    ("100::1", "discard-only address"),
    ("100::ffff:ffff:ffff:ffff", "discard-only address"),
    ("5f00::1", "segment routing (SRv6 SID) address"),
    ("4000::1", "reserved (not global unicast) address"),
    ("::ffff:0:808:808", "reserved (not global unicast) address"),  # SIIT, not mapped
    ("64:ff9b:2::1", "reserved (not global unicast) address"),
    ("e000::1", "reserved (not global unicast) address"),
    # IPv4-mapped: judged by the IPv4 address inside
    ("::ffff:127.0.0.1", "loopback address 127.0.0.1 (embedded in IPv4-mapped address"),
    ("::ffff:10.0.0.5", "private address 10.0.0.5 (embedded in IPv4-mapped"),
    ("::ffff:169.254.169.254", "link-local address 169.254.169.254 (cloud metadata) (embedded"),
    ("::ffff:0.0.0.0", "unspecified address 0.0.0.0 (embedded in IPv4-mapped"),
    ("::ffff:255.255.255.255", "broadcast address"),
    ("::ffff:100.64.0.1", "carrier-grade NAT address"),
    # IPv4-compatible (deprecated ::a.b.c.d)
    ("::127.0.0.1", "loopback address 127.0.0.1 (embedded in IPv4-compatible address"),
    ("::10.1.2.3", "private address 10.1.2.3 (embedded in IPv4-compatible"),
    ("::2", '"this network" address 0.0.0.2 (embedded in IPv4-compatible'),
    ("::169.254.169.254", "link-local address 169.254.169.254 (cloud metadata)"),
    # NAT64 well-known prefix
    ("64:ff9b::7f00:1", "loopback address 127.0.0.1 (embedded in NAT64 address"),
    ("64:ff9b::10.0.0.5", "private address 10.0.0.5 (embedded in NAT64"),
    ("64:ff9b::169.254.169.254", "link-local address 169.254.169.254 (cloud metadata)"),
    # NAT64 local-use prefix: every RFC 6052 reading must be public
    ("64:ff9b:1::7f00:1", "unspecified address 0.0.0.0 (embedded in local-use NAT64"),
    ("64:ff9b:1::808:808", "unspecified address 0.0.0.0 (embedded in local-use NAT64"),
    ("64:ff9b:1:a00:0:508:808:808", "private address 10.0.0.5 (embedded in local-use NAT64"),
    # Teredo: server and (obfuscated) client addresses are both checked
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation (TEST-NET-1) address 192.0.2.45"),
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "private address 10.0.0.1 (embedded in Teredo"),
    ("2001:0:808:808:8000:63bf:80ff:fffe", "loopback address 127.0.0.1 (embedded in Teredo"),
    # 6to4
    ("2002:7f00:1::1", "loopback address 127.0.0.1 (embedded in 6to4 address"),
    ("2002:a9fe:a9fe::", "link-local address 169.254.169.254 (cloud metadata) (embedded in 6to4"),
    ("2002:c0a8:101::1", "private address 192.168.1.1 (embedded in 6to4"),
    ("2002::1", "unspecified address 0.0.0.0 (embedded in 6to4"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "192.0.1.255",
    "192.0.3.0",
    "192.169.0.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",  # last unicast before multicast
    "11.0.0.1",
    "126.255.255.255",
    "128.0.0.1",
    "169.253.255.255",
    "169.255.0.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "2001:200::1",  # just past 2001::/23
    "2001:db7:ffff::1",
    "2001:db9::1",
    "3ffe:ffff::1",  # just below 3fff::/20
    "::ffff:8.8.8.8",
    "::ffff:1.1.1.1",
    "::8.8.8.8",  # IPv4-compatible, public inside
    "64:ff9b::8.8.8.8",
    "64:ff9b:1:808:8:808:808:808",  # 8.8.8.8 under every RFC 6052 prefix length
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
    "2002:808:808::1",  # 6to4 for 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_forbidden(address: str, reason: str) -> None:
    got = is_forbidden(ipaddress.ip_address(address))
    assert got is not None
    assert got.startswith(reason), got


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_default_policy_refuses_what_is_forbidden(address: str, reason: str) -> None:
    got = AddressPolicy().check(ipaddress.ip_address(address))
    assert got is not None
    assert got.startswith(reason)


@pytest.mark.parametrize("address", ALLOWED)
def test_default_policy_allows_public(address: str) -> None:
    assert AddressPolicy().check(ipaddress.ip_address(address)) is None


def test_reason_names_the_address() -> None:
    assert is_forbidden(ipaddress.ip_address("127.0.0.1")) == "loopback address 127.0.0.1"
    assert is_forbidden(ipaddress.ip_address("10.0.0.5")) == "private address 10.0.0.5"
    assert (
        is_forbidden(ipaddress.ip_address("169.254.169.254"))
        == "link-local address 169.254.169.254 (cloud metadata)"
    )


# --- allow-list ---------------------------------------------------------------------------


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_allow_list_bypasses_the_refusal() -> None:
    policy = AddressPolicy.from_strings(["127.0.0.0/8", "10.0.0.0/8"])
    assert policy.check(_ip("127.0.0.1")) is None
    assert policy.check(_ip("127.9.9.9")) is None
    assert policy.check(_ip("10.0.0.5")) is None
    assert policy.check(_ip("8.8.8.8")) is None
    assert policy.check(_ip("192.168.1.1")) == "private address 192.168.1.1"
    assert policy.check(_ip("169.254.169.254")) is not None
    assert policy.check(_ip("::1")) is not None  # IPv4 loopback allowed, not IPv6's


def test_ipv4_mapped_addresses_match_ipv4_entries() -> None:
    policy = AddressPolicy.from_strings(["127.0.0.0/8"])
    assert policy.check(_ip("::ffff:127.0.0.1")) is None
    assert policy.check(_ip("::ffff:10.0.0.1")) is not None


def test_ipv4_addresses_match_mapped_entries() -> None:
    policy = AddressPolicy.from_strings(["::ffff:10.0.0.0/104"])
    assert policy.check(_ip("10.1.2.3")) is None
    assert policy.check(_ip("::ffff:10.1.2.3")) is None
    assert policy.check(_ip("11.0.0.0")) is None  # public anyway
    assert policy.check(_ip("192.168.0.1")) is not None


def test_other_embeddings_are_not_unwrapped_for_the_allow_list() -> None:
    policy = AddressPolicy.from_strings(["127.0.0.0/8"])
    assert policy.check(_ip("2002:7f00:1::1")) is not None
    assert policy.check(_ip("64:ff9b::7f00:1")) is not None


def test_ipv6_allow_entries() -> None:
    policy = AddressPolicy.from_strings(["::1/128", "fd00::/8", "fe80::/10"])
    assert policy.check(_ip("::1")) is None
    assert policy.check(_ip("fd12::1")) is None
    assert policy.check(_ip("fe80::1%eth0")) is None
    assert policy.check(_ip("fc00::1")) is not None
    assert policy.check(_ip("127.0.0.1")) is not None


def test_from_strings_accepts_bare_addresses_and_whitespace() -> None:
    policy = AddressPolicy.from_strings([" 127.0.0.1 ", "::1"])
    assert policy.allow == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert policy.check(_ip("127.0.0.1")) is None
    assert policy.check(_ip("127.0.0.2")) is not None


def test_empty_policy() -> None:
    assert AddressPolicy.from_strings([]) == AddressPolicy()
    assert AddressPolicy().allow == ()


def test_allow_everything() -> None:
    policy = AddressPolicy.from_strings(["0.0.0.0/0", "::/0"])
    assert policy.check(_ip("127.0.0.1")) is None
    assert policy.check(_ip("ff02::1")) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("nope", "does not appear to be"),
        ("", "invalid allow-list entry ''"),
        ("10.0.0.0/33", "invalid allow-list entry '10.0.0.0/33'"),
        ("fe80::/129", "invalid allow-list entry"),
    ],
)
def test_from_strings_rejects_bad_cidrs(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid allow-list entry") as info:
        AddressPolicy.from_strings(["127.0.0.0/8", text])
    assert message in str(info.value)
    assert "10.0.0.0/8" in str(info.value)  # shows what a CIDR looks like


def test_policy_is_frozen_and_hashable() -> None:
    policy = AddressPolicy.from_strings(["127.0.0.0/8"])
    assert hash(policy) == hash(AddressPolicy.from_strings(["127.0.0.0/8"]))
    with pytest.raises(AttributeError):
        policy.allow = ()  # type: ignore[misc]


# --- check_url ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://example.com",
        "HTTPS://Example.COM/hook",
        "https://example.com:8443/a/b?c=d#frag",
        "https://example.com./hook",
        "https://sub_domain.example.com/",
        "https://xn--bcher-kva.de/",
        "https://bücher.de/",
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]:443/hook",
        "https://127.0.0.1/hook",  # the address is for the policy, not for check_url
        "https://localhost/hook",
    ],
)
def test_check_url_accepts(url: str) -> None:
    assert check_url(url, allow_plain_http=False) is None


def test_plain_http_only_when_allowed() -> None:
    assert check_url("http://example.com/hook", allow_plain_http=True) is None
    assert check_url("http://example.com/hook", allow_plain_http=False) == (
        "plain http is not allowed for this endpoint"
    )
    assert check_url("https://example.com/hook", allow_plain_http=True) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("gopher://example.com:70/", "scheme 'gopher' is not allowed"),
        ("ws://example.com/", "scheme 'ws' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("example.com/hook", "the URL has no scheme"),
        ("//example.com/hook", "the URL has no scheme"),
        ("", "the URL has no scheme"),
        ("https://", "the URL has no host"),
        ("https:///hook", "the URL has no host"),
        ("https://:443/hook", "the URL has no host"),
        ("https://user:pass@example.com/", "credentials (user info) in the URL are not allowed"),
        ("https://user@example.com/", "credentials (user info) in the URL are not allowed"),
        ("https://@example.com/", "credentials (user info) in the URL are not allowed"),
        ("https://example.com@127.0.0.1/", "credentials (user info)"),
        ("https://example.com\\@127.0.0.1/", "credentials (user info)"),
        ("https://example.com:0/", "port 0 is not a valid port"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com:http/", "not a valid URL"),
        ("https://[::1/", "not a valid URL"),
        ("https://[not-ipv6]/", "not a valid URL"),
        ("https://exa mple.com/", "whitespace or control characters"),
        ("https://example.com/a b", "whitespace or control characters"),
        ("https://exa\tmple.com/", "whitespace or control characters"),
        ("https://example.com\n.evil/", "whitespace or control characters"),
        ("https://example.com\x00/", "whitespace or control characters"),
        (" https://example.com/", "whitespace or control characters"),
        ("https://a\\b.example.com/", "invalid host name"),
        ("https://exa%6dple.com/", "invalid host name"),
        ("https://example..com/", "invalid host name"),
        ("https://.example.com/", "invalid host name"),
        ("https://example.com,evil.com/", "invalid host name"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    got = check_url(url, allow_plain_http=True)
    assert got is not None
    assert reason in got, got


# --- pick_address -------------------------------------------------------------------------


def test_pick_first_allowed_answer_in_resolver_order() -> None:
    assert pick_address(AddressPolicy(), ["8.8.8.8", "1.1.1.1"]) == ("8.8.8.8", None)
    assert pick_address(AddressPolicy(), ["2606:4700:4700::1111", "1.1.1.1"]) == (
        "2606:4700:4700::1111",
        None,
    )


def test_forbidden_answers_are_skipped_not_fatal() -> None:
    # The caller connects to the returned address only, so the private one is never used.
    assert pick_address(AddressPolicy(), ["10.0.0.5", "8.8.8.8"]) == ("8.8.8.8", None)
    assert pick_address(AddressPolicy(), ["::1", "junk", "1.1.1.1"]) == ("1.1.1.1", None)


def test_refusal_names_every_refused_answer_once() -> None:
    address, reason = pick_address(AddressPolicy(), ["127.0.0.1", "10.0.0.5", "127.0.0.1"])
    assert address is None
    assert reason == (
        "refused by the address policy: loopback address 127.0.0.1; private address 10.0.0.5"
    )


def test_unparseable_answers_are_refused() -> None:
    assert pick_address(AddressPolicy(), ["not-an-ip"]) == (
        None,
        "refused by the address policy: unparseable address 'not-an-ip'",
    )


def test_no_answers() -> None:
    assert pick_address(AddressPolicy(), []) == (None, "the host name resolved to no addresses")


def test_pick_honours_the_allow_list() -> None:
    policy = AddressPolicy.from_strings(["127.0.0.0/8"])
    assert pick_address(policy, ["::1", "127.0.0.1"]) == ("127.0.0.1", None)
    address, reason = pick_address(policy, ["::1"])
    assert address is None
    assert reason is not None
    assert "loopback address ::1" in reason


def test_pick_returns_canonical_text() -> None:
    assert pick_address(AddressPolicy(), [" 2606:4700:4700:0::1111 "]) == (
        "2606:4700:4700::1111",
        None,
    )


def test_pick_rejects_a_single_string() -> None:
    with pytest.raises(TypeError):
        pick_address(AddressPolicy(), "8.8.8.8")
