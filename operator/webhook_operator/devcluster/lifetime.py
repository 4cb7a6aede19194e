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
import sys
from collections.abc import Callable
from typing import Any

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
