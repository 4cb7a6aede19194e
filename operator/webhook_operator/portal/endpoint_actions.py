"""What a customer can do to the ticket's app's endpoints, once, for every way in: the
tenant API (endpoints_api.py) and the web page call these and only translate requests and
answers.

Kubernetes stays the source of truth: an endpoint created here is a WebhookEndpoint
labelled as portal-managed and annotated with the ticket's subject; endpoints from Git are
listed but never changed (409), so the portal never fights Argo CD or Flux. The signing
secret is the operator's to generate and rotate; the portal waits (bounded) for it, shows
it in full once, in the answer to the change that made it, and masked afterwards. Every
refusal is an ApiError with a reason."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from webhook_operator import rotation
from webhook_operator.api import names
from webhook_operator.api.v1alpha1 import GROUP, VERSION
from webhook_operator.http_api.errors import ApiError
from webhook_operator.kube_auth import unavailable
from webhook_operator.naming import generated_secret_name
from webhook_operator.portal import audit, endpoint_rules
from webhook_operator.portal.context import Portal
from webhook_operator.portal.directory import endpoint_app
from webhook_operator.portal.tenant import Tenant
from webhook_operator.portal.wire import Endpoint, EndpointCreate, EndpointUpdate
from webhook_operator.timestamps import parse_ts
from webhook_operator.url_policy import pick_address

log = logging.getLogger(__name__)
PLURAL = "webhookendpoints"
DNS_TIMEOUT = 2.0
POLL = 0.2


# --- lookups ---------------------------------------------------------------------------------


def owned_endpoint(portal: Portal, tenant: Tenant, name: str) -> dict[str, Any]:
    """The ticket's app's endpoint `name`: 404 when there is none in the ticket's
    namespace, 403 when it belongs to another app (whose name is not told)."""
    obj = portal.directory.endpoint(tenant.namespace, name)
    if obj is None:
        raise ApiError(404, "EndpointNotFound", f"there is no endpoint {name}")
    if endpoint_app(obj) != tenant.app_name:
        raise ApiError(403, "OutsideTicket", f"endpoint {name} is not part of this ticket's app")
    return obj


def changeable(obj: dict[str, Any]) -> None:
    if endpoint_rules.managed_by(obj) != names.PORTAL_MANAGER:
        name = obj["metadata"]["name"]
        raise ApiError(
            409,
            "ManagedByGitOps",
            f"endpoint {name} is declared in Git by the platform and cannot be changed here;"
            " ask the platform team",
        )


def kube_error(exc: ApiException, what: str) -> ApiError:
    """An apiserver refusal as the customer should see it."""
    status = int(exc.status or 0)
    message = _kube_message(exc)
    if status == 409:
        return ApiError(409, "AlreadyExists" if "exists" in message else "Conflict", message)
    if status == 422:
        return ApiError(422, "Invalid", message)
    if status in (401, 403):
        log.error("Kubernetes refused the portal while it tried to %s: %s", what, message)
        return ApiError(
            502,
            "PortalNotAllowed",
            f"the platform has not given the portal the permission to {what}",
        )
    return ApiError(
        503,
        "KubernetesUnavailable",
        f"Kubernetes could not {what} now; try again shortly",
        headers={"Retry-After": "5"},
    )


def _kube_message(exc: ApiException) -> str:
    import json

    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason or "refused")


async def _kube(what: str, call: Any) -> Any:
    try:
        return await call
    except ApiException as exc:
        raise kube_error(exc, what) from None
    except Exception as exc:
        if unavailable(exc):
            raise ApiError(
                503,
                "KubernetesUnavailable",
                f"Kubernetes could not {what} now; try again shortly",
                headers={"Retry-After": "5"},
            ) from None
        raise


# --- checks that need I/O ----------------------------------------------------------------------


async def address_reason(portal: Portal, url: str) -> str | None:
    """Why deliveries could never reach `url` under the address policy the delivery
    service applies: a literal address outside the allow-list, or a name that resolves only
    to such addresses. A name that does not resolve (yet) is let through: the sender checks
    again at every delivery."""
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        why = portal.addresses.check(literal)
        return f"deliveries may not go to {why}" if why else None
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
            DNS_TIMEOUT,
        )
    except (OSError, TimeoutError):
        return None
    _, why = pick_address(portal.addresses, [str(info[4][0]) for info in infos])
    return f"{host} resolves to no address deliveries may go to: {why}" if why else None


async def check_url(portal: Portal, tenant: Tenant, url: str) -> None:
    reason = endpoint_rules.url_reason(url, tenant.spec) or await address_reason(portal, url)
    if reason:
        raise ApiError(422, "InvalidUrl", reason)


def check_events(tenant: Tenant, events: list[str]) -> None:
    reason = endpoint_rules.events_reason(events, tenant.spec)
    if reason:
        raise ApiError(422, "InvalidEvents", reason)


# --- the signing secret ------------------------------------------------------------------------


def _secret_location(obj: dict[str, Any]) -> tuple[str, str]:
    ref = (obj.get("spec") or {}).get("secretRef") or {}
    if ref.get("name"):
        return str(ref["name"]), str(ref.get("key") or rotation.CURRENT_KEY)
    return generated_secret_name(obj["metadata"]["name"]), rotation.CURRENT_KEY


async def _read_secret(portal: Portal, namespace: str, name: str) -> dict[str, Any] | None:
    """The Secret as JSON, or None when there is none. Read raw: building the client's
    V1Secret objects was a third of the time of reading one endpoint."""
    core: Any = client.CoreV1Api(portal.api)
    try:
        response = await core.read_namespaced_secret(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise kube_error(exc, "read the signing secret") from None
    try:
        found: dict[str, Any] = orjson.loads(await response.read())
    finally:
        response.release()
    return found


def _value(secret: dict[str, Any], key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _annotation(secret: dict[str, Any], key: str) -> str | None:
    value = ((secret.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


def _carried_out(secret: dict[str, Any], token: str | None) -> bool:
    """Whether the Secret holds a key, and (with `token`) that rotation was done."""
    has_key = _value(secret, rotation.CURRENT_KEY) is not None
    return has_key and (token is None or _annotation(secret, rotation.HANDLED_TOKEN) == token)


async def _wait_for_secret(
    portal: Portal, namespace: str, name: str, token: str | None
) -> dict[str, Any] | None:
    """The generated Secret once it exists (and, with `token`, once that rotation was
    done), or None after the configured wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + portal.settings.secret_wait
    while True:
        secret = await _read_secret(portal, namespace, name)
        if secret is not None and _carried_out(secret, token):
            return secret
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(POLL)


def _full_view(
    obj: dict[str, Any], secret: dict[str, Any] | None, key: str, masked: bool
) -> Endpoint:
    value = _value(secret, key) if secret is not None else None
    expires = (
        parse_ts(_annotation(secret, rotation.PREVIOUS_EXPIRES_AT)) if secret is not None else None
    )
    return endpoint_rules.view(
        obj, endpoint_rules.mask(value) if masked else value, previous_expires_at=expires
    )


def _serialized_view(portal: Portal, namespace: str, obj: dict[str, Any]) -> orjson.Fragment:
    key = (namespace, obj["metadata"]["name"])
    cached = portal.directory.derived.get(key)
    if not isinstance(cached, orjson.Fragment):
        cached = orjson.Fragment(endpoint_rules.view(obj).model_dump_json(by_alias=True))
        portal.directory.derived[key] = cached
    return cached


# --- handlers ----------------------------------------------------------------------------------


# --- the actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: list[orjson.Fragment]
    """Each endpoint's view as JSON, serialized once per change of the endpoint."""
    next: str | None


def list_page(portal: Portal, tenant: Tenant, limit: int, after: str = "") -> Page:
    """The app's endpoints by name, `limit` of them after the name `after`."""
    objs = portal.directory.app_endpoints(tenant.namespace, tenant.app_name)
    page = [o for o in objs if o["metadata"]["name"] > after][: limit + 1]
    more = len(page) > limit
    page = page[:limit]
    return Page(
        items=[_serialized_view(portal, tenant.namespace, obj) for obj in page],
        next=page[-1]["metadata"]["name"] if more else None,
    )


async def read(portal: Portal, tenant: Tenant, name: str) -> Endpoint:
    """One endpoint, its secret masked."""
    obj = owned_endpoint(portal, tenant, name)
    secret_name, key = _secret_location(obj)
    secret = await _read_secret(portal, tenant.namespace, secret_name)
    return _full_view(obj, secret, key, masked=True)


async def create(portal: Portal, tenant: Tenant, asked: EndpointCreate) -> Endpoint:
    """A new portal endpoint; the answer holds its signing secret in full, once."""
    name = asked.name if asked.name is not None else f"ep-{secrets.token_hex(5)}"
    reason = endpoint_rules.name_reason(name)
    if reason:
        raise ApiError(400, "InvalidName", reason)
    await check_url(portal, tenant, asked.url)
    check_events(tenant, asked.events)
    count = len(portal.directory.app_endpoints(tenant.namespace, tenant.app_name))
    if count >= tenant.portal.max_endpoints:
        raise ApiError(
            409,
            "TooManyEndpoints",
            f"this app may have at most {tenant.portal.max_endpoints} endpoints",
        )
    body = endpoint_rules.new_endpoint(
        tenant.namespace, name, tenant.app_name, asked, tenant.subject
    )
    obj = await _kube(
        "create the endpoint",
        _custom(portal).create_namespaced_custom_object(
            GROUP, VERSION, tenant.namespace, PLURAL, body
        ),
    )
    portal.directory.remember(obj)
    await audit.record(
        portal, obj, "PortalCreated", f"created by {tenant.subject} through the portal"
    )
    secret = await _wait_for_secret(portal, tenant.namespace, generated_secret_name(name), None)
    return _full_view(obj, secret, rotation.CURRENT_KEY, masked=False)


async def update(portal: Portal, tenant: Tenant, name: str, asked: EndpointUpdate) -> Endpoint:
    """Change url, description, events or active; active true also re-enables."""
    obj = owned_endpoint(portal, tenant, name)
    changeable(obj)
    if asked.url is not None:
        await check_url(portal, tenant, asked.url)
    if asked.events is not None:
        check_events(tenant, asked.events)
    patch, changes = endpoint_rules.update_patch(
        obj, asked, tenant.subject, f"portal-{secrets.token_hex(6)}"
    )
    updated = await _patch(portal, tenant, name, patch, "change the endpoint")
    if changes:
        await audit.record(
            portal,
            updated,
            "PortalUpdated",
            f"{', '.join(changes)} by {tenant.subject} through the portal",
        )
    return endpoint_rules.view(updated)


async def delete(portal: Portal, tenant: Tenant, name: str) -> None:
    """Delete a portal endpoint; the delivery service cancels its pending deliveries."""
    obj = owned_endpoint(portal, tenant, name)
    changeable(obj)
    # Posted first: the Event outlives the endpoint and says who deleted it.
    await audit.record(
        portal,
        obj,
        "PortalDeleted",
        f"deleted by {tenant.subject} through the portal; its pending deliveries are cancelled",
    )
    await _kube(
        "delete the endpoint",
        _custom(portal).delete_namespaced_custom_object(
            GROUP, VERSION, tenant.namespace, PLURAL, name
        ),
    )
    portal.directory.forget(tenant.namespace, name)


async def rotate(portal: Portal, tenant: Tenant, name: str) -> Endpoint:
    """Rotate the signing secret; the answer holds the new one in full, once."""
    obj = owned_endpoint(portal, tenant, name)
    changeable(obj)
    token = f"portal-{int(portal.clock())}-{secrets.token_hex(4)}"
    patch = {
        "metadata": {
            "annotations": {
                names.ROTATE_ANNOTATION: token,
                names.CHANGED_BY_ANNOTATION: tenant.subject,
            }
        }
    }
    updated = await _patch(portal, tenant, name, patch, "rotate the secret")
    await audit.record(
        portal,
        updated,
        "PortalSecretRotated",
        f"signing secret rotated by {tenant.subject} through the portal",
    )
    secret = await _wait_for_secret(portal, tenant.namespace, generated_secret_name(name), token)
    if secret is None:
        raise ApiError(
            503,
            "RotationPending",
            "the rotation was requested but the operator has not carried it out yet;"
            " the new secret cannot be shown. Ask the platform team to check the operator",
        )
    return _full_view(updated, secret, rotation.CURRENT_KEY, masked=False)


def _custom(portal: Portal) -> Any:
    return client.CustomObjectsApi(portal.api)


async def _patch(
    portal: Portal, tenant: Tenant, name: str, patch: dict[str, Any], what: str
) -> dict[str, Any]:
    updated: dict[str, Any] = await _kube(
        what,
        _custom(portal).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            tenant.namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
        ),
    )
    portal.directory.remember(updated)
    return updated
