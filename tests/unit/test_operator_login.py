"""The operator's in-cluster login finds the apiserver as client-go does, not by DNS name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from webhook_operator.controller.login import REREAD_AFTER, login_in_cluster


def _service_account(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("tok-123\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "namespace").write_text("webhooks\n")
    return tmp_path


def test_server_from_kubelet_variables(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    info = login_in_cluster(
        environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"},
        root=_service_account(tmp_path),
        now=now,
    )
    assert info is not None
    assert info.server == "https://127.0.0.1:6443"
    assert info.token == "tok-123"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert info.default_namespace == "webhooks"
    # Expires so that kopf logs in again and reads the kubelet's rotated token.
    assert info.expiration == now + REREAD_AFTER


def test_ipv6_host_is_bracketed(tmp_path: Path) -> None:
    info = login_in_cluster(
        environ={"KUBERNETES_SERVICE_HOST": "::1", "KUBERNETES_SERVICE_PORT": "443"},
        root=_service_account(tmp_path),
    )
    assert info is not None
    assert info.server == "https://[::1]:443"


def test_outside_a_pod_there_is_no_login(tmp_path: Path) -> None:
    assert login_in_cluster(environ={}, root=_service_account(tmp_path)) is None
    no_token = tmp_path / "empty"
    no_token.mkdir()
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert login_in_cluster(environ=env, root=no_token) is None
