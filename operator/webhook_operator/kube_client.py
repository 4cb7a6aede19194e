"""An async Kubernetes API client from in-cluster credentials or a kubeconfig: shared by
the operator and the delivery service, which otherwise share only models and pure logic."""

from __future__ import annotations

import os
from typing import Any, cast

from kubernetes_asyncio import client, config


async def connect(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials inside a Pod, else the kubeconfig (KUBECONFIG or ~/.kube)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        cast(Any, config.load_incluster_config)()
        return client.ApiClient()
    api: client.ApiClient = await config.new_client_from_config(config_file=kubeconfig)
    return api
