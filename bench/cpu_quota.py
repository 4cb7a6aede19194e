"""A CPU limit for one benchmark process, as a Pod's `resources.limits.cpu` gives it.

Whether a second replica adds throughput is a question about the design (does anything
shared serialise the replicas?), but on this machine kind it is drowned by the machine:
one unlimited delivery process, PostgreSQL, the load generator and the receiver already
keep both cores about 80 % busy, so a second process finds only the idle fifth. In a
cluster each replica runs within its CPU limit on cores of its own. Putting each delivery
process in its own CFS quota (the mechanism behind a Pod's CPU limit) measures that case:
N processes of `cores` each, with the rest of the machine for the database and the load.

Needs write access to the cgroup file system (root here); cgroup v1's cpu hierarchy and
cgroup v2 are both handled. The groups are removed when the context ends."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class QuotaError(RuntimeError):
    pass


def _v1_root() -> Path | None:
    for name in ("cpu", "cpu,cpuacct"):
        root = CGROUP / name
        if (root / "cpu.cfs_quota_us").exists():
            return root
    return None


def _make_group(name: str, cores: float) -> Path:
    quota = max(1_000, int(cores * PERIOD_US))
    v1 = _v1_root()
    if v1 is not None:
        group = v1 / name
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        return group
    if (CGROUP / "cgroup.controllers").exists():
        if "cpu" not in (CGROUP / "cgroup.subtree_control").read_text().split():
            (CGROUP / "cgroup.subtree_control").write_text("+cpu")
        group = CGROUP / name
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        return group
    raise QuotaError("no cgroup cpu controller found under /sys/fs/cgroup")


@contextlib.contextmanager
def cpu_limited(pids: list[int], cores: float) -> Iterator[list[Path]]:
    """Each process in `pids` limited to `cores` CPUs of its own (one group per process,
    as one Pod per replica). Yields the groups; removes them at the end (the processes
    must have exited by then, or they are moved back to the root group)."""
    if cores <= 0:
        raise QuotaError(f"a CPU limit must be positive, not {cores}")
    groups: list[Path] = []
    try:
        for pid in pids:
            try:
                group = _make_group(f"wo-bench-{os.getpid()}-{pid}", cores)
                (group / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                raise QuotaError(f"cannot limit process {pid} to {cores} CPUs: {exc}") from exc
            groups.append(group)
        yield groups
    finally:
        for group in groups:
            _remove(group)


def _remove(group: Path) -> None:
    root = group.parent
    with contextlib.suppress(OSError):
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (root / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        group.rmdir()


def throttled_seconds(group: Path) -> float:
    """How long the group's processes waited for their quota (cpu.stat)."""
    with contextlib.suppress(OSError):
        for line in (group / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":  # v1, nanoseconds
                return int(value) / 1e9
            if key == "throttled_usec":  # v2
                return int(value) / 1e6
    return 0.0
