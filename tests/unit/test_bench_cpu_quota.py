"""The benchmarks' per-process CPU limit (a Pod's CPU limit, without a kubelet): the process
lands in its own group with the quota asked for, and the group is gone afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from bench import cpu_quota


def test_a_limit_must_be_positive() -> None:
    with (
        pytest.raises(cpu_quota.QuotaError, match="must be positive"),
        cpu_quota.cpu_limited([os.getpid()], 0),
    ):
        pass


def test_throttled_time_is_read_from_either_cgroup_version(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text(
        "nr_periods 31\nnr_throttled 30\nthrottled_time 1500000000\n"
    )
    assert cpu_quota.throttled_seconds(tmp_path) == 1.5
    (tmp_path / "cpu.stat").write_text("usage_usec 10\nthrottled_usec 250000\n")
    assert cpu_quota.throttled_seconds(tmp_path) == 0.25
    assert cpu_quota.throttled_seconds(tmp_path / "missing") == 0.0


@pytest.mark.skipif(
    not os.access(cpu_quota.CGROUP, os.W_OK) and not os.access(cpu_quota.CGROUP / "cpu", os.W_OK),
    reason="needs write access to /sys/fs/cgroup (root)",
)
def test_each_process_gets_its_own_group_with_the_quota() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with cpu_quota.cpu_limited([sleeper.pid], 0.4) as (group,):
            assert str(sleeper.pid) in (group / "cgroup.procs").read_text().split()
            quota = group / "cpu.cfs_quota_us"
            if quota.exists():
                assert quota.read_text().strip() == "40000"
            else:
                assert (group / "cpu.max").read_text().split()[0] == "40000"
            sleeper.kill()
            sleeper.wait()
        assert not group.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
