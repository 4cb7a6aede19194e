"""The kubectl plugin's pure parts: flag parsing, kubeconfig and target resolution, the
shared flags, error mapping of the services' answers, which key verified a delivery, and
how `portal` finds the portal, the token and the ticket's subject."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import typer.main
from typer.testing import CliRunner

from webhook_operator import signing
from webhook_operator.plugin import parsing
from webhook_operator.plugin.client import DeliveryClient
from webhook_operator.plugin.commands import app, ticket_subject, verify_with
from webhook_operator.plugin.errors import Exit, PluginError
from webhook_operator.plugin.options import Shared, shared_options
from webhook_operator.plugin.render import Output
from webhook_operator.plugin.target import Target, load_kubeconfig, token_from_user

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

# -- --since -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("2h", timedelta(hours=2)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("3d", timedelta(days=3)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 2h ", timedelta(hours=2)),
    ],
)
def test_relative_since_counts_back_from_now(text: str, back: timedelta) -> None:
    assert parsing.parse_since(text, NOW) == NOW - back


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T10:00:00.250Z", datetime(2026, 11, 25, 10, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-11-25T11:00:00+01:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25", datetime(2026, 11, 25, tzinfo=UTC)),
        # No offset: UTC, as the service reads it, never the machine's local time.
        ("2026-11-25T10:00:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
    ],
)
def test_absolute_since_is_rfc3339(text: str, expected: datetime) -> None:
    assert parsing.parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "2 hours", "-2h", "2w", "10:00"])
def test_bad_since_names_both_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339 .* duration back from now"):
        parsing.parse_since(text, NOW)


def test_rfc3339_is_utc_with_z() -> None:
    local = datetime(2026, 11, 25, 13, 0, tzinfo=UTC).astimezone()
    assert parsing.rfc3339(local) == "2026-11-25T13:00:00.000Z"


def test_tolerance_takes_seconds_or_durations() -> None:
    assert parsing.parse_tolerance("300") == 300
    assert parsing.parse_tolerance("10m") == 600
    assert parsing.parse_tolerance("1d") == 86_400
    with pytest.raises(ValueError, match="--tolerance"):
        parsing.parse_tolerance("soon")


# -- headers -------------------------------------------------------------------------------


def test_header_flags_lowercase_names_and_keep_values() -> None:
    headers = parsing.parse_headers(
        [
            "Webhook-Id: msg_1",
            "webhook-timestamp:1700000000",
            "webhook-signature:  v1,abc= v1,def=  ",
        ]
    )
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        # Spaces separate signatures; only the ends are trimmed.
        "webhook-signature": "v1,abc= v1,def=",
    }


def test_header_value_may_contain_colons() -> None:
    assert parsing.parse_header_line("x-at: 10:00:00") == ("x-at", "10:00:00")


@pytest.mark.parametrize("line", ["webhook-id msg_1", ": value", "bad name: x"])
def test_malformed_header_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="header"):
        parsing.parse_header_line(line)


def test_headers_file_from_a_request_dump_stops_at_the_body() -> None:
    dump = (
        "POST /hook HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "webhook-id: msg_1\r\n"
        "Webhook-Timestamp: 1700000000\r\n"
        "webhook-signature: v1,abc=\r\n"
        "\r\n"
        '{"type": "x: y"}\r\n'
    )
    assert parsing.parse_headers_text(dump) == {
        "host": "127.0.0.1",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1,abc=",
    }


def test_headers_file_from_curl_verbose() -> None:
    text = "> POST /hook HTTP/1.1\n> webhook-id: msg_1\n> webhook-timestamp: 1\n>\n"
    assert parsing.parse_headers_text(text) == {"webhook-id": "msg_1", "webhook-timestamp": "1"}


def test_headers_file_as_json_object() -> None:
    text = json.dumps({"Webhook-Id": "msg_1", "webhook-timestamp": 1700000000})
    assert parsing.parse_headers_text(text) == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
    }


@pytest.mark.parametrize("text", ["", "\n\n", "[1, 2]", "{nope"])
def test_empty_or_bad_headers_file_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="header"):
        parsing.parse_headers_text(text)


# -- statuses, data, age ---------------------------------------------------------------------


def test_statuses_split_commas_and_dedupe() -> None:
    assert parsing.parse_statuses(["failed,exhausted", "Failed", " held "]) == [
        "failed",
        "exhausted",
        "held",
    ]
    with pytest.raises(ValueError, match="one of pending"):
        parsing.parse_statuses(["faild"])


def test_data_json_errors_say_where() -> None:
    assert parsing.parse_json_data('{"a": 1}', "--data") == {"a": 1}
    with pytest.raises(ValueError, match="--data is not valid JSON"):
        parsing.parse_json_data("{a: 1}", "--data")


@pytest.mark.parametrize(
    ("back", "shown"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(minutes=12), "12m"),
        (timedelta(hours=3, minutes=5), "3h5m"),
        (timedelta(hours=30), "30h"),
        (timedelta(days=4), "4d"),
        (timedelta(days=40), "40d"),
        (timedelta(seconds=-3), "0s"),
    ],
)
def test_age_like_kubectl(back: timedelta, shown: str) -> None:
    stamp = (NOW - back).isoformat().replace("+00:00", "Z")
    assert parsing.age(stamp, NOW) == shown


# -- kubeconfig, credentials and the target ------------------------------------------------


def kubeconfig(path: Path, user: dict[str, object], namespace: str | None = "team-a") -> Path:
    context: dict[str, object] = {"cluster": "c", "user": "me"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "me", "user": user}],
                "contexts": [{"name": "ctx", "context": context}],
                "current-context": "ctx",
            }
        )
    )
    return path


def test_token_and_namespace_from_the_current_context(tmp_path: Path) -> None:
    config = load_kubeconfig(str(kubeconfig(tmp_path / "config", {"token": "abc"})))
    assert config.namespace == "team-a"
    assert token_from_user(config) == "abc"


def test_token_file_is_relative_to_its_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    config = load_kubeconfig(str(kubeconfig(tmp_path / "config", {"tokenFile": "token"})))
    assert token_from_user(config) == "from-file"


@pytest.mark.parametrize(
    ("user", "how"),
    [
        ({"exec": {"command": "aws"}}, "an exec plugin"),
        ({"client-certificate-data": "x", "client-key-data": "y"}, "a client certificate"),
        ({}, "no credentials"),
    ],
)
def test_users_without_a_token_are_told_how_to_get_one(
    tmp_path: Path, user: dict[str, object], how: str
) -> None:
    config = load_kubeconfig(str(kubeconfig(tmp_path / "config", user)))
    with pytest.raises(PluginError) as caught:
        token_from_user(config)
    assert how in caught.value.message
    assert "--token" in caught.value.message
    assert "WEBHOOK_OPERATOR_TOKEN" in caught.value.message
    assert "kubectl create token" in caught.value.message
    assert caught.value.code == Exit.DENIED


def test_kubeconfig_lists_merge_first_wins(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", {"token": "first"}, namespace="one")
    second = kubeconfig(tmp_path / "b", {"token": "second"}, namespace="two")
    config = load_kubeconfig(f"{tmp_path / 'missing'}:{first}:{second}")
    assert (config.namespace, token_from_user(config)) == ("one", "first")


def test_playground_state_supplies_server_and_kubeconfig(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "dev-kubeconfig", {"token": "dev"}, namespace=None)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"deliveryUrl": "http://127.0.0.1:9/", "kubeconfig": str(config)}))
    target = Target(state_path=state, home_kubeconfig=tmp_path / "absent")
    assert target.server[0] == "http://127.0.0.1:9"
    assert "webhook-operator dev" in target.server[1]
    assert target.kubeconfig_spec[0] == str(config)
    assert (target.namespace, target.token) == ("default", "dev")


def test_explicit_server_ignores_the_playground(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"deliveryUrl": "http://127.0.0.1:9", "kubeconfig": "/dev/x"}))
    home = kubeconfig(tmp_path / "home", {"token": "home"})
    target = Target(server_flag="http://svc:8080", state_path=state, home_kubeconfig=home)
    assert target.server == ("http://svc:8080", "--server")
    assert target.kubeconfig_spec[0] == str(home)
    flagged = Target(namespace_flag="x", token_flag="t", state_path=state, home_kubeconfig=home)
    assert (flagged.namespace, flagged.token) == ("x", "t")


def test_no_server_anywhere_says_how_to_reach_one(tmp_path: Path) -> None:
    target = Target(state_path=tmp_path / "none.json", home_kubeconfig=tmp_path / "absent")
    with pytest.raises(PluginError) as caught:
        _ = target.server
    message = caught.value.message
    assert "--server" in message
    assert "WEBHOOK_OPERATOR_SERVER" in message
    assert "port-forward svc/webhook-operator-delivery 8080" in message


# -- the service's answers -----------------------------------------------------------------


def answering(status: int, body: object) -> DeliveryClient:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return DeliveryClient("http://svc", "tok", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, Exit.DENIED),
        (403, Exit.DENIED),
        (404, Exit.NOT_FOUND),
        (400, Exit.USAGE),
        (422, Exit.USAGE),
        (500, Exit.SERVER),
        (503, Exit.UNREACHABLE),
    ],
)
def test_http_errors_map_to_exit_codes_with_the_service_message(status: int, code: Exit) -> None:
    svc = answering(status, {"error": {"reason": "Forbidden", "message": "x may not list y"}})
    with pytest.raises(PluginError) as caught:
        svc.delivery("ns", "dlv_1")
    assert caught.value.code == code
    assert caught.value.message.startswith("x may not list y")


def test_a_503_says_when_to_retry() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        body = {"error": {"reason": "KubernetesUnavailable", "message": "Kubernetes is down."}}
        return httpx.Response(503, json=body, headers={"Retry-After": "5"})

    svc = DeliveryClient("http://svc", "tok", transport=httpx.MockTransport(handler))
    with pytest.raises(PluginError) as caught:
        svc.ping("ns", "ep")
    assert caught.value.code == Exit.UNREACHABLE
    assert caught.value.message == (
        "Kubernetes is down; retry after 5 s (KubernetesUnavailable, HTTP 503)"
    )


def test_a_non_json_error_is_reported_plainly() -> None:
    with pytest.raises(PluginError) as caught:
        answering(502, "Bad Gateway\n<html>").ping("ns", "ep")
    assert caught.value.code == Exit.SERVER
    assert "HTTP 502" in caught.value.message
    assert "Bad Gateway" in caught.value.message


def test_names_cannot_change_the_route() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={})

    svc = DeliveryClient("http://svc", "t", transport=httpx.MockTransport(handler))
    svc.delivery("ns", "../endpoints/x?y")
    assert seen == ["/v1/namespaces/ns/deliveries/..%2Fendpoints%2Fx%3Fy"]


# -- verify ----------------------------------------------------------------------------------


def test_verify_reports_which_key_signed() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    body = b'{"type":"invoice.paid"}'
    stamp = int(time.time())
    headers = signing.webhook_headers([signing.decode_secret(old)], "msg_1", stamp, body)
    assert verify_with([old], headers, body, 300) == 1
    assert verify_with([new, old], headers, body, 300) == 2
    with pytest.raises(signing.InvalidSignature, match="no signature matched"):
        verify_with([new], headers, body + b" ", 300)
    with pytest.raises(signing.InvalidSecret):
        verify_with(["whsec_short"], headers, body, 300)


# -- the shared options ----------------------------------------------------------------------

SHARED_FLAGS = ("namespace", "server", "kubeconfig", "token", "output")


def test_shared_flags_are_the_same_on_every_command() -> None:
    group = typer.main.get_command(app)
    commands = group.commands
    described = set()
    for name, command in commands.items():
        if name == "version":
            continue
        shared = [p for p in command.params if p.name in SHARED_FLAGS]
        assert [p.name for p in shared] == list(SHARED_FLAGS), name
        described.add(tuple((tuple(p.opts), p.envvar, p.help) for p in shared))
    (flags,) = described  # the same flags, variables and help text everywhere
    assert [opts for opts, _, _ in flags][:2] == [("--namespace", "-n"), ("--server",)]
    assert [env for _, env, _ in flags][1:4] == [
        "WEBHOOK_OPERATOR_SERVER",
        "KUBECONFIG",
        "WEBHOOK_OPERATOR_TOKEN",
    ]


def test_shared_flags_work_before_and_after_the_arguments() -> None:
    probe = typer.Typer()
    got: list[tuple[str, Shared]] = []

    @probe.command()
    @shared_options
    def show(endpoint: str, *, opts: Shared) -> None:
        got.append((endpoint, opts))

    @probe.command()
    def other() -> None:  # a second command, so `show` is a subcommand as in the plugin
        pass

    env = {"WEBHOOK_OPERATOR_SERVER": "http://127.0.0.1:9"}
    for argv in (
        ["show", "ep", "-n", "team-a", "--token", "t", "-o", "json"],
        ["show", "-n", "team-a", "--token", "t", "ep", "--output", "JSON"],
    ):
        result = CliRunner().invoke(probe, argv, env=env)
        assert result.exit_code == 0, result.output
    expected = Shared("team-a", "http://127.0.0.1:9", None, "t", Output.JSON)
    assert got == [("ep", expected), ("ep", expected)]


# -- kubectl webhooks portal -----------------------------------------------------------------


def sa_token(subject: str) -> str:
    """A token shaped like a ServiceAccount's: a JWT whose payload names the subject."""

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'sub': subject})}.c2ln"


def test_portal_url_from_the_flag_keeps_a_path_and_drops_a_ticket(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"portalUrl": "http://127.0.0.1:9/#ticket=x"}))
    for given, base in [
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090"),
        ("http://127.0.0.1:8090/", "http://127.0.0.1:8090"),
        ("https://portal.test/webhooks/#ticket=abc", "https://portal.test/webhooks"),
        ("http://127.0.0.1:8090/?x=1", "http://127.0.0.1:8090"),
    ]:
        target = Target(portal_flag=given, state_path=state, home_kubeconfig=tmp_path / "none")
        assert target.portal == (base, "--portal-url")
    with pytest.raises(PluginError, match="http:// or https://"):
        _ = Target(portal_flag="127.0.0.1:8090", state_path=state).portal


def test_portal_url_from_the_playground_is_its_base(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "dev-kubeconfig", {"token": "dev"}, namespace=None)
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "deliveryUrl": "http://127.0.0.1:9",
                "portalUrl": "http://127.0.0.1:7/portal/#ticket=secret",
                "kubeconfig": str(config),
            }
        )
    )
    target = Target(state_path=state, home_kubeconfig=tmp_path / "absent")
    base, origin = target.portal
    assert base == "http://127.0.0.1:7"
    assert str(state) in origin
    assert target.token == "dev"  # the playground's kubeconfig, as for the delivery service


def test_a_named_portal_ignores_the_playground(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"portalUrl": "http://127.0.0.1:7", "kubeconfig": "/dev/x"}))
    home = kubeconfig(tmp_path / "home", {"token": "home"})
    target = Target(portal_flag="http://127.0.0.1:8", state_path=state, home_kubeconfig=home)
    assert target.kubeconfig_spec[0] == str(home)
    assert (target.namespace, target.token) == ("team-a", "home")


def test_no_portal_anywhere_says_how_to_reach_one(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"deliveryUrl": "http://127.0.0.1:9"}))  # no portal in it
    for path in (state, tmp_path / "none.json"):
        with pytest.raises(PluginError) as caught:
            _ = Target(state_path=path, home_kubeconfig=tmp_path / "absent").portal
        message = caught.value.message
        assert "--portal-url" in message
        assert "WEBHOOK_OPERATOR_PORTAL_URL" in message
        assert "port-forward svc/webhook-operator-portal 8090" in message


def test_ticket_subject_defaults_to_who_the_credentials_name(tmp_path: Path) -> None:
    home = kubeconfig(tmp_path / "home", {"token": "opaque"})
    state = tmp_path / "none.json"
    sa = sa_token("system:serviceaccount:team-a:backend")
    cases = [
        # A ServiceAccount token names its subject, from the flag or the kubeconfig.
        (Target(token_flag=sa, state_path=state, home_kubeconfig=home), None),
        (
            Target(state_path=state, home_kubeconfig=kubeconfig(tmp_path / "sa", {"token": sa})),
            None,
        ),
        # An opaque token from the kubeconfig: the kubeconfig's user.
        (Target(state_path=state, home_kubeconfig=home), "me"),
        # An opaque --token names nobody; the kubeconfig's user is not its owner.
        (Target(token_flag="opaque", state_path=state, home_kubeconfig=home), "kubectl"),
    ]
    for target, expected in cases:
        assert ticket_subject(None, target) == (expected or "system:serviceaccount:team-a:backend")
    assert ticket_subject("acme/alice", cases[0][0]) == "acme/alice"
    with pytest.raises(PluginError, match="--subject") as caught:
        ticket_subject("bad\x1b[31m", cases[0][0])
    assert caught.value.code == Exit.USAGE


# Not three parts; not base64; {} (no sub); null.
@pytest.mark.parametrize("token", ["a.b", "a.!!!.c", "x.e30.y", "a.bnVsbA.c"])
def test_tokens_that_name_nobody(token: str) -> None:
    assert parsing.token_subject(token) is None


def test_ttl_is_checked_before_asking() -> None:
    assert parsing.parse_ttl("15m") == "15m"
    assert parsing.parse_ttl(" 1h ") == "1h"
    for bad in ("soon", "0s", "15", "-5m"):
        with pytest.raises(ValueError, match="--ttl"):
            parsing.parse_ttl(bad)


class FakePortal:
    """The portal's ticket route, as far as the plugin can tell."""

    def __init__(self, status: int = 201, body: object = None, **headers: str) -> None:
        self.status, self.body, self.headers = status, body, headers
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.body is not None:
            return httpx.Response(self.status, json=self.body, headers=self.headers)
        asked = json.loads(request.content)
        answer = {
            "ticket": "tkt",
            "expiresAt": "2026-11-25T12:15:00Z",
            "portalUrl": "http://127.0.0.1:8090/#ticket=tkt",
            "namespace": "team-a",
            "app": "shop",
            "scope": asked["scope"],
            "subject": asked["subject"],
        }
        return httpx.Response(201, json=answer)


def run_portal(
    monkeypatch: pytest.MonkeyPatch, fake: FakePortal, *args: str, env: dict[str, str]
) -> Any:
    from webhook_operator.plugin import client, commands

    class Client(client.PortalClient):
        def __init__(self, server: str, token: str, **kwargs: Any) -> None:
            super().__init__(server, token, transport=httpx.MockTransport(fake), **kwargs)

    monkeypatch.setattr(commands, "PortalClient", Client)
    return CliRunner().invoke(app, ["portal", *args], env=env)


@pytest.fixture
def no_playground(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user with nothing set: no playground, no kubeconfig, no variables."""
    monkeypatch.setenv("WEBHOOK_OPERATOR_DEV_DIR", str(tmp_path / "no-playground"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in (
        "KUBECONFIG",
        "WEBHOOK_OPERATOR_SERVER",
        "WEBHOOK_OPERATOR_TOKEN",
        "WEBHOOK_OPERATOR_PORTAL_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_portal_prints_the_url_and_asks_as_the_caller(
    monkeypatch: pytest.MonkeyPatch, no_playground: None
) -> None:
    fake = FakePortal()
    env = {"WEBHOOK_OPERATOR_PORTAL_URL": "http://127.0.0.1:8090/", "WEBHOOK_OPERATOR_TOKEN": "t"}
    result = run_portal(
        monkeypatch, fake, "shop", "-n", "team-a", "--scope", "read", "--ttl", "5m", env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "http://127.0.0.1:8090/#ticket=tkt\n"
    (request,) = fake.seen
    assert request.method == "POST"
    assert str(request.url) == (
        "http://127.0.0.1:8090/v1/namespaces/team-a/apps/shop/access-tickets"
    )
    assert request.headers["Authorization"] == "Bearer t"
    assert json.loads(request.content) == {"scope": "read", "ttl": "5m", "subject": "kubectl"}

    as_json = run_portal(monkeypatch, fake, "shop", "-n", "team-a", "-o", "json", env=env)
    answer = json.loads(as_json.stdout)
    assert answer["ticket"] == "tkt"
    assert answer["expiresAt"] == "2026-11-25T12:15:00Z"
    # No --ttl: the portal's default lifetime, whatever its cap is.
    assert json.loads(fake.seen[-1].content) == {"scope": "manage", "subject": "kubectl"}


@pytest.mark.parametrize(
    ("status", "error", "code", "shown"),
    [
        (
            403,
            {"reason": "Forbidden", "message": "x may not issue-tickets webhookapps"},
            Exit.DENIED,
            "x may not issue-tickets webhookapps (Forbidden, HTTP 403)",
        ),
        (
            422,
            {"reason": "TtlTooLong", "message": "ttl must be at most 3600s"},
            Exit.USAGE,
            "ttl must be at most 3600s (TtlTooLong, HTTP 422)",
        ),
        (
            503,
            {"reason": "NotReady", "message": "still loading"},
            Exit.UNREACHABLE,
            "still loading; retry later (NotReady, HTTP 503)",
        ),
        (
            404,
            {"reason": "AppNotFound", "message": "WebhookApp shop does not exist"},
            Exit.NOT_FOUND,
            "WebhookApp shop does not exist (AppNotFound, HTTP 404)",
        ),
    ],
)
def test_portal_refusals_keep_the_portals_message(
    monkeypatch: pytest.MonkeyPatch,
    no_playground: None,
    status: int,
    error: dict[str, str],
    code: Exit,
    shown: str,
) -> None:
    fake = FakePortal(status, {"error": error})
    env = {"WEBHOOK_OPERATOR_PORTAL_URL": "http://127.0.0.1:8090", "WEBHOOK_OPERATOR_TOKEN": "t"}
    result = run_portal(monkeypatch, fake, "shop", env=env)
    assert isinstance(result.exception, PluginError)
    assert (result.exception.code, result.exception.message) == (code, shown)
    assert result.stdout == ""


def test_portal_bad_flags_are_usage_errors_before_any_request(
    monkeypatch: pytest.MonkeyPatch, no_playground: None
) -> None:
    fake = FakePortal()
    env = {"WEBHOOK_OPERATOR_PORTAL_URL": "http://127.0.0.1:8090", "WEBHOOK_OPERATOR_TOKEN": "t"}
    ttl = run_portal(monkeypatch, fake, "shop", "--ttl", "soon", env=env)
    assert isinstance(ttl.exception, PluginError)
    assert ttl.exception.code == Exit.USAGE
    scope = run_portal(monkeypatch, fake, "shop", "--scope", "admin", env=env)
    assert scope.exit_code == 2
    nowhere = run_portal(monkeypatch, fake, "shop", env={"WEBHOOK_OPERATOR_TOKEN": "t"})
    assert isinstance(nowhere.exception, PluginError)
    assert "port-forward svc/webhook-operator-portal 8090" in nowhere.exception.message
    assert fake.seen == []
