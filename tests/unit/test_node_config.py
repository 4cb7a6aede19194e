"""The node's configuration: what keeps it off the host's settings and on loopback, and the
test post-renderer that puts the chart's Pods on the host network."""

from __future__ import annotations

import json
from pathlib import Path

from tests.node import hostnet
from webhook_operator.devcluster import chart
from webhook_operator.devcluster.cluster import _node_schedulable
from webhook_operator.devcluster.node import _holder_script, containerd_config, kubelet_config


def test_kubelet_stays_on_loopback_and_off_host_settings(tmp_path: Path) -> None:
    config = json.loads(kubelet_config(tmp_path, tmp_path / "ca.crt", 10250, 10248))
    assert config["address"] == config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["oomScoreAdj"] == 0  # no CAP_SYS_RESOURCE in the VM
    assert config["makeIPTablesUtilChains"] is False
    assert config["failCgroupV1"] is False
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["podLogsDir"].startswith(str(tmp_path))


def test_containerd_restricts_oom_score_and_uses_runc(tmp_path: Path) -> None:
    text = containerd_config(tmp_path)
    assert "restrict_oom_score_adj = true" in text
    assert 'BinaryName = "/usr/sbin/runc"' in text
    assert f'address = "{tmp_path}/containerd/containerd.sock"' in text


def test_sysctls_kubelet_writes_are_bind_mounted_not_set(tmp_path: Path) -> None:
    script = _holder_script(tmp_path)
    for name in ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"):
        assert f"/proc/sys/{name}" in script
    verbs = {line.split()[0] for line in script.splitlines()}
    assert verbs == {"set", "mount", "touch", "exec"}  # nothing writes a sysctl
    assert ">" not in script


def test_node_is_schedulable_when_ready_and_untainted() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}, "spec": {}}
    assert _node_schedulable(ready)
    tainted = {**ready, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready"}]}}
    assert not _node_schedulable(tainted)
    assert not _node_schedulable({"status": {"conditions": []}})


def test_post_renderer_puts_every_deployment_on_loopback() -> None:
    plan = {
        "apiserver_port": 6443,
        "ports": {
            "delivery": {"http": 30001, "metrics": 30002},
            "operator": {"probes": 30003},
            "portal": {"http": 30004},
        },
    }
    docs = [hostnet.rewrite(d, plan) for d in chart.documents(chart.render())]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 3
    for doc in deployments:
        spec = doc["spec"]["template"]["spec"]
        assert spec["hostNetwork"] is True
        assert doc["spec"]["strategy"] == {"type": "Recreate"}
        (container,) = spec["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
        assert env["KUBERNETES_SERVICE_PORT"] == "6443"
        for arg in container["args"]:
            assert "0.0.0.0" not in arg
            if arg.startswith("--delivery-url="):
                assert arg == "--delivery-url=http://127.0.0.1:30001"


def test_post_renderer_gives_a_several_replica_deployment_no_host_port() -> None:
    """Two host-network Pods of one Deployment on one node: no declared port (it would be a
    host port the scheduler keeps to one Pod per node), probes on a kernel-picked port."""
    plan = {
        "apiserver_port": 6443,
        "ports": {"delivery": {"http": 30001}, "operator": {"probes": 30003}},
    }
    rendered = chart.render(values={"operator": {"replicas": 2}})
    docs = [hostnet.rewrite(d, plan) for d in chart.documents(rendered)]
    (operator,) = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert "--probe-port=0" in container["args"]
    assert not {"ports", "livenessProbe", "readinessProbe"} & container.keys()
