"""When the playground restarts a crashed operator or delivery service, and when it gives up.

A crash is usually passing (the operator stops when it loses its Lease to a slow
apiserver, by design; someone killed a process to see what happens) and restarting in place
keeps the playground's URLs, data and receiver. A process that crashes again at once is
broken: restarts back off (1 s, 2 s, 4 s …) and stop after `limit` in a row, so the
playground ends with the process's log instead of looping. A process that stayed up for
`stable_after` seconds starts a fresh count. Pure: times come from the caller's clock."""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    limit: int = 5
    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0


@dataclass
class Restarts:
    """The restart count of one process."""

    policy: RestartPolicy
    started_at: float
    count: int = 0  # restarts since the process last stayed up `stable_after` seconds

    def exited(self, now: float) -> float | None:
        """Seconds to wait before starting it again, or None to give up."""
        if now - self.started_at >= self.policy.stable_after:
            self.count = 0
        if self.count >= self.policy.limit:
            return None
        delay = min(self.policy.max_delay, self.policy.first_delay * 2.0**self.count)
        self.count += 1
        return delay

    def started(self, now: float) -> None:
        self.started_at = now


def describe_exit(code: int) -> str:
    """`Popen.returncode` as a person reads it: negative means killed by that signal."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name}"
