"""The playground's terminal output, made to survive its reader going away.

`webhook-operator dev | tee log` and Ctrl-C: the terminal sends SIGINT to the whole
pipeline, tee dies at once, and the playground's next line ("stopping…") fails with
BrokenPipeError. Raised there, that error skipped the cleanup and left etcd, the apiserver
and the rest running. The same happens when a terminal is closed (EIO) or a `| head` has
read enough.

The playground's choice: output that cannot be written means nobody is watching, so the
playground stops, cleanly, as on Ctrl-C. From the first failed write on, the output goes
to /dev/null (so neither the cleanup nor the interpreter's exit trips over it again) and
`on_lost` is called once; the playground sends itself SIGINT there. `probe` notices a
reader that went away before anything is written (POLLERR on a pipe, POLLHUP on a
terminal), so a quiet playground stops too."""

from __future__ import annotations

import contextlib
import io
import os
import select
from collections.abc import Callable
from typing import IO


class SurvivingOutput(io.TextIOBase):
    def __init__(self, stream: IO[str], on_lost: Callable[[], None]) -> None:
        super().__init__()
        self._stream = stream
        self._on_lost = on_lost
        self.lost = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lose()

    def isatty(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return self._stream.isatty()
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def probe(self) -> None:
        """Check, without writing, whether the reader is still there."""
        if self.lost:
            return
        try:
            poller = select.poll()
            poller.register(self._stream.fileno(), 0)  # errors and hang-ups are always reported
            events = poller.poll(0)
        except (OSError, ValueError):
            return  # not a pollable file: the next write will tell
        if any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events):
            self._lose()

    def _lose(self) -> None:
        self.lost = True
        # Whatever is still buffered goes to /dev/null instead of failing again on flush,
        # in the cleanup or at interpreter exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        self._on_lost()
