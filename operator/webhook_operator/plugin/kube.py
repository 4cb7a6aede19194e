"""The Kubernetes side of the plugin, with the synchronous `kubernetes` client: read an
endpoint and its signing Secret, set annotations, merge-patch `spec.active`.

The kubeconfig's own credentials are used as they are (exec plugins and client
certificates included), so whatever lets `kubectl` edit endpoints lets these commands do
the same, and RBAC errors are the apiserver's own words.

Every call is bounded: 5 s to connect and 30 s for the answer, with at most one retry of a
failed connection (urllib3 would otherwise retry three times, and a GET's read timeout
too, so a hung apiserver could hold a command for two minutes). When the apiserver does
not answer, the command ends with exit code 3 and says so in one line."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from webhook_operator import rotation
from webhook_operator.api.v1alpha1 import GROUP, VERSION
from webhook_operator.plugin.client import exit_code
from webhook_operator.plugin.errors import Exit, PluginError

PLURAL = "webhookendpoints"
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30
REQUEST_TIMEOUT = (CONNECT_TIMEOUT, READ_TIMEOUT)
# The keys of the generated Secret, current first: the order `verify` numbers keys in.
SECRET_FIELDS = (rotation.CURRENT_KEY, rotation.PREVIOUS_KEY)


def connect(kubeconfig: str) -> client.ApiClient:
    """An API client for the kubeconfig's current context; never writes the kubeconfig
    back (the library would, to cache refreshed auth-provider tokens)."""
    configuration = client.Configuration()
    configuration.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, redirect=0)
    try:
        new_client = cast(Any, config.new_client_from_config)
        api: client.ApiClient = new_client(
            config_file=kubeconfig, persist_config=False, client_configuration=configuration
        )
    except ConfigException as exc:
        raise PluginError(f"cannot use kubeconfig {kubeconfig}: {exc}") from None
    return api


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"HTTP {exc.status} {exc.reason or ''}".strip()


@contextmanager
def api_errors(api: client.ApiClient, what: str) -> Iterator[None]:
    """Turn the client's exceptions into one-line PluginErrors; `what` names the object
    for the 404 message, which the apiserver words less helpfully."""
    try:
        yield
    except ApiException as exc:
        status = int(exc.status or 0)
        if status == 404:
            raise PluginError(what, Exit.NOT_FOUND) from None
        if status == 0:
            raise PluginError(
                f"cannot reach the Kubernetes API at {api.configuration.host}: {exc.reason}",
                Exit.UNREACHABLE,
            ) from None
        raise PluginError(_status_message(exc), exit_code(status)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise PluginError(_unreachable(api, exc), Exit.UNREACHABLE) from None


def _unreachable(api: client.ApiClient, exc: BaseException) -> str:
    """One line on why the apiserver did not answer, without urllib3's object reprs."""
    host = api.configuration.host
    reason = getattr(exc, "reason", None)
    cause = reason if isinstance(reason, BaseException) else exc
    if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
        return f"cannot reach the Kubernetes API at {host}: no connection within {CONNECT_TIMEOUT}s"
    if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
        # Also a TLS handshake that never completes, bounded by the connect timeout.
        return (
            f"the Kubernetes API at {host} did not answer in time: it may be down or"
            " overloaded; try again (kubectl cluster-info shows whether it is up)"
        )
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        detail = str(cause).split(": ", 1)[-1]
        return f"cannot reach the Kubernetes API at {host}: {detail}"
    return f"cannot reach the Kubernetes API at {host}: {reason or exc}"


def _not_found(namespace: str, name: str) -> str:
    return f"WebhookEndpoint {name} does not exist in namespace {namespace}"


def get_endpoint(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    with api_errors(api, _not_found(namespace, name)):
        obj = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
        )
    return cast(dict[str, Any], obj)


def patch_endpoint(
    api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    """A JSON merge patch: it touches only the fields named, so it neither races with the
    operator's status writes nor needs a read-modify-write."""
    custom = client.CustomObjectsApi(api)
    with api_errors(api, _not_found(namespace, name)):
        obj = custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )
    return cast(dict[str, Any], obj)


def annotate_endpoint(
    api: client.ApiClient, namespace: str, name: str, key: str, value: str
) -> dict[str, Any]:
    return patch_endpoint(api, namespace, name, {"metadata": {"annotations": {key: value}}})


def set_active(api: client.ApiClient, namespace: str, name: str, active: bool) -> dict[str, Any]:
    return patch_endpoint(api, namespace, name, {"spec": {"active": active}})


@dataclass(frozen=True)
class SigningSecrets:
    """The secrets an endpoint's deliveries may be signed with, current first."""

    secret_name: str
    secrets: list[str]
    generated: bool


def signing_secrets(api: client.ApiClient, namespace: str, endpoint: str) -> SigningSecrets:
    """The endpoint's current signing secret, and during a rotation's grace period the
    previous one too, from the Secret it uses (its spec.secretRef, else the generated one)."""
    # Imported here: the controller package pulls in the async client, which only this
    # one command needs, and the plugin should start quickly.
    from webhook_operator.naming import generated_secret_name

    obj = get_endpoint(api, namespace, endpoint)
    ref = (obj.get("spec") or {}).get("secretRef") or None
    if ref:
        name, keys, generated = (
            str(ref["name"]),
            [str(ref.get("key") or rotation.CURRENT_KEY)],
            False,
        )
    else:
        name, keys, generated = generated_secret_name(endpoint), list(SECRET_FIELDS), True
    core = client.CoreV1Api(api)
    with api_errors(
        api,
        f"Secret {name} of WebhookEndpoint {endpoint} does not exist in namespace {namespace}"
        + (" (the operator creates it; is it running?)" if generated else ""),
    ):
        secret = core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    data = secret.data or {}
    values = []
    for key in keys:
        raw = data.get(key)
        if raw:
            values.append(base64.b64decode(raw).decode("utf-8", errors="replace"))
    if not values:
        raise PluginError(
            f"Secret {name} has no key {keys[0]!r} holding the signing secret", Exit.NOT_FOUND
        )
    return SigningSecrets(secret_name=name, secrets=values, generated=generated)
