"""Where the dev playground keeps its state, the file through which `kubectl webhooks`
finds the playground's delivery service and kubeconfig, and the lock that keeps a second
playground from wiping the state directory of one that is running.

The lock is an exclusive `flock` on a file inside the state directory, held for the
playground's whole life: the kernel drops it when the process ends however it ends, so
there is never a stale lock to clean up by hand. The holder writes its pid into the lock
file; its URLs are in the state file once the delivery service is started."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from webhook_operator.devcluster.binaries import cache_dir

LOCK_NAME = "playground.lock"
DIR_ENV = "WEBHOOK_OPERATOR_DEV_DIR"


def state_dir() -> Path:
    explicit = os.environ.get(DIR_ENV)
    return Path(explicit) if explicit else cache_dir() / "dev"


def state_file() -> Path:
    """`{"deliveryUrl": "...", "portalUrl": "...", "kubeconfig": "...", "pid": ...,
    "server": "..."}` while `webhook-operator dev` runs. portalUrl carries a manage ticket
    for the sample app (a bearer secret: the file is readable by its owner only) and
    appears once the portal has issued it."""
    return state_dir() / "state.json"


class PlaygroundBusy(RuntimeError):
    """Another playground holds the state directory; the message names it."""


class StateDirError(RuntimeError):
    """The state directory cannot be created or locked."""


@dataclass(frozen=True)
class Holder:
    """What a refused playground can say about the one that is running."""

    pid: int | None
    state: dict[str, Any]


def describe_busy(root: Path, holder: Holder) -> str:
    who = f"pid {holder.pid}" if holder.pid else "pid unknown"
    lines = [f"another `webhook-operator dev` ({who}) is running on {root}"]
    labels = [
        ("deliveryUrl", "delivery service"),
        ("portalUrl", "portal"),
        ("server", "kube-apiserver"),
        ("kubeconfig", "kubeconfig"),
    ]
    shown = [(label, _shown(key, holder.state.get(key))) for key, label in labels]
    if any(isinstance(value, str) for _, value in shown):
        lines += [f"  {label + ':':<17} {value}" for label, value in shown if value]
    else:
        lines.append("  (still starting: no URLs yet)")
    stop = f"Ctrl-C in its terminal or `kill {holder.pid}`" if holder.pid else "Ctrl-C"
    lines.append(
        f"Use that one, stop it first ({stop}), or run another playground elsewhere with"
        f" {DIR_ENV}=<another directory>. Nothing was changed."
    )
    return "\n".join(lines)


def _shown(key: str, value: Any) -> Any:
    """The portal's address without the ticket in its fragment: a refused playground's
    message is no place for someone else's bearer secret."""
    if key == "portalUrl" and isinstance(value, str):
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
    return value


@dataclass
class StateLock:
    """The held lock; `release` (or the process ending) frees the directory."""

    root: Path
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def reset(self) -> None:
        """Empty the state directory for a fresh playground, keeping the lock file (another
        playground may already be waiting on it)."""
        for entry in self.root.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the state file in one step: readers never see half of it. Owner-only:
        it holds a portal ticket."""
        target = self.root / "state.json"
        partial = target.with_name(".state.json.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(state))
        partial.replace(target)

    def remove_state(self) -> None:
        with contextlib.suppress(OSError):
            (self.root / "state.json").unlink(missing_ok=True)


def _read_holder(root: Path, fd: int) -> Holder:
    pid: int | None = None
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 64, 0).decode().strip())
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads((root / "state.json").read_text())
        if isinstance(loaded, dict):
            state = loaded
    return Holder(pid=pid, state=state)


def lock(root: Path) -> StateLock:
    """Take the state directory, or raise PlaygroundBusy naming the playground using it.
    Touches nothing else in the directory."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateDirError(f"cannot use the state directory {root}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(root, fd)
        os.close(fd)
        raise PlaygroundBusy(describe_busy(root, holder)) from None
    except OSError as exc:
        os.close(fd)
        raise StateDirError(f"cannot lock the state directory {root}: {exc}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateLock(root=root, fd=fd)
