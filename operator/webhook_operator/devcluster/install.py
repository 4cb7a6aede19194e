"""Install the CRDs into a cluster and wait until the apiserver serves them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from webhook_operator import crdgen
from webhook_operator.api.v1alpha1 import GROUP, VERSION


def api_client(kubeconfig: Path) -> client.ApiClient:
    new_client = cast(Any, config.new_client_from_config)
    return cast(client.ApiClient, new_client(config_file=str(kubeconfig)))


def apply_crd(api: client.ApiextensionsV1Api, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    try:
        current = api.read_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        # The generated client accepts plain dicts as bodies; its hints say models only.
        api.create_custom_resource_definition(cast(Any, body))
        return
    body = {**body, "metadata": {**body["metadata"]}}
    body["metadata"]["resourceVersion"] = cast(Any, current.metadata).resource_version
    api.replace_custom_resource_definition(name, cast(Any, body))


def _established(api: client.ApiextensionsV1Api, name: str) -> bool:
    crd = api.read_custom_resource_definition(name)
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def install_crds(kubeconfig: Path, timeout: float = 60.0) -> list[str]:
    """Create or update every CRD, then wait for Established. Returns their names."""
    with api_client(kubeconfig) as raw:
        api = client.ApiextensionsV1Api(raw)
        names = []
        for body in crdgen.all_crds():
            apply_crd(api, body)
            names.append(body["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while not _established(api, name):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not Established after {timeout}s")
                time.sleep(0.1)
    # Discovery lags Established by a moment; kubectl reads discovery.
    _wait_discovery(kubeconfig, deadline=time.monotonic() + timeout)
    return names


def _wait_discovery(kubeconfig: Path, deadline: float) -> None:
    with api_client(kubeconfig) as raw:
        while True:
            try:
                resources = client.CustomObjectsApi(raw).get_api_resources(GROUP, VERSION)
                served = {r.name for r in resources.resources}
                if {info.plural for info in crdgen.KINDS} <= served:
                    return
            except ApiException as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"{GROUP}/{VERSION} not in discovery")
            time.sleep(0.1)
