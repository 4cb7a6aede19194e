"""The compiled benchmark receiver (`bench/receiver_go/`): built once with the machine's Go
toolchain, cached by source hash next to the control-plane binary, so a benchmark's
receiver costs a fraction of a core and is never what limits the pipeline."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from webhook_operator.devcluster.binaries import cache_dir

SOURCE = Path(__file__).resolve().parent / "receiver_go"


def binary() -> Path:
    digest = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    target = cache_dir() / f"bench-receiver-{digest.hexdigest()[:16]}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename, so a concurrent run never sees half a file.
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".receiver-")
        os.close(fd)
        subprocess.run(["go", "build", "-o", partial, "."], cwd=SOURCE, check=True)
        os.replace(partial, target)
    return target


def start(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(binary()), f"-listen=127.0.0.1:{port}"])


def selftest(requests: int = 50_000, concurrency: int = 50) -> dict[str, float]:
    """The receiver's own capacity: it serves on loopback and drives itself."""
    out = subprocess.run(
        [str(binary()), "-selftest", f"-requests={requests}", f"-concurrency={concurrency}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, to show how little the receiver used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
