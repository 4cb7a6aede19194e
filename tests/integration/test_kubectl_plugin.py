"""`kubectl webhooks` end to end: the installed console script as a subprocess against the
real apiserver, operator, delivery service and HTTP receivers (and once through kubectl's
own plugin discovery), checking output, effects and exit codes as a user sees them."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.harness import BIN, Cluster, DeliveryProcess, OperatorProcess, Receiver, eventually
from webhook_operator.devcluster.binaries import kubectl_binary
from webhook_operator.devcluster.cluster import free_port

GROUP, VERSION = "webhook-operator.dev", "v1alpha1"
PLUGIN = BIN / "kubectl-webhooks"


@pytest.fixture(autouse=True)
def _services(operator: OperatorProcess, delivery_service: DeliveryProcess) -> None:
    assert delivery_service.process is not None
    assert delivery_service.process.poll() is None, delivery_service.log()[-3000:]


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user who has set nothing: no KUBECONFIG, no server or token
    variables, and an empty cache so no dev playground state file is found."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "WEBHOOK_OPERATOR_SERVER", "WEBHOOK_OPERATOR_TOKEN")
    }
    env["WEBHOOK_OPERATOR_CACHE"] = str(tmp_path / "cache")
    env["HOME"] = str(tmp_path / "home")
    env["NO_COLOR"] = "1"
    return env


class Plugin:
    """Runs `kubectl-webhooks` with the test cluster's admin kubeconfig and the service."""

    def __init__(
        self, cluster: Cluster, svc: DeliveryProcess, namespace: str, env: dict[str, str]
    ) -> None:
        self.cluster, self.svc, self.namespace, self.env = cluster, svc, namespace, env

    def common(self) -> list[str]:
        return [
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--server={self.svc.url}",
            "-n",
            self.namespace,
        ]

    def run(
        self, *args: str, expect: int | None = 0, input: bytes | None = None, common: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(PLUGIN), *args, *(self.common() if common else [])]
        result = subprocess.run(
            argv, input=input, capture_output=True, env=self.env, timeout=90, check=False
        )
        done = subprocess.CompletedProcess(
            argv, result.returncode, result.stdout.decode(), result.stderr.decode()
        )
        if expect is not None:
            assert done.returncode == expect, (
                f"{shlex.join(args)}: exit {done.returncode}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture
def plugin(
    cluster: Cluster, delivery_service: DeliveryProcess, namespace: str, plugin_env: dict[str, str]
) -> Plugin:
    return Plugin(cluster, delivery_service, namespace, plugin_env)


# -- the cluster side ----------------------------------------------------------------------


def apply(cluster: Cluster, namespace: str, *objs: dict[str, Any]) -> None:
    for obj in objs:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def app_obj(name: str = "billing") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookApp",
        "metadata": {"name": name},
        "spec": {"eventTypes": [{"name": "invoice.paid"}, {"name": "invoice.created"}]},
    }


def endpoint_obj(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookEndpoint",
        "metadata": {"name": name},
        "spec": {
            "appRef": {"name": "billing"},
            "url": url,
            "allowInsecureHttp": True,
            "events": ["invoice.*"],
            **spec,
        },
    }


def get_endpoint(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "webhookendpoints", name
    )
    return obj


def setup(cluster: Cluster, namespace: str, receiver: Receiver, **spec: Any) -> None:
    """App `billing` and endpoint `ep` posting to the receiver's /hook, Ready."""
    apply(cluster, namespace, app_obj(), endpoint_obj("ep", receiver.url("/hook"), **spec))

    def ready() -> bool:
        conditions = get_endpoint(cluster, namespace, "ep").get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    eventually(ready, what="endpoint ep Ready")


def secret_values(cluster: Cluster, namespace: str) -> dict[str, str]:
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret("ep-signing-secret", namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def statuses(plugin: Plugin, *args: str) -> list[str]:
    return [item["status"] for item in plugin.json("deliveries", *args)["items"]]


# -- tests -----------------------------------------------------------------------------------


def test_emit_list_show_and_resend(plugin: Plugin, cluster: Cluster, receiver: Receiver) -> None:
    setup(cluster, plugin.namespace, receiver)
    emitted = plugin.run("emit", "billing", "invoice.paid", "--data", '{"invoiceId": "in_7"}')
    assert "1 delivery created" in emitted.stdout
    eventually(lambda: receiver.received("/hook"), what="delivered")

    def delivered_row() -> str:
        lines = plugin.run("deliveries", "--app", "billing").stdout.splitlines()
        assert lines[0].split() == [
            "ID", "ENDPOINT", "EVENT", "TYPE", "STATUS", "ATTEMPTS", "HTTP", "AGE", "ERROR",
        ]  # fmt: skip
        assert "delivered" in lines[1], lines
        return lines[1]

    row = str(eventually(delivered_row, what="the table shows it delivered"))
    delivery_id, endpoint, event_type, status, attempts, http = row.split()[:6]
    assert (endpoint, event_type, status, attempts, http) == (
        "ep",
        "invoice.paid",
        "delivered",
        "1",
        "204",
    )

    record = plugin.json("delivery", delivery_id)
    assert record["payload"]["data"] == {"invoiceId": "in_7"}
    assert record["payload"]["type"] == "invoice.paid"
    (attempt,) = record["attemptLog"]
    assert attempt["success"] is True
    assert attempt["httpStatus"] == 204
    shown = plugin.run("delivery", delivery_id).stdout
    assert delivery_id in shown
    assert "STARTED" in shown

    resent = plugin.run("resend", delivery_id).stdout
    assert f"delivery {delivery_id} resent as dlv_" in resent
    eventually(lambda: len(receiver.received("/hook")) == 2, what="resent delivery arrives")

    # An idempotency key makes the second emit a no-op, and says so.
    first = plugin.json("emit", "billing", "invoice.created", "--id", "order-1")
    again = plugin.run("emit", "billing", "invoice.created", "--id", "order-1").stdout
    assert first["deliveries"] == 1
    assert "nothing new created" in again
    assert first["eventId"] in again

    # Pagination: the hint is a command that fetches the next page.
    plugin.run("emit", "billing", "invoice.paid", "--data-file", "-", input=b'{"n": 2}')
    eventually(lambda: len(receiver.received("/hook")) == 4, what="all delivered")
    page = plugin.run("deliveries", "--endpoint", "ep", "--limit", "2")
    (hint,) = [line for line in page.stderr.splitlines() if line.startswith("more: ")]
    words = shlex.split(hint.removeprefix("more: "))
    assert words[:2] == ["kubectl", "webhooks"]
    second = plugin.run(*words[2:], common=False).stdout
    first_ids = {line.split()[0] for line in page.stdout.splitlines()[1:]}
    second_ids = {line.split()[0] for line in second.splitlines()[1:]}
    assert len(first_ids) == len(second_ids) == 2
    assert not first_ids & second_ids
    everything = plugin.json("deliveries", "--endpoint", "ep", "--all", "--limit", "1")
    ids = [item["id"] for item in everything["items"]]
    assert len(ids) == 4
    assert ids == sorted(ids, reverse=True)  # newest first
    assert everything["next"] is None

    missing = plugin.run("delivery", "dlv_00000000000000000000000000", expect=5)
    assert "no delivery dlv_00000000000000000000000000" in missing.stderr


def test_replay_since_after_enable(plugin: Plugin, cluster: Cluster, receiver: Receiver) -> None:
    receiver.respond("/hook", (500, {}, 0.0))
    setup(cluster, plugin.namespace, receiver, retry={"schedule": []})
    plugin.run("emit", "billing", "invoice.paid")
    eventually(lambda: statuses(plugin, "--endpoint", "ep") == ["exhausted"], what="exhausted")
    eventually(
        lambda: get_endpoint(cluster, plugin.namespace, "ep")["status"].get("health") == "Disabled",
        what="auto-disabled",
    )
    row = plugin.run("deliveries", "--endpoint", "ep", "--status", "exhausted").stdout
    assert row.splitlines()[1].split()[3:6] == ["exhausted", "1", "500"]

    enabled = plugin.run("enable", "ep")
    assert "enabled" in enabled.stdout
    annotations = get_endpoint(cluster, plugin.namespace, "ep")["metadata"]["annotations"]
    assert annotations["webhook-operator.dev/enable"]
    eventually(
        lambda: get_endpoint(cluster, plugin.namespace, "ep")["status"].get("health") != "Disabled",
        what="enabled again",
    )

    receiver.respond("/hook", (204, {}, 0.0))
    replayed = plugin.run("replay", "ep", "--since", "1h")
    assert "replayed 1 delivery of endpoint ep" in replayed.stdout
    # A replay is a new delivery of the same event; the exhausted one stays in the log.
    eventually(
        lambda: statuses(plugin, "--endpoint", "ep") == ["delivered", "exhausted"],
        what="replayed",
    )
    none = plugin.json("replay", "ep", "--since", "2026-01-01T00:00:00Z", "--status", "failed")
    assert none["replayed"] == 0
    bad = plugin.run("replay", "ep", "--since", "yesterday", expect=2)
    assert "RFC 3339" in bad.stderr


def test_replay_a_whole_app(plugin: Plugin, cluster: Cluster, receiver: Receiver) -> None:
    # Both endpoints fail once and wait an hour for their retry: replayed now, at once.
    receiver.respond("/hook", (500, {}, 0.0), (204, {}, 0.0))
    receiver.respond("/hook2", (500, {}, 0.0), (204, {}, 0.0))
    later = {"retry": {"schedule": ["1h"]}}
    setup(cluster, plugin.namespace, receiver, **later)
    apply(cluster, plugin.namespace, endpoint_obj("ep2", receiver.url("/hook2"), **later))
    plugin.run("emit", "billing", "invoice.paid")
    for name in ("ep", "ep2"):
        eventually(
            lambda name=name: statuses(plugin, "--endpoint", name) == ["failed"],
            what=f"{name} failed once",
        )
    replayed = plugin.run("replay", "--app", "billing", "--since", "1h", "--status", "failed")
    assert "replayed 2 deliveries of app billing" in replayed.stdout
    assert "ep: 1, ep2: 1" in replayed.stdout
    for name in ("ep", "ep2"):
        eventually(
            lambda name=name: statuses(plugin, "--endpoint", name) == ["delivered", "failed"],
            what=f"{name} replayed",
        )
    again = plugin.json("replay", "--app", "billing", "--since", "1h", "--status", "exhausted")
    assert again["replayed"] == 0
    assert again["endpoints"] == {"ep": 0, "ep2": 0}
    both = plugin.run("replay", "ep", "--app", "billing", "--since", "1h", expect=2)
    assert "one of them" in both.stderr
    neither = plugin.run("replay", "--since", "1h", expect=2)
    assert "name an ENDPOINT or --app APP" in neither.stderr
    missing = plugin.run("replay", "--app", "nope", "--since", "1h", expect=5)
    assert "WebhookApp nope does not exist" in missing.stderr


def test_ping_reaches_the_receiver(plugin: Plugin, cluster: Cluster, receiver: Receiver) -> None:
    setup(cluster, plugin.namespace, receiver)
    result = plugin.run("ping", "ep")
    assert "ping delivered to ep: HTTP 204" in result.stdout
    (request,) = receiver.received("/hook")
    assert json.loads(request["body"])["type"] == "webhook.ping"
    missing = plugin.run("ping", "nope", expect=5)
    assert "WebhookEndpoint nope does not exist" in missing.stderr


def test_rotate_secret_makes_the_operator_rotate(
    plugin: Plugin, cluster: Cluster, receiver: Receiver
) -> None:
    setup(cluster, plugin.namespace, receiver)
    old = secret_values(cluster, plugin.namespace)["secret"]
    result = plugin.run("rotate-secret", "ep")
    assert "webhook-operator.dev/rotate-secret=" in result.stdout
    eventually(
        lambda: secret_values(cluster, plugin.namespace).get("previous") == old, what="rotated"
    )
    assert secret_values(cluster, plugin.namespace)["secret"] != old

    plugin.run("rotate-secret", "ep", "--value", "second")
    again = plugin.run("rotate-secret", "ep", "--value", "second", expect=2)
    assert "pass a different --value" in again.stderr


def test_pause_and_resume_change_spec_active(
    plugin: Plugin, cluster: Cluster, receiver: Receiver
) -> None:
    setup(cluster, plugin.namespace, receiver)
    paused = plugin.run("pause", "ep")
    assert "paused" in paused.stdout
    assert "GitOps" in paused.stderr
    assert "spec.active in Git" in paused.stderr
    assert get_endpoint(cluster, plugin.namespace, "ep")["spec"]["active"] is False

    # The service sees the change through its watch; an event emitted after that is held.
    def held() -> bool:
        plugin.run("emit", "billing", "invoice.paid")
        return "held" in statuses(plugin, "--endpoint", "ep", "--limit", "1")

    eventually(held, interval=0.5, what="held while paused")
    assert "it already was" in plugin.run("pause", "ep").stdout

    resumed = plugin.run("resume", "ep")
    assert "resumed" in resumed.stdout
    assert "GitOps" in resumed.stderr
    assert get_endpoint(cluster, plugin.namespace, "ep")["spec"]["active"] is True
    eventually(
        lambda: "held" not in statuses(plugin, "--endpoint", "ep"), what="held ones delivered"
    )


def test_held_deliveries_expire_after_hold_for_and_replay_sends_them(
    plugin: Plugin, cluster: Cluster, receiver: Receiver
) -> None:
    """A paused endpoint with holdFor 2s: what it holds expires, the CRD status counts it,
    and after resuming, replay --status expired delivers it (per endpoint, then app-wide:
    replay copies, so the expired ones are there to send again)."""
    setup(cluster, plugin.namespace, receiver, holdFor="2s")
    plugin.run("pause", "ep")

    def waiting() -> list[str]:
        return [s for s in statuses(plugin, "--endpoint", "ep") if s in ("held", "expired")]

    def caught() -> bool:
        plugin.run("emit", "billing", "invoice.paid")
        return statuses(plugin, "--endpoint", "ep", "--limit", "1")[0] in ("held", "expired")

    eventually(caught, interval=0.5, what="held while paused")
    count = len(waiting())
    delivered_before = len(receiver.received("/hook"))
    eventually(lambda: waiting() == ["expired"] * count, what="held deliveries expired")
    expired = plugin.run("deliveries", "--endpoint", "ep", "--status", "expired").stdout
    assert len(expired.splitlines()) == 1 + count

    def counted() -> dict[str, Any]:
        status = get_endpoint(cluster, plugin.namespace, "ep").get("status", {})
        counts: dict[str, Any] = status.get("deliveries") or {}
        assert (counts.get("expired"), counts.get("held")) == (count, 0), counts
        return counts

    eventually(counted, timeout=60, what="expired counted in the endpoint's status")
    assert len(receiver.received("/hook")) == delivered_before  # expired: never attempted

    plugin.run("resume", "ep")
    replayed = plugin.run("replay", "ep", "--since", "1h", "--status", "expired")
    noun = "delivery" if count == 1 else "deliveries"
    assert f"replayed {count} {noun} of endpoint ep" in replayed.stdout
    assert "(expired)" in replayed.stdout
    eventually(
        lambda: len(receiver.received("/hook")) == delivered_before + count,
        what="replayed expired deliveries delivered",
    )
    whole_app = plugin.json("replay", "--app", "billing", "--since", "1h", "--status", "expired")
    assert whole_app["endpoints"] == {"ep": count}
    eventually(
        lambda: len(receiver.received("/hook")) == delivered_before + 2 * count,
        what="app-wide replay delivered",
    )
    assert plugin.json("replay", "ep", "--since", "1h")["replayed"] == 0  # not by default


def test_verify_accepts_a_real_delivery_and_rejects_a_tampered_one(
    plugin: Plugin, cluster: Cluster, receiver: Receiver, tmp_path: Path
) -> None:
    setup(cluster, plugin.namespace, receiver)
    plugin.run("emit", "billing", "invoice.paid", "--data", '{"invoiceId": "in_9"}')
    (request,) = eventually(lambda: receiver.received("/hook"), what="delivered")  # type: ignore[misc]
    body: bytes = request["body"]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    flags = [
        f"--header={name}: {headers[name]}"
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    ]
    payload = tmp_path / "body.json"
    payload.write_bytes(body)

    valid = plugin.run("verify", "--secret-from", "ep", "--payload", str(payload), *flags)
    assert valid.stdout.strip() == "valid (signed with key 1)"

    # The secret given directly, headers as a request dump, the body on stdin.
    dump = tmp_path / "headers.txt"
    dump.write_text(
        "POST /hook HTTP/1.1\n" + "".join(f"{k}: {v}\n" for k, v in request["headers"].items())
    )
    secret = secret_values(cluster, plugin.namespace)["secret"]
    direct = plugin.run(
        "verify", "--secret", secret, "--payload", "-", "--headers-file", str(dump), input=body
    )
    assert "valid (signed with key 1)" in direct.stdout

    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(body.replace(b"in_9", b"in_1"))
    invalid = plugin.run(
        "verify", "--secret-from", "ep", "--payload", str(tampered), *flags, expect=1
    )
    assert "invalid: no signature matched" in invalid.stderr
    stale = plugin.run(
        "verify", "--secret", secret, "--payload", str(payload), *flags[:1],
        "--header=webhook-timestamp: 1000000000", *flags[2:], expect=1,
    )  # fmt: skip
    assert "too old" in stale.stderr
    # Without the time check only the signature counts; this one was signed at another time.
    assert "no signature matched" in plugin.run(
        "verify", "--secret", secret, "--payload", str(payload), *flags[:1],
        "--header=webhook-timestamp: 1000000000", *flags[2:], "--no-time-check", expect=1,
    ).stderr  # fmt: skip
    bad = plugin.run("verify", "--secret", "whsec_x", "--payload", str(payload), *flags, expect=2)
    assert "bad secret" in bad.stderr


def test_forbidden_user_gets_the_rbac_message(plugin: Plugin, cluster: Cluster) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", plugin.namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", plugin.namespace).stdout.strip()
    result = plugin.run("deliveries", "--app", "billing", "--token", token, expect=4)
    line = result.stderr.strip()
    assert "\n" not in line
    assert "Traceback" not in result.stderr
    assert f"system:serviceaccount:{plugin.namespace}:nobody may not list" in line
    assert "grant it with a Role" in line
    # The token may come from the environment too.
    plugin.env["WEBHOOK_OPERATOR_TOKEN"] = token
    plugin.run("emit", "billing", "invoice.paid", expect=4)


def test_unreachable_services_exit_3(plugin: Plugin, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = plugin.run(
        "deliveries", "--app", "billing", "--server", dead, "--token", "t", common=False, expect=3
    )
    assert result.stderr.strip() == (
        f"error: cannot reach the delivery service at {dead}: [Errno 111] Connection refused"
    )

    kubeconfig = tmp_path / "dead-kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://{dead[7:]}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    paused = plugin.run("pause", "ep", f"--kubeconfig={kubeconfig}", common=False, expect=3)
    assert "cannot reach the Kubernetes API" in paused.stderr
    assert "Traceback" not in paused.stderr

    nowhere = plugin.run("deliveries", "--app", "billing", common=False, expect=2)
    assert "port-forward svc/webhook-operator-delivery 8080" in nowhere.stderr


def test_runs_as_a_kubectl_plugin(
    plugin: Plugin, cluster: Cluster, receiver: Receiver, plugin_env: dict[str, str]
) -> None:
    setup(cluster, plugin.namespace, receiver)
    env = {**plugin_env, "PATH": f"{BIN}{os.pathsep}{plugin_env.get('PATH', '')}"}
    listed = subprocess.run(
        [str(kubectl_binary()), "plugin", "list", "--name-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "kubectl-webhooks" in listed.stdout, listed.stderr
    result = subprocess.run(
        [str(kubectl_binary()), "webhooks", "ping", "ep", *plugin.common()],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ping delivered to ep" in result.stdout
    helped = subprocess.run(
        [str(kubectl_binary()), "webhooks", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "kubectl webhooks" in helped.stdout
    assert "Exit codes" in helped.stdout
