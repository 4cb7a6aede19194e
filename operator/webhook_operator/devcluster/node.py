"""A real node for the local control plane: containerd, kubelet and kube-scheduler, so the
chart's Deployments run as Pods from the image built from the Dockerfile.

Opt-in (`webhook-operator cluster up --node`, the `node` pytest marker): it needs root,
Debian's containerd and runc (`.ci/install-node`) and takes the machine's single node
name, 127.0.0.1. Why it looks the way it does (docs/development.md has the long form):

- containerd and kubelet run inside a private mount namespace held by a small holder
  process. There /run and /var/log are scratch folders and /var/lib an overlay, so the
  paths both programs hard-code land in the cluster's work directory, and the three
  /proc/sys files kubelet insists on writing are bind-mounted from files that already hold
  its values: the host's sysctls, paths, cgroup mounts and iptables never change.
- The VM grants no CAP_SYS_RESOURCE: containerd restricts oom_score_adj and kubelet keeps
  its own at 0, or every sandbox fails to start.
- The node is named and addressed 127.0.0.1, and Pods use the host network: probes and
  apiserver-to-kubelet traffic stay on loopback, and no CNI bridge with private addresses
  is made (a loopback-only CNI config lets the runtime report network-ready).
- Teardown stops each process by its PID (kubelet, the Pods' shims found by this
  containerd's socket in their command line, containerd, the holder) and removes the
  `kubepods` and `k8s.io` cgroups kubelet and runc made in every v1 hierarchy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from webhook_operator.devcluster import images
from webhook_operator.devcluster import pki as pki_mod
from webhook_operator.devcluster.lifetime import Child, spawn

NODE_NAME = "127.0.0.1"
PAUSE_IMAGE = "localhost/webhook-operator/pause:3.10"
# Values kubelet wants for the sysctls it would otherwise write on the host.
_KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
}
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_NODE_CGROUPS = ("kubepods", "k8s.io")
# Controllers the node's workloads need beyond the control plane's own list: Deployments
# make ReplicaSets make Pods; node-lifecycle lifts the not-ready taint; the PV binder and
# the protection controllers let the SQLite claim bind and be deleted.
NODE_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "node-lifecycle-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
)


class NodeError(RuntimeError):
    """The node could not start; the message says which piece and shows its log."""


def missing_programs() -> list[str]:
    """Programs the node needs that are not installed (empty when it can start)."""
    wanted = ("containerd", "runc", "ctr", "unshare", "nsenter", "mount")
    found = [p for p in wanted if shutil.which(p) or Path(f"/usr/sbin/{p}").exists()]
    return [p for p in wanted if p not in found]


def _holder_script(scratch: Path) -> str:
    """Shell run under `unshare --mount`: lays the private mounts, then waits forever."""
    sysctl_dir = scratch / "sysctl"
    lines = [
        "set -eu",
        f"mount --bind {scratch / 'run'} /run",
        f"mount --bind {scratch / 'log'} /var/log",
        "mount -t overlay overlay"
        f" -o lowerdir=/var/lib,upperdir={scratch / 'varlib/upper'},"
        f"workdir={scratch / 'varlib/work'} /var/lib",
    ]
    for name in _KUBELET_SYSCTLS:
        lines.append(f"mount --bind {sysctl_dir / name.replace('/', '.')} /proc/sys/{name}")
    lines += [f"touch {scratch / 'mounts-ready'}", "exec sleep infinity"]
    return "\n".join(lines)


def containerd_config(scratch: Path) -> str:
    base = scratch / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
oom_score = 0

[grpc]
  address = "{base / "containerd.sock"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false

[{cri}.containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{scratch / "cni"}"
"""


def kubelet_config(scratch: Path, ca_cert: Path, port: int, healthz_port: int) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{scratch / 'containerd' / 'containerd.sock'}",
        "address": NODE_NAME,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": NODE_NAME,
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "makeIPTablesUtilChains": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        # Images are imported, never pulled: a collected image could not come back.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared developer disk must not put the node under pressure and evict Pods.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%"},
        "podLogsDir": str(scratch / "log" / "pods"),
        "volumePluginDir": str(scratch / "volume-plugins"),
        "serializeImagePulls": False,
        "registerNode": True,
    }
    return json.dumps(config, indent=2)


def _node_kubeconfig(path: Path, server: str, token: str, ca_cert: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": server, "certificate-authority": str(ca_cert)},
                    }
                ],
                "users": [{"name": "node", "user": {"token": token}}],
                "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}],
                "current-context": "node",
            }
        )
    )
    path.chmod(0o600)
    return path


@dataclass
class Node:
    """containerd + kubelet (+ the scheduler) for one control plane, rooted in `scratch`."""

    scratch: Path
    controlplane: str
    procs: list[Child] = field(default_factory=list)

    @property
    def containerd_socket(self) -> Path:
        return self.scratch / "containerd" / "containerd.sock"

    def start(
        self,
        *,
        server: str,
        node_token: str,
        admin_kubeconfig: Path,
        keys: pki_mod.Pki,
        kubelet_port: int,
        healthz_port: int,
        scheduler_port: int,
        timeout: float = 120.0,
    ) -> None:
        missing = missing_programs()
        if missing:
            raise NodeError(
                f"the node needs {', '.join(missing)}: run `bash .ci/install-node` (root)"
            )
        if os.geteuid() != 0:
            raise NodeError("the node runs containerd and kubelet, which need root")
        self._lay_out()
        deadline = time.monotonic() + timeout
        holder = self._spawn(
            "mount-namespace",
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                _holder_script(self.scratch),
            ],
        )
        self._wait_for(lambda: (self.scratch / "mounts-ready").exists(), deadline, holder)
        ns = ["nsenter", f"--target={holder.process.pid}", "--mount", "--"]
        (self.scratch / "containerd.toml").write_text(containerd_config(self.scratch))
        containerd = self._spawn(
            "containerd",
            [*ns, "containerd", f"--config={self.scratch / 'containerd.toml'}"],
        )
        self._wait_for(self.containerd_socket.exists, deadline, containerd)
        self.import_image(images.pause_archive(PAUSE_IMAGE))
        kubeconfig = _node_kubeconfig(
            self.scratch / "kubelet.kubeconfig", server, node_token, keys.ca_cert
        )
        (self.scratch / "kubelet.json").write_text(
            kubelet_config(self.scratch, keys.ca_cert, kubelet_port, healthz_port)
        )
        self._spawn(
            "kubelet",
            [
                *ns,
                self.controlplane,
                "kubelet",
                f"--config={self.scratch / 'kubelet.json'}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.scratch / 'kubelet'}",
                f"--cert-dir={self.scratch / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                self.controlplane,
                "kube-scheduler",
                f"--kubeconfig={admin_kubeconfig}",
                f"--authentication-kubeconfig={admin_kubeconfig}",
                f"--authorization-kubeconfig={admin_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
            ],
        )

    def import_image(self, archive: Path) -> None:
        """Load a docker-archive tarball into the node's containerd (namespace k8s.io)."""
        result = subprocess.run(
            [
                "ctr",
                f"--address={self.containerd_socket}",
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack",
                str(archive),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise NodeError(f"ctr images import {archive} failed: {result.stderr[-2000:]}")

    def stop(self, grace: float = 10.0) -> None:
        by_name = {p.name: p for p in self.procs}
        for name in ("kube-scheduler", "kubelet"):
            if name in by_name:
                self._stop(by_name[name], grace)
        self._stop_shims(grace)
        for name in ("containerd", "mount-namespace"):
            if name in by_name:
                self._stop(by_name[name], grace)
        for proc in self.procs:
            proc.log.close()
        self.procs.clear()
        remove_node_cgroups()

    def dead(self) -> list[str]:
        return [p.name for p in self.procs if p.process.poll() is not None]

    # -- internals -------------------------------------------------------------------------

    def _lay_out(self) -> None:
        for sub in (
            "run",
            "log/pods",
            "varlib/upper",
            "varlib/work",
            "sysctl",
            "cni",
            "containerd",
            "kubelet",
            "volume-plugins",
            "logs",
        ):
            (self.scratch / sub).mkdir(parents=True, exist_ok=True)
        for name, value in _KUBELET_SYSCTLS.items():
            (self.scratch / "sysctl" / name.replace("/", ".")).write_text(value + "\n")
        (self.scratch / "cni" / "10-loopback.conflist").write_text(
            json.dumps(
                {"cniVersion": "1.0.0", "name": "loopback", "plugins": [{"type": "loopback"}]}
            )
        )
        (self.scratch / "mounts-ready").unlink(missing_ok=True)

    def _spawn(self, name: str, argv: list[str]) -> Child:
        proc = spawn(name, argv, self.scratch / "logs")
        self.procs.append(proc)
        return proc

    def _wait_for(self, ready: Callable[[], bool], deadline: float, proc: Child) -> None:
        while not ready():
            if proc.process.poll() is not None or time.monotonic() > deadline:
                proc.log.flush()
                tail = proc.log_path.read_text(errors="replace")[-3000:]
                raise NodeError(f"{proc.name} did not start; log {proc.log_path}:\n{tail}")
            time.sleep(0.1)

    def _stop(self, proc: Child, grace: float) -> None:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
        try:
            proc.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait()

    def _stop_shims(self, grace: float) -> None:
        """The Pods' shims outlive containerd: find ours by socket, end them and their Pods."""
        pids = _shim_pids(str(self.containerd_socket))
        pids += _pids_in_node_cgroups()
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while any(Path(f"/proc/{pid}").exists() for pid in pids):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _shim_pids(socket: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in argv:
            pids.append(int(entry.name))
    return pids


def _node_cgroup_dirs() -> list[Path]:
    found: list[Path] = []
    if not _CGROUP_ROOT.is_dir():
        return found
    for hierarchy in _CGROUP_ROOT.iterdir():
        for name in _NODE_CGROUPS:
            top = hierarchy / name
            if top.is_dir() and not top.is_symlink():
                found.append(top)
    return found


def _pids_in_node_cgroups() -> list[int]:
    pids: set[int] = set()
    for top in _node_cgroup_dirs():
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except OSError:
                continue
    return sorted(pids)


def remove_node_cgroups() -> None:
    """rmdir the node's cgroups, deepest first (cgroupfs dirs go with rmdir, not rm -r)."""
    for top in _node_cgroup_dirs():
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for directory in [*dirs, top]:
            with contextlib.suppress(OSError):
                directory.rmdir()
