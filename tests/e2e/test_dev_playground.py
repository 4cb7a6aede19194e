"""`webhook-operator dev` as a newcomer runs it: a delivery printed with a verified
signature, Healthy in `kubectl get`, and Ctrl-C stopping everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from webhook_operator.devcluster.binaries import kubectl_binary

BIN = Path(sys.executable).parent


def test_dev_playground(tmp_path: Path) -> None:
    env = {**os.environ, "WEBHOOK_OPERATOR_DEV_DIR": str(tmp_path / "dev"), "COLUMNS": "200"}
    process = subprocess.Popen(
        [str(BIN / "webhook-operator"), "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("signature verified" in line for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        output = "".join(lines)
        assert "export KUBECONFIG=" in output
        assert "kubectl get webhooks" in output
        kubeconfig = tmp_path / "dev" / "cluster" / "kubeconfig"
        assert (tmp_path / "dev" / "state.json").exists()

        def health() -> str:
            return subprocess.run(
                [
                    str(kubectl_binary()),
                    f"--kubeconfig={kubeconfig}",
                    "get",
                    "webhookendpoint",
                    "local-receiver",
                    "-o",
                    "jsonpath={.status.health}",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout

        deadline = time.monotonic() + 30
        while health() != "Healthy":
            assert time.monotonic() < deadline, "endpoint never Healthy"
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        reader.join(timeout=5)
    assert code == 0, "".join(lines)
    assert "stopped" in "".join(lines)
    assert not (tmp_path / "dev" / "state.json").exists()
