"""An async Kubernetes API client from in-cluster credentials or a kubeconfig: shared by
the operator and the delivery service, which otherwise share only models and pure logic.

Every request it makes has a timeout unless the caller passes its own: the generated
client waits forever by default, so an apiserver that stops answering (paused, partitioned,
overloaded) would hang a TokenReview, a Lease renewal or a Secret write for good. Watches
are long-lived on purpose, so they get a connect timeout and a read timeout a little past
the server-side `timeoutSeconds` instead of a total."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client, config

# Connecting to a live apiserver takes milliseconds; a few seconds means it is not there.
CONNECT_TIMEOUT = 5.0
# The whole of one ordinary call (read, create, patch, list). Long enough for a list of
# thousands of objects, short enough that a stuck call is retried while it still matters.
REQUEST_TIMEOUT = 30.0
# A watch ends on the server's side after its timeoutSeconds; past that plus this margin
# without a byte, the connection is dead.
WATCH_READ_MARGIN = 30.0


def default_timeout(
    streaming: bool, query_params: Iterable[tuple[str, Any]] | None
) -> aiohttp.ClientTimeout:
    """The timeout for a request that names none. `streaming` is a response read as it
    comes (a watch), not loaded whole."""
    if not streaming:
        return aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, sock_connect=CONNECT_TIMEOUT)
    server_timeout = next(
        (float(v) for k, v in query_params or () if k == "timeoutSeconds" and v), None
    )
    read = server_timeout + WATCH_READ_MARGIN if server_timeout is not None else None
    return aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=read)


class TimeoutApiClient(client.ApiClient):
    """The generated ApiClient with a default timeout on every request."""

    def request(
        self,
        method: str,
        url: str,
        query_params: Any = None,
        headers: Any = None,
        post_params: Any = None,
        body: Any = None,
        _preload_content: bool = True,
        _request_timeout: Any = None,
    ) -> Any:
        if _request_timeout is None:
            _request_timeout = default_timeout(not _preload_content, query_params)
        return super().request(
            method,
            url,
            query_params=query_params,
            headers=headers,
            post_params=post_params,
            body=body,
            _preload_content=_preload_content,
            _request_timeout=_request_timeout,
        )


async def connect(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials inside a Pod, else the kubeconfig (KUBECONFIG or ~/.kube)."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        cast(Any, config.load_incluster_config)(client_configuration=configuration)
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return TimeoutApiClient(configuration=configuration)
