"""`kubectl webhooks portal` end to end: the installed console script as a subprocess against
the real apiserver and portal, issuing tickets with a platform backend's ServiceAccount
token, as a support engineer or a script would."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.harness import BIN, Cluster, PortalProcess
from tests.integration.portal_support import backend, make_app, ticket

PLUGIN = BIN / "kubectl-webhooks"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user who has set nothing: no kubeconfig, no service, token or portal variables,
    and no dev playground to fall back on."""
    unset = (
        "KUBECONFIG",
        "WEBHOOK_OPERATOR_SERVER",
        "WEBHOOK_OPERATOR_TOKEN",
        "WEBHOOK_OPERATOR_PORTAL_URL",
    )
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    clean["WEBHOOK_OPERATOR_CACHE"] = str(tmp_path / "cache")
    clean["WEBHOOK_OPERATOR_DEV_DIR"] = str(tmp_path / "no-playground")
    clean["HOME"] = str(tmp_path / "home")
    clean["NO_COLOR"] = "1"
    return clean


def run(env: dict[str, str], *args: str, expect: int) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(PLUGIN), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == expect, (
        f"{shlex.join(args)}: exit {done.returncode}\nstdout:\n{done.stdout}\n"
        f"stderr:\n{done.stderr}"
    )
    return done


def test_portal_prints_a_working_url(
    cluster: Cluster, portal: PortalProcess, namespace: str, env: dict[str, str]
) -> None:
    make_app(cluster, namespace, "shop")
    issuer = backend(cluster, namespace, ["shop"])
    ticket(portal, issuer, namespace, "shop")  # the portal has seen the new app

    # The flags after the subcommand, as people type them.
    printed = run(
        env, "portal", "shop", "-n", namespace, "--portal-url", portal.url,
        "--token", issuer.token, expect=0,
    )  # fmt: skip
    (url,) = printed.stdout.splitlines()
    assert url.startswith(f"{portal.url}/")
    assert "#ticket=" in url
    assert "ticket for system:serviceaccount" in printed.stderr  # who it is for, on stderr
    assert httpx.get(f"{portal.url}/openapi.json", timeout=10).status_code == 200

    # The portal and the token from the environment; -o json is the whole answer.
    env.update(WEBHOOK_OPERATOR_PORTAL_URL=portal.url, WEBHOOK_OPERATOR_TOKEN=issuer.token)
    before = datetime.now(UTC)
    answer = json.loads(
        run(
            env, "portal", "shop", "-n", namespace, "--scope", "read", "--ttl", "5m",
            "-o", "json", expect=0,
        ).stdout
    )  # fmt: skip
    assert answer["ticket"]
    assert answer["portalUrl"].endswith(f"#ticket={answer['ticket']}")
    assert (answer["namespace"], answer["app"], answer["scope"]) == (namespace, "shop", "read")
    # The subject defaults to who the token belongs to: the backend's ServiceAccount.
    assert answer["subject"] == f"system:serviceaccount:{namespace}:backend"
    expires = datetime.fromisoformat(answer["expiresAt"].replace("Z", "+00:00"))
    assert before + timedelta(minutes=4) < expires <= datetime.now(UTC) + timedelta(minutes=5)

    named = run(
        env, "portal", "shop", "-n", namespace, "--subject", "acme/alice", "-o", "json", expect=0
    )
    assert json.loads(named.stdout)["subject"] == "acme/alice"


def test_portal_refuses_a_token_without_issue_tickets(
    cluster: Cluster, portal: PortalProcess, namespace: str, env: dict[str, str]
) -> None:
    make_app(cluster, namespace, "shop")
    issuer = backend(cluster, namespace, ["shop"])
    ticket(portal, issuer, namespace, "shop")
    cluster.kubectl("create", "serviceaccount", "support", "-n", namespace)
    token = cluster.kubectl("create", "token", "support", "-n", namespace).stdout.strip()

    refused = run(
        env, "portal", "shop", "-n", namespace, "--portal-url", portal.url, "--token", token,
        expect=4,
    )  # fmt: skip
    line = refused.stderr.strip()
    assert "\n" not in line
    assert "Traceback" not in refused.stderr
    assert f"system:serviceaccount:{namespace}:support may not issue-tickets" in line
    assert "'issue-tickets'" in line  # the rule to grant
    assert refused.stdout == ""


def test_portal_says_why_a_ticket_is_refused(
    cluster: Cluster, portal: PortalProcess, namespace: str, env: dict[str, str]
) -> None:
    make_app(cluster, namespace, "shop")
    issuer = backend(cluster, namespace, ["shop", "gone"])
    ticket(portal, issuer, namespace, "shop")
    common = ["-n", namespace, "--portal-url", portal.url, "--token", issuer.token]

    too_long = run(env, "portal", "shop", "--ttl", "2h", *common, expect=2)
    assert "TtlTooLong" in too_long.stderr
    assert "at most" in too_long.stderr
    missing = run(env, "portal", "gone", *common, expect=5)
    assert "AppNotFound" in missing.stderr
    assert "gone" in missing.stderr
    nowhere = run(env, "portal", "shop", "-n", namespace, "--token", issuer.token, expect=2)
    assert "port-forward svc/webhook-operator-portal 8090" in nowhere.stderr
