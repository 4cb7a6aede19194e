"""The egress proxy settings as pure functions: which variables win, how proxy URLs and
NO_PROXY lists are read, which URLs go through the proxy; and the chart's delivery.proxy
values becoming the delivery container's environment. The tunnels themselves are tested
in tests/integration/test_delivery_proxy.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from webhook_operator.delivery.egress_proxy import (
    EgressProxy,
    ProxyConfigError,
    from_environment,
    parse_no_proxy,
    parse_proxy_url,
)
from webhook_operator.delivery.http1 import ConnectionPool
from webhook_operator.devcluster import chart

# --- which variable -------------------------------------------------------------------------


def test_nothing_set_means_no_proxy() -> None:
    assert from_environment({}) is None
    assert from_environment({"NO_PROXY": "example.com", "HTTPS_PROXY": ""}) is None


def test_lower_case_wins_and_empty_counts_as_unset() -> None:
    proxy = from_environment(
        {
            "https_proxy": "http://lower:3128",
            "HTTPS_PROXY": "http://upper:3128",
            "http_proxy": "",
            "HTTP_PROXY": "http://upper-http:8080",
            "no_proxy": ".lower.example",
            "NO_PROXY": ".upper.example",
        }
    )
    assert proxy is not None
    assert proxy.https is not None
    assert proxy.https.host == "lower"
    assert proxy.http is not None
    assert proxy.http.host == "upper-http"
    assert proxy.no_proxy.text == ".lower.example"


def test_command_line_values_replace_the_environment() -> None:
    env = {"HTTPS_PROXY": "http://env:3128", "NO_PROXY": "example.com"}
    proxy = from_environment(env, https_proxy="http://flag:3128", no_proxy="")
    assert proxy is not None
    assert proxy.https is not None
    assert proxy.https.host == "flag"
    assert proxy.no_proxy.text == ""
    assert from_environment(env, https_proxy="") is None  # an empty flag: no proxy


def test_each_scheme_uses_its_own_proxy() -> None:
    proxy = from_environment({"HTTPS_PROXY": "http://p:3128"})
    assert proxy is not None
    assert proxy.for_target(True, "hooks.example.com", 443) == proxy.https
    assert proxy.for_target(False, "hooks.example.com", 80) is None  # no HTTP_PROXY


# --- proxy URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("http://proxy.internal:3128", "proxy.internal", 3128),
        ("http://proxy.internal:3128/", "proxy.internal", 3128),
        ("http://PROXY.Internal", "proxy.internal", 80),  # the scheme's default port
        ("proxy.internal:3128", "proxy.internal", 3128),  # no scheme: http
        ("  http://10.0.0.5:3128  ", "10.0.0.5", 3128),
        ("http://[fd00::5]:3128", "fd00::5", 3128),
    ],
)
def test_proxy_urls(value: str, host: str, port: int) -> None:
    url = parse_proxy_url(value)
    assert (url.host, url.port, url.authorization) == (host, port, None)
    assert url.shown == f"http://{url.address}"


def test_credentials_become_basic_authorization_and_are_never_shown() -> None:
    url = parse_proxy_url("http://svc%40corp:p%3Ass%2Fword@proxy:3128", "HTTPS_PROXY")
    token = base64.b64encode(b"svc@corp:p:ss/word").decode()
    assert url.authorization == f"Basic {token}"
    assert url.shown == "http://svc@corp:***@proxy:3128"
    assert str(url) == url.shown
    for text in (repr(url), str(url), url.shown):
        assert "p:ss" not in text
        assert "p%3Ass" not in text
        assert token not in text
    proxy = EgressProxy(https=url)
    assert "p%3Ass" not in repr(proxy)
    assert token not in repr(proxy)
    assert "p:ss" not in proxy.describe()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://proxy:3128", "only http:// proxies are supported"),
        ("socks5://proxy:1080", "only http:// proxies are supported"),
        ("http://proxy:3128/path", "has a path"),
        ("http://proxy:3128?x=1", "has a path"),
        ("http://:3128", "names no host"),
        ("http://proxy:notaport", "is not a valid URL"),
        ("http://proxy:99999", "is not a valid URL"),
        ("http://proxy:0", "has port 0"),
        ("http://pro xy:3128", "invalid host name"),
        ("http://proxy..internal:3128", "invalid host name"),
        ("http://-proxy:3128", "invalid host name"),
    ],
)
def test_bad_proxy_urls_are_clear_errors_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message) as caught:
        from_environment({"HTTPS_PROXY": value})
    assert str(caught.value).startswith("HTTPS_PROXY: ")


def test_errors_never_show_the_password() -> None:
    for value in ("socks5://u:hunter2@proxy:1080", "http://u:hunter2@proxy:3128/x", "u:hunter2@"):
        with pytest.raises(ProxyConfigError) as caught:
            from_environment({"https_proxy": value})
        assert "hunter2" not in str(caught.value)
        assert str(caught.value).startswith("https_proxy: ")


def test_bad_no_proxy_is_an_error_naming_the_variable() -> None:
    for value in ("10.0.0.0/33", "example.com:http", "[::1", "a b"):
        with pytest.raises(ProxyConfigError) as caught:
            from_environment({"HTTPS_PROXY": "http://p:1", "no_proxy": value})
        assert str(caught.value).startswith("no_proxy: ")


# --- NO_PROXY -------------------------------------------------------------------------------

NO_PROXY_CASES = [
    # (NO_PROXY, host, port, bypasses the proxy)
    ("*", "anything.example", 443, True),
    ("example.com", "example.com", 443, True),
    ("example.com", "hooks.example.com", 443, True),
    ("example.com", "a.b.example.com", 443, True),
    ("example.com", "notexample.com", 443, False),
    ("example.com", "example.com.evil.test", 443, False),
    (".example.com", "example.com", 443, True),
    (".example.com", "hooks.example.com", 443, True),
    ("*.example.com", "hooks.example.com", 443, True),
    ("Example.COM.", "hooks.example.com", 443, True),
    ("svc,cluster.local", "receiver.team-a.svc", 80, True),
    ("svc, cluster.local", "receiver.team-a.svc.cluster.local", 80, True),
    (" , ,", "example.com", 443, False),
    ("", "example.com", 443, False),
    ("example.com:8443", "example.com", 8443, True),
    ("example.com:8443", "example.com", 443, False),
    ("10.1.2.3", "10.1.2.3", 443, True),
    ("10.1.2.3", "10.1.2.4", 443, False),
    ("10.0.0.0/8", "10.200.3.4", 443, True),
    ("10.0.0.0/8", "11.0.0.1", 443, False),
    ("10.0.0.0/8", "ten.example.com", 443, False),  # names are not resolved to decide
    ("10.0.0.1/8", "10.9.9.9", 443, True),  # host bits are ignored
    ("127.0.0.1:8080", "127.0.0.1", 8080, True),
    ("127.0.0.1:8080", "127.0.0.1", 8081, False),
    ("::1", "::1", 443, True),
    ("[::1]", "::1", 443, True),
    ("[::1]:8443", "::1", 8443, True),
    ("[::1]:8443", "::1", 443, False),
    ("fd00::/8", "fd12:3456::1", 443, True),
    ("fd00::/8", "2001:db8::1", 443, False),
    ("bücher.example", "xn--bcher-kva.example", 443, True),  # the ASCII form, as URLs carry
    ("localhost", "localhost", 80, True),
    ("localhost", "127.0.0.1", 80, False),  # a name never matches an address
]


@pytest.mark.parametrize(("no_proxy", "host", "port", "bypass"), NO_PROXY_CASES)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, bypass: bool) -> None:
    assert parse_no_proxy(no_proxy).matches(host, port) is bypass
    proxy = EgressProxy(https=parse_proxy_url("http://p:3128"), no_proxy=parse_no_proxy(no_proxy))
    assert (proxy.for_target(True, host, port) is None) is bypass


# --- the client's use of it ---------------------------------------------------------------


async def _never(host: str, port: int) -> list[str]:
    raise AssertionError("no resolution expected")


def test_the_decision_is_made_once_per_url_and_kept_with_it() -> None:
    egress = from_environment({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "internal.example"})
    pool = ConnectionPool(_never, "test", proxy=egress)
    proxied = pool.target("https://hooks.example.com/in")
    direct = pool.target("https://api.internal.example/in")
    assert egress is not None
    assert proxied.proxy == egress.https
    assert proxied.origin == (True, "hooks.example.com", 443, True)
    assert direct.proxy is None
    assert direct.origin == (True, "api.internal.example", 443, False)
    assert pool.target("https://hooks.example.com/in") is proxied  # cached, not decided again


def test_without_a_proxy_targets_are_as_before() -> None:
    pool = ConnectionPool(_never, "test")
    target = pool.target("http://hooks.example.com:8080/in?x=1")
    assert target.proxy is None
    assert target.origin == (False, "hooks.example.com", 8080, False)
    assert target.head == "POST /in?x=1 HTTP/1.1\r\nHost: hooks.example.com:8080\r\n"


# --- the chart ------------------------------------------------------------------------------


def _delivery_env(values: dict[str, Any]) -> list[dict[str, Any]]:
    for doc in chart.documents(chart.render(values)):
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-delivery"):
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            return list(container.get("env", []))
    raise AssertionError("no delivery Deployment")


def test_chart_proxy_values_become_the_delivery_containers_environment() -> None:
    env = _delivery_env(
        {
            "delivery": {
                "proxy": {
                    "httpsProxy": "http://egress.infra:3128",
                    "httpProxy": "http://egress.infra:3128",
                    "noProxy": ".svc,.cluster.local,10.0.0.0/8",
                }
            }
        }
    )
    assert env == [
        {"name": "HTTPS_PROXY", "value": "http://egress.infra:3128"},
        {"name": "HTTP_PROXY", "value": "http://egress.infra:3128"},
        {"name": "NO_PROXY", "value": ".svc,.cluster.local,10.0.0.0/8"},
    ]


def test_chart_sets_only_the_proxy_variables_given() -> None:
    assert _delivery_env({}) == []  # the defaults: no proxy, no env at all
    env = _delivery_env({"delivery": {"proxy": {"httpsProxy": "http://egress.infra:3128"}}})
    assert env == [{"name": "HTTPS_PROXY", "value": "http://egress.infra:3128"}]


def test_chart_proxy_sits_next_to_extra_env() -> None:
    extra = {"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": "p", "key": "url"}}}
    env = _delivery_env({"delivery": {"proxy": {"noProxy": ".svc"}, "extraEnv": [extra]}})
    assert env == [{"name": "NO_PROXY", "value": ".svc"}, extra]


@pytest.mark.parametrize(
    "proxy",
    [
        {"httpsProxy": 3128},
        {"https_proxy": "http://p:3128"},
        {"httpsProxy": "https://p:3128"},
        {"noProxy": [".svc"]},
    ],
)
def test_chart_schema_rejects_bad_proxy_values(proxy: dict[str, Any]) -> None:
    with pytest.raises(chart.ChartError, match="schema"):
        chart.render({"delivery": {"proxy": proxy}})
