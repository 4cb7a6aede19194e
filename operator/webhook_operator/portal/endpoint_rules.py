"""What a customer may ask of an endpoint, and what it becomes: pure functions from the
request, the app's guard rails and the WebhookEndpoint object to a view, a refusal reason,
a new object or a merge patch. I/O (Kubernetes, DNS) stays in endpoints_api.py."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from webhook_operator import event_matching
from webhook_operator.api import names
from webhook_operator.api.v1alpha1 import (
    API_VERSION,
    EVENT_FILTER_PATTERN,
    Health,
    WebhookAppSpec,
    WebhookEndpointStatus,
)
from webhook_operator.health import PAUSED
from webhook_operator.portal.wire import Endpoint, EndpointCreate, EndpointUpdate
from webhook_operator.url_policy import check_url

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_FILTER = re.compile(EVENT_FILTER_PATTERN)
GITOPS = "gitops"


def managed_by(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return (
        names.PORTAL_MANAGER
        if labels.get(names.MANAGED_BY_LABEL) == names.PORTAL_MANAGER
        else GITOPS
    )


def mask(secret: str | None) -> str | None:
    if not secret:
        return None
    return f"whsec_…{secret[-4:]}"


def _time(raw: Any) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


def _status(obj: dict[str, Any]) -> WebhookEndpointStatus:
    try:
        return WebhookEndpointStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        return WebhookEndpointStatus()


def view(
    obj: dict[str, Any],
    secret: str | None = None,
    previous_expires_at: datetime | None = None,
) -> Endpoint:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = _status(obj)
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    return Endpoint(
        name=meta.get("name", ""),
        url=spec.get("url", ""),
        description=spec.get("description"),
        events=list(spec.get("events") or []),
        active=spec.get("active", True) is not False,
        managed_by=managed_by(obj),
        created_by=(meta.get("annotations") or {}).get(names.CREATED_BY_ANNOTATION),
        created_at=_time(meta.get("creationTimestamp")),
        ready=ready is not None and ready.status == "True",
        message=ready.message if ready is not None and ready.status != "True" else None,
        health=status.health.value,
        disabled_reason=status.disabled_reason,
        disabled_at=status.disabled_at,
        last_delivery_time=status.last_delivery_time,
        last_success_time=status.last_success_time,
        last_failure_time=status.last_failure_time,
        last_http_status=status.last_http_status,
        last_error=status.last_error,
        consecutive_failures=status.consecutive_failures,
        secret=secret,
        previous_secret_expires_at=previous_expires_at,
    )


def auto_disabled(obj: dict[str, Any]) -> bool:
    """Disabled by the delivery service (retries exhausted, 410 Gone), not paused."""
    status = _status(obj)
    return status.health is Health.DISABLED and status.disabled_reason not in (None, PAUSED)


# --- checks ----------------------------------------------------------------------------------


def name_reason(name: str) -> str | None:
    if not DNS_LABEL.fullmatch(name):
        return (
            f"{name!r} is not a valid name: use at most 63 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit"
        )
    return None


def url_reason(url: str, app: WebhookAppSpec) -> str | None:
    allow_http = app.portal is not None and app.portal.allow_insecure_http
    reason = check_url(url, allow_plain_http=allow_http)
    if reason == "plain http is not allowed for this endpoint":
        return "plain http:// is not allowed for this app; use https://"
    return reason


def events_reason(events: list[str], app: WebhookAppSpec) -> str | None:
    """Why these subscriptions are refused: empty, malformed, unknown to the catalog, or
    reaching types the app does not offer to customers."""
    if not events:
        return "events must name at least one event type"
    if len(set(events)) != len(events):
        return "events lists a type twice"
    bad = [e for e in events if not _FILTER.fullmatch(e)]
    if bad:
        return (
            f"{bad[0]!r} is not an event type such as invoice.paid or a wildcard such as invoice.*"
        )
    catalog = [t.name for t in app.event_types]
    unknown = event_matching.unknown_subscriptions(events, catalog)
    if unknown:
        return f"{unknown[0]!r} matches no event type in the app's catalog"
    allowed = app.portal.event_types if app.portal is not None else None
    if allowed is None:
        return None
    for pattern in events:
        # A wildcard is allowed only when every catalog type it reaches is allowed;
        # without a catalog it must itself be on the list.
        reached = [t for t in catalog if event_matching.matches(pattern, t)] or [pattern]
        refused = [t for t in reached if not event_matching.subscribed(allowed, t)]
        if refused:
            return f"{pattern!r} reaches {refused[0]!r}, which this app does not offer"
    return None


# --- objects and patches ---------------------------------------------------------------------


def new_endpoint(
    namespace: str, name: str, app: str, asked: EndpointCreate, subject: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "appRef": {"name": app},
        "url": asked.url,
        "events": list(asked.events),
        "active": asked.active,
    }
    if asked.url.lower().startswith("http://"):
        spec["allowInsecureHttp"] = True
    if asked.description:
        spec["description"] = asked.description
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookEndpoint",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {names.MANAGED_BY_LABEL: names.PORTAL_MANAGER},
            "annotations": {
                names.CREATED_BY_ANNOTATION: subject,
                names.CHANGED_BY_ANNOTATION: subject,
            },
        },
        "spec": spec,
    }


def update_patch(
    obj: dict[str, Any], asked: EndpointUpdate, subject: str, enable_token: str
) -> tuple[dict[str, Any], list[str]]:
    """The merge patch for `asked`, and what it changes in words (for the audit Event)."""
    given = asked.model_fields_set
    spec: dict[str, Any] = {}
    changes: list[str] = []
    annotations: dict[str, Any] = {names.CHANGED_BY_ANNOTATION: subject}
    if "url" in given and asked.url is not None:
        spec["url"] = asked.url
        spec["allowInsecureHttp"] = True if asked.url.lower().startswith("http://") else None
        changes.append("url")
    if "events" in given and asked.events is not None:
        spec["events"] = list(asked.events)
        changes.append("events")
    if "description" in given:
        spec["description"] = asked.description or None
        changes.append("description")
    if "active" in given and asked.active is not None:
        spec["active"] = asked.active
        changes.append("resumed" if asked.active else "paused")
        if asked.active and auto_disabled(obj):
            annotations[names.ENABLE_ANNOTATION] = enable_token
            changes.append("re-enabled")
    return {"metadata": {"annotations": annotations}, "spec": spec}, changes
