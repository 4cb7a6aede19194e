"""Where the dev playground keeps its state, and the file through which `kubectl webhooks`
finds the playground's delivery service and kubeconfig."""

from __future__ import annotations

import os
from pathlib import Path

from webhook_operator.devcluster.binaries import cache_dir


def state_dir() -> Path:
    explicit = os.environ.get("WEBHOOK_OPERATOR_DEV_DIR")
    return Path(explicit) if explicit else cache_dir() / "dev"


def state_file() -> Path:
    """`{"deliveryUrl": "...", "kubeconfig": "..."}` while `webhook-operator dev` runs."""
    return state_dir() / "state.json"
