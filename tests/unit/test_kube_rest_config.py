"""Reading credentials: what a kubeconfig the client cannot use is told as."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from webhook_operator.kube_rest import KubeConfigError, from_kubeconfig, in_cluster


def kubeconfig(tmp_path: Path, user: dict[str, object], **cluster: object) -> str:
    config = {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_token_and_the_server(tmp_path: Path) -> None:
    creds = from_kubeconfig(kubeconfig(tmp_path, {"token": "t"}), {})
    assert creds.server == "https://127.0.0.1:6443"


def test_auth_providers_are_refused_with_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="use an exec credential plugin"):
        from_kubeconfig(kubeconfig(tmp_path, {"auth-provider": {"name": "gcp"}}), {})


def test_a_missing_context_entry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({"current-context": "x", "contexts": []}))
    with pytest.raises(KubeConfigError, match="no context named 'x'"):
        from_kubeconfig(str(path), {})


def test_an_unreadable_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="cannot read the kubeconfig"):
        from_kubeconfig(str(tmp_path / "absent"), {})


def test_kubeconfig_comes_from_the_environment(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"token": "t"}, server="https://[::1]:6443")
    assert from_kubeconfig(None, {"KUBECONFIG": path}).server == "https://[::1]:6443"


def test_in_cluster_needs_the_service_variables(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster({}, tmp_path)


def test_an_exec_plugin_that_hangs_is_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import stat
    import sys

    from webhook_operator import kube_rest

    plugin = tmp_path / "plugin"
    plugin.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(kube_rest, "EXEC_TIMEOUT", 0.5)
    creds = from_kubeconfig(kubeconfig(tmp_path, {"exec": {"command": str(plugin)}}), {})
    with pytest.raises(KubeConfigError, match=r"gave no answer in 0\.5s"):
        asyncio.run(creds.token())
