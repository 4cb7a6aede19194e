"""Child processes that die with the process that started them.

Stopping the children in order is the launcher's job (the playground, `cluster up`, the
test fixtures); this is the backstop for when it cannot: it was killed with SIGKILL, it
crashed, or its cleanup was cut short. Without it etcd, the apiserver and the rest run on
unseen, holding ports and files. On Linux the kernel sends the child SIGKILL when its parent
goes (`prctl(PR_SET_PDEATHSIG)`, kept across exec); elsewhere there is no backstop.

The "parent" the kernel watches is the thread that started the child, not the process:
start children from a thread that lives as long as they should (the main thread)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once here: the function passed to Popen runs between fork and exec, where it
# should do as little as possible.
_prctl = _load_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that makes the child get SIGKILL when the
    calling thread ends; None where the platform has no such thing."""
    if _prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl: then nothing would ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


@dataclass
class Child:
    """A started piece (etcd, the apiserver, containerd, kubelet ...) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def log_tail(self, limit: int = 3000) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-limit:]


def spawn(name: str, argv: list[str], log_dir: Path) -> Child:
    """Start `argv` with its output in `log_dir/<name>.log`, in its own process group
    (Ctrl-C in a terminal reaches the launcher, which then stops the pieces in order
    instead of all at once) and gone with the launcher when it cannot stop them."""
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(),
        env={**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "2")},
    )
    return Child(name=name, process=process, log_path=log_path, log=log)
