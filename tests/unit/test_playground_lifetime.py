"""The playground's lifetime pieces on their own: when a crashed service is restarted, the
state-directory lock and what a refused playground says, output that outlives its reader,
and children that die with their parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from webhook_operator.devcluster import devstate
from webhook_operator.devcluster.output import SurvivingOutput
from webhook_operator.devcluster.restarts import RestartPolicy, Restarts, describe_exit

# -- restarts ---------------------------------------------------------------------------------


def test_a_crash_loop_backs_off_then_gives_up() -> None:
    restarts = Restarts(RestartPolicy(limit=4, first_delay=1, max_delay=5), started_at=0)
    delays = []
    now = 0.0
    while (delay := restarts.exited(now)) is not None:
        delays.append(delay)
        now += delay
        restarts.started(now)
        now += 0.5  # crashes again at once
    assert delays == [1, 2, 4, 5]


def test_a_service_that_stayed_up_starts_a_fresh_count() -> None:
    policy = RestartPolicy(limit=2, stable_after=60)
    restarts = Restarts(policy, started_at=0)
    assert restarts.exited(1) == 1
    restarts.started(2)
    assert restarts.exited(3) == 2
    restarts.started(5)
    assert restarts.exited(6) is None  # two in a row: give up
    restarts.started(10)
    assert restarts.exited(100) == 1  # up for 90 s: this crash is the first again


def test_exit_codes_read_as_a_person_reads_them() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-200) == "was killed by signal 200"


# -- the state-directory lock -------------------------------------------------------------------


def test_a_second_playground_is_refused_naming_the_first(tmp_path: Path) -> None:
    root = tmp_path / "dev"
    first = devstate.lock(root)
    first.reset()
    (root / "cluster").mkdir()
    (root / "delivery.db").write_text("data")
    first.write_state(
        {
            "deliveryUrl": "http://127.0.0.1:4001",
            "kubeconfig": str(root / "cluster" / "kubeconfig"),
            "server": "https://127.0.0.1:4002",
            "pid": os.getpid(),
        }
    )
    with pytest.raises(devstate.PlaygroundBusy) as refused:
        devstate.lock(root)
    message = str(refused.value)
    assert f"(pid {os.getpid()}) is running on {root}" in message
    assert "http://127.0.0.1:4001" in message
    assert "https://127.0.0.1:4002" in message
    assert f"kill {os.getpid()}" in message
    assert "WEBHOOK_OPERATOR_DEV_DIR" in message
    assert (root / "delivery.db").read_text() == "data"  # nothing touched
    assert json.loads((root / "state.json").read_text())["pid"] == os.getpid()

    first.release()
    second = devstate.lock(root)  # free once the first is gone
    second.reset()
    assert sorted(p.name for p in root.iterdir()) == [devstate.LOCK_NAME]
    second.release()


def test_a_playground_still_starting_is_named_without_urls(tmp_path: Path) -> None:
    first = devstate.lock(tmp_path)
    with pytest.raises(devstate.PlaygroundBusy, match="still starting"):
        devstate.lock(tmp_path)
    first.release()


def test_the_lock_goes_with_its_process_however_it_ends(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from webhook_operator.devcluster import devstate
                devstate.lock(Path({str(tmp_path)!r}))
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(devstate.PlaygroundBusy, match=f"pid {holder.pid}"):
        devstate.lock(tmp_path)
    holder.kill()
    holder.wait()
    devstate.lock(tmp_path).release()


# -- output -----------------------------------------------------------------------------------


def test_output_whose_reader_went_away_is_dropped_and_reported_once() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    lost: list[bool] = []
    output = SurvivingOutput(stream, on_lost=lambda: lost.append(True))
    output.write("first line\n")
    output.flush()
    assert os.read(read_end, 100) == b"first line\n"
    os.close(read_end)
    output.probe()  # noticed before anything is written
    assert lost == [True]
    output.write("stopping…\n")
    output.flush()
    stream.close()  # what the interpreter does at exit: no BrokenPipeError
    assert lost == [True]


def test_output_fails_on_write_when_nobody_probed() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    lost: list[bool] = []
    output = SurvivingOutput(stream, on_lost=lambda: lost.append(True))
    os.close(read_end)
    assert output.write("x" * 100) == 100
    output.flush()
    output.write("more\n")
    assert lost == [True]
    stream.close()


# -- children die with their parent ---------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import subprocess, sys, time
                from webhook_operator.devcluster.lifetime import die_with_parent
                child = subprocess.Popen(
                    ["sleep", "60"], start_new_session=True, preexec_fn=die_with_parent()
                )
                print(child.pid, flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived its killed parent"
        time.sleep(0.05)
