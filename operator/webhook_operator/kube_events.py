"""The body of a core/v1 Event about one of our objects, written once for the operator's
Events and the portal's audit trail. Pure: the time and the reporting instance are
arguments."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

# The apiserver caps an Event's message at 1 KiB.
MAX_MESSAGE = 1024


def event_body(
    obj: dict[str, Any],
    type_: str,
    reason: str,
    message: str,
    *,
    component: str,
    instance: str,
    now: datetime,
) -> dict[str, Any]:
    """An Event about `obj` (a custom object as the apiserver serves it)."""
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {
            # Unique per Event, as client-go names them: <object>.<random>.
            "name": f"{meta.get('name', 'object')}.{secrets.token_hex(8)}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
