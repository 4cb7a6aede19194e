"""The portal's view of WebhookApps and WebhookEndpoints, kept by watches, so listing a
thousand endpoints costs no apiserver round trip. Writes the portal makes are put in at
once (`remember`), so a customer reads back what they just changed even before the watch
delivers it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

Key = tuple[str, str]


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _version(obj: dict[str, Any]) -> int:
    raw = (obj.get("metadata") or {}).get("resourceVersion") or "0"
    return int(raw) if raw.isdigit() else 0


def endpoint_app(obj: dict[str, Any]) -> str:
    return str(((obj.get("spec") or {}).get("appRef") or {}).get("name") or "")


class Directory:
    def __init__(self) -> None:
        self.apps: dict[Key, dict[str, Any]] = {}
        self.endpoints: dict[Key, dict[str, Any]] = {}
        # What readers derive from an endpoint (its JSON view), kept until the endpoint
        # changes: a list of a thousand endpoints then costs a join, not a thousand builds.
        self.derived: dict[Key, Any] = {}
        self._by_app: dict[Key, set[str]] = defaultdict(set)

    # -- watch callbacks -------------------------------------------------------------------

    def on_app(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.apps.pop(_key(obj), None)
        else:
            self.apps[_key(obj)] = obj

    def on_endpoint(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if kind == "DELETED":
            self._drop(key)
            return
        old = self.endpoints.get(key)
        # A write of ours may already be here, newer than a watch event still in flight.
        if old is not None and _version(old) > _version(obj):
            return
        self._drop(key)
        self.endpoints[key] = obj
        self._by_app[(key[0], endpoint_app(obj))].add(key[1])

    def remember(self, obj: dict[str, Any]) -> None:
        """An endpoint as the apiserver answered a write of ours."""
        self.on_endpoint("MODIFIED", obj)

    def forget(self, namespace: str, name: str) -> None:
        self._drop((namespace, name))

    def _drop(self, key: Key) -> None:
        self.derived.pop(key, None)
        old = self.endpoints.pop(key, None)
        if old is not None:
            names = self._by_app.get((key[0], endpoint_app(old)))
            if names is not None:
                names.discard(key[1])

    # -- reads -----------------------------------------------------------------------------

    def app(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.apps.get((namespace, name))

    def endpoint(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.endpoints.get((namespace, name))

    def app_endpoints(self, namespace: str, app: str) -> list[dict[str, Any]]:
        names = sorted(self._by_app.get((namespace, app), ()))
        return [self.endpoints[(namespace, n)] for n in names if (namespace, n) in self.endpoints]

    def embed_origins(self) -> list[str]:
        """Every origin any app lets embed its portal page: the page that opens a ticket
        link holds no data and does not know the app yet, so it may be framed by them all."""
        found: set[str] = set()
        for obj in self.apps.values():
            origins = (((obj.get("spec") or {}).get("portal") or {}).get("embedOrigins")) or []
            found.update(o for o in origins if isinstance(o, str))
        return sorted(found)
