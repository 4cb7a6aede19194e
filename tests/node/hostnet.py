"""helm post-renderer for the node tests: the chart's Pods on the host network, on loopback.

Tests here send traffic to loopback only, so there is no CNI bridge (it would need private
addresses), no kube-proxy and no cluster DNS: Services carry no traffic. Users' clusters
have all three; this renderer stands in for them and changes nothing else of the chart.
Every Deployment's Pods get `hostNetwork: true`, KUBERNETES_SERVICE_HOST/PORT of the test
apiserver (the kubelet would set the kubernetes Service's ClusterIP, unrouted here), the
delivery URL on 127.0.0.1, and free ports bound to 127.0.0.1 instead of 0.0.0.0:80xx, so
two runs on one machine (or a developer's own server) never collide. On the host network two
Pods of one Deployment cannot both bind their ports on the one node, so a rolling update
(new Pod Ready before the old one goes) could never finish: Deployments are Recreate here.
For the same reason a Deployment of several replicas (the operator's leader and standby)
cannot give each Pod its own probe port: on the host network a declared port is a host
port, and the scheduler keeps two Pods with one host port off one node. Such a Deployment
binds its probes to a port the kernel picks and has no probes; the single-replica install
proves the probes, the several-replica one proves the Lease.
The host network is outside every Pod Security level but "privileged", so a Namespace that
enforces one (manifests/ enforces "restricted") enforces "privileged" here; the Pods' own
restricted security context is unchanged, and the dry-run tests check it against the level.

Reads the rendered stream on stdin, the plan from NODE_TEST_PLAN (JSON: apiserver_port,
ports: {component: {port name: number}}), writes the stream on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import yaml

COMPONENT = "app.kubernetes.io/component"


def rewrite_arg(arg: str, ports: dict[str, int], delivery_port: int, shared: bool) -> str:
    flag, _, value = arg.partition("=")
    if flag == "--probe-port" and shared:
        return "--probe-port=0"
    if flag == "--listen" and "http" in ports:
        return f"--listen=127.0.0.1:{ports['http']}"
    if flag == "--metrics-listen" and "metrics" in ports:
        return f"--metrics-listen=127.0.0.1:{ports['metrics']}"
    if flag == "--probe-port" and "probes" in ports:
        return f"--probe-port={ports['probes']}"
    if flag == "--delivery-url" and value:
        return f"--delivery-url=http://127.0.0.1:{delivery_port}"
    return arg


def rewrite(doc: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    if doc.get("kind") == "Namespace":
        labels = doc["metadata"].get("labels", {})
        if "pod-security.kubernetes.io/enforce" in labels:
            labels["pod-security.kubernetes.io/enforce"] = "privileged"
        return doc
    if doc.get("kind") != "Deployment":
        return doc
    component = doc["metadata"]["labels"][COMPONENT]
    ports: dict[str, int] = plan["ports"].get(component, {})
    delivery_port: int = plan["ports"]["delivery"]["http"]
    doc["spec"]["strategy"] = {"type": "Recreate"}
    spec = doc["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    shared = doc["spec"].get("replicas", 1) > 1
    for container in spec["containers"]:
        args = container["args"]
        container["args"] = [rewrite_arg(a, ports, delivery_port, shared) for a in args]
        if shared:
            for key in ("ports", "livenessProbe", "readinessProbe", "startupProbe"):
                container.pop(key, None)
        for port in container.get("ports", []):
            if port["name"] in ports:
                port["containerPort"] = ports[port["name"]]
        container.setdefault("env", [])
        container["env"] += [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(plan["apiserver_port"])},
        ]
    return doc


def main() -> None:
    plan = json.loads(os.environ["NODE_TEST_PLAN"])
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    yaml.safe_dump_all([rewrite(d, plan) for d in docs], sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
