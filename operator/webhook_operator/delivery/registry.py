"""The delivery service's read-only view of configuration: apps (event catalogs with
compiled schemas), endpoints (spec merged with their app's endpointDefaults) and signing
keys (current, plus previous during a rotation's grace period).

It is fed by informers and tells a listener what changed, so the service can cancel,
hold, release or re-throttle deliveries without polling Kubernetes."""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from webhook_operator import rotation
from webhook_operator.api.names import ENABLE_ANNOTATION
from webhook_operator.api.v1alpha1 import DeliverySettings, WebhookAppSpec, WebhookEndpointSpec
from webhook_operator.delivery.http1 import TLSChoice
from webhook_operator.durations import parse_duration
from webhook_operator.event_filter import Filter, compile_filter
from webhook_operator.event_matching import subscribed
from webhook_operator.naming import generated_secret_name
from webhook_operator.retry_policy import RetryPolicy
from webhook_operator.secret_refs import header_value, previous_key, secret_bytes
from webhook_operator.signing import InvalidSecret, decode_secret
from webhook_operator.timestamps import parse_ts
from webhook_operator.tls_context import client_context, material_from_secrets

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_HOLD_FOR = 72 * 3600.0
NsName = tuple[str, str]


@dataclass(frozen=True)
class AppConfig:
    namespace: str
    name: str
    # Declared types -> compiled validator of their data (None: no schema). Empty: no catalog.
    catalog: dict[str, Validator | None]


@dataclass(frozen=True)
class EndpointConfig:
    namespace: str
    name: str
    app: str
    url: str
    allow_insecure_http: bool
    events: tuple[str, ...]
    active: bool
    headers: tuple[tuple[str, str], ...]
    retry: RetryPolicy
    timeout: float
    rate: float | None
    burst: int | None
    max_concurrency: int
    secret_name: str
    secret_key: str
    generated_secret: bool
    enable_token: str | None
    # Seconds a delivery may stay held (paused or disabled endpoint); 0: forever.
    hold_for: float = DEFAULT_HOLD_FOR
    # spec.filter compiled (once per source); None: every subscribed event passes.
    filter: Filter | None = None
    # (header, Secret, key) for each headersFrom entry.
    headers_from: tuple[tuple[str, str, str], ...] = ()
    # (Secret, key) of the CA to trust, and the kubernetes.io/tls Secret to present.
    tls_ca: tuple[str, str] | None = None
    tls_client: str | None = None

    def referenced_secrets(self) -> set[str]:
        """Secrets of the user's that this endpoint reads (generated ones are watched)."""
        names = {secret for _, secret, _ in self.headers_from}
        if self.tls_ca is not None:
            names.add(self.tls_ca[0])
        if self.tls_client is not None:
            names.add(self.tls_client)
        if not self.generated_secret:
            names.add(self.secret_name)
        return names


class Listener(Protocol):
    def endpoint_changed(self, old: EndpointConfig | None, new: EndpointConfig | None) -> None: ...


def _compile(schema: dict[str, Any] | None) -> Validator | None:
    if schema is None:
        return None
    # jsonschema (about 3 MB resident) is loaded with the first schema a catalog declares.
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except Exception:
        return None  # the operator reports an invalid schema on the app; accept the data
    validator: Validator = cls(schema)
    return validator


def app_config(obj: dict[str, Any]) -> AppConfig | None:
    meta = obj["metadata"]
    try:
        spec = WebhookAppSpec.model_validate(obj.get("spec") or {})
    except ValidationError:
        return None
    catalog = {t.name: _compile(t.schema_) for t in spec.event_types}
    return AppConfig(namespace=meta["namespace"], name=meta["name"], catalog=catalog)


def _pick(own: Any, inherited: DeliverySettings | None, name: str) -> Any:
    value = getattr(own, name)
    if value is None and inherited is not None:
        value = getattr(inherited, name)
    return value


def hold_for_seconds(text: str | None) -> float:
    """spec.holdFor in seconds: "0" (which the CRD allows beside durations) and "0s" hold
    forever, 0.0; unset is the default."""
    if text is None:
        return DEFAULT_HOLD_FOR
    if text == "0":
        return 0.0
    return parse_duration(text).total_seconds()


def endpoint_config(obj: dict[str, Any], app: dict[str, Any] | None) -> EndpointConfig | None:
    meta = obj["metadata"]
    try:
        spec = WebhookEndpointSpec.model_validate(obj.get("spec") or {})
    except ValidationError:
        return None
    defaults = None
    if app is not None:
        try:
            defaults = WebhookAppSpec.model_validate(app.get("spec") or {}).endpoint_defaults
        except ValidationError:
            defaults = None
    retry = _pick(spec, defaults, "retry")
    schedule = tuple(parse_duration(d).total_seconds() for d in retry.schedule) if retry else None
    timeout = _pick(spec, defaults, "timeout")
    rate = _pick(spec, defaults, "rate_limit")
    headers = _pick(spec, defaults, "headers") or {}
    max_conc = _pick(spec, defaults, "max_concurrency")
    hold_for = _pick(spec, defaults, "hold_for")
    ref = spec.secret_ref
    tls = spec.tls
    return EndpointConfig(
        namespace=meta["namespace"],
        name=meta["name"],
        app=spec.app_ref.name,
        url=spec.url,
        allow_insecure_http=spec.allow_insecure_http,
        events=tuple(spec.events),
        active=spec.active,
        headers=tuple(sorted(headers.items())),
        retry=RetryPolicy(schedule=schedule) if schedule is not None else RetryPolicy(),
        timeout=parse_duration(timeout).total_seconds() if timeout else DEFAULT_TIMEOUT,
        rate=float(rate.per_second) if rate else None,
        burst=(rate.burst or rate.per_second) if rate else None,
        max_concurrency=max_conc or DEFAULT_MAX_CONCURRENCY,
        secret_name=ref.name if ref else generated_secret_name(meta["name"]),
        secret_key=ref.key if ref else rotation.CURRENT_KEY,
        generated_secret=ref is None,
        enable_token=(meta.get("annotations") or {}).get(ENABLE_ANNOTATION),
        hold_for=hold_for_seconds(hold_for),
        filter=compile_filter(spec.filter) if spec.filter is not None else None,
        headers_from=tuple(
            (h.name, h.secret_key_ref.name, h.secret_key_ref.key) for h in spec.headers_from or ()
        ),
        tls_ca=(tls.ca_secret_ref.name, tls.ca_secret_ref.key)
        if tls and tls.ca_secret_ref
        else None,
        tls_client=tls.client_cert_secret_ref.name if tls and tls.client_cert_secret_ref else None,
    )


@dataclass
class Registry:
    listener: Listener | None = None
    clock: Callable[[], float] | None = None
    _apps_raw: dict[NsName, dict[str, Any]] = field(default_factory=dict)
    _endpoints_raw: dict[NsName, dict[str, Any]] = field(default_factory=dict)
    apps: dict[NsName, AppConfig] = field(default_factory=dict)
    endpoints: dict[NsName, EndpointConfig] = field(default_factory=dict)
    _by_app: dict[NsName, set[str]] = field(default_factory=lambda: defaultdict(set))
    _secrets: dict[NsName, dict[str, Any]] = field(default_factory=dict)
    _key_cache: dict[tuple[NsName, str, str], tuple[bytes, ...]] = field(default_factory=dict)
    # Keyed by the Secrets' names, keys and resourceVersions: a Secret read again unchanged
    # (user Secrets are re-read every few seconds) costs nothing.
    _header_cache: dict[tuple[Any, ...], dict[str, str]] = field(default_factory=dict)
    _tls_cache: dict[tuple[Any, ...], TLSChoice] = field(default_factory=dict)

    # -- informer callbacks ---------------------------------------------------------------

    def on_app(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self._apps_raw.pop(key, None)
            self.apps.pop(key, None)
        else:
            self._apps_raw[key] = obj
            config = app_config(obj)
            if config is None:
                self.apps.pop(key, None)
            else:
                self.apps[key] = config
        # endpointDefaults may have changed for every endpoint of the app
        for name in list(self._by_app.get(key, ())):
            raw = self._endpoints_raw.get((key[0], name))
            if raw is not None:
                self._set_endpoint((key[0], name), raw)

    def on_endpoint(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self._endpoints_raw.pop(key, None)
            old = self.endpoints.pop(key, None)
            if old is not None:
                self._by_app[(old.namespace, old.app)].discard(old.name)
            if self.listener is not None:
                self.listener.endpoint_changed(old, None)
            return
        self._endpoints_raw[key] = obj
        self._set_endpoint(key, obj)

    def _set_endpoint(self, key: NsName, obj: dict[str, Any]) -> None:
        app_name = ((obj.get("spec") or {}).get("appRef") or {}).get("name")
        app_raw = self._apps_raw.get((key[0], app_name)) if app_name else None
        new = endpoint_config(obj, app_raw)
        old = self.endpoints.get(key)
        if old is not None:
            self._by_app[(old.namespace, old.app)].discard(old.name)
        if app_name:
            self._by_app[(key[0], app_name)].add(key[1])
        if new is None:
            self.endpoints.pop(key, None)
        else:
            self.endpoints[key] = new
        if old != new and self.listener is not None:
            self.listener.endpoint_changed(old, new)

    def on_secret(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self._secrets.pop(key, None)
        else:
            self._secrets[key] = obj
        for cache_key in [k for k in self._key_cache if k[0] == key]:
            del self._key_cache[cache_key]

    # -- queries ---------------------------------------------------------------------------

    def subscribers(self, namespace: str, app: str, event_type: str) -> list[EndpointConfig]:
        found = []
        for name in sorted(self._by_app.get((namespace, app), ())):
            config = self.endpoints.get((namespace, name))
            if config is not None and config.app == app and subscribed(config.events, event_type):
                found.append(config)
        return found

    def signing_keys(self, config: EndpointConfig, now: float) -> tuple[bytes, ...]:
        """The keys to sign with now: current, plus previous until it expires."""
        secret = self._secrets.get((config.namespace, config.secret_name))
        if secret is None:
            return ()
        version = (secret.get("metadata") or {}).get("resourceVersion", "")
        cache_key = ((config.namespace, config.secret_name), config.secret_key, version)
        keys = self._key_cache.get(cache_key)
        if keys is None:
            keys = self._decode_keys(secret, config)
            self._key_cache[cache_key] = keys
        if len(keys) > 1:
            expires = parse_ts(
                ((secret.get("metadata") or {}).get("annotations") or {}).get(
                    rotation.PREVIOUS_EXPIRES_AT
                )
            )
            # A generated previous key always has an expiry; a user's is used for as long
            # as it is in the Secret, unless the user set one too.
            if expires is None and config.generated_secret:
                return keys[:1]
            if expires is not None and expires.timestamp() <= now:
                return keys[:1]
        return keys

    def _decode_keys(self, secret: dict[str, Any], config: EndpointConfig) -> tuple[bytes, ...]:
        data = secret.get("data") or {}
        names = [config.secret_key]
        if config.generated_secret:
            names.append(rotation.PREVIOUS_KEY)
        else:
            names.append(previous_key(config.secret_key))
        keys = []
        for name in names:
            raw = data.get(name)
            if not raw:
                continue
            try:
                keys.append(decode_secret(base64.b64decode(raw).decode()))
            except (InvalidSecret, ValueError, UnicodeDecodeError):
                log.warning(
                    "secret %s key %s is not a valid signing secret", config.secret_name, name
                )
        return tuple(keys)

    def user_secrets(self) -> set[NsName]:
        """Secrets named by secretRef, headersFrom and tls: fetched by the service
        (generated ones are watched)."""
        return {
            (c.namespace, name) for c in self.endpoints.values() for name in c.referenced_secrets()
        }

    def _secret_version(self, namespace: str, name: str) -> str | None:
        secret = self._secrets.get((namespace, name))
        if secret is None:
            return None
        return str((secret.get("metadata") or {}).get("resourceVersion", ""))

    def secret_headers(self, config: EndpointConfig) -> dict[str, str]:
        """headersFrom's values. Raises MissingSecretValue or InvalidSecretValue, whose
        messages never hold a value."""
        if not config.headers_from:
            return {}
        ns = config.namespace
        cache_key = tuple(
            (header, secret, key, self._secret_version(ns, secret))
            for header, secret, key in config.headers_from
        )
        found = self._header_cache.get(cache_key)
        if found is None:
            found = {}
            for header, secret, key in config.headers_from:
                raw = secret_bytes(self._secrets.get((ns, secret)), secret, key, "headersFrom")
                found[header] = header_value(raw, secret, key)
            if len(self._header_cache) > 10_000:
                self._header_cache.clear()
            self._header_cache[cache_key] = found
        return found

    def tls(self, config: EndpointConfig) -> TLSChoice | None:
        """The endpoint's own TLS context, None for the default one. Raises
        MissingSecretValue, InvalidSecretValue or InvalidTLSMaterial."""
        if config.tls_ca is None and config.tls_client is None:
            return None
        ns = config.namespace
        cache_key = (
            ns,
            config.tls_ca,
            config.tls_ca and self._secret_version(ns, config.tls_ca[0]),
            config.tls_client,
            config.tls_client and self._secret_version(ns, config.tls_client),
        )
        choice = self._tls_cache.get(cache_key)
        if choice is None:
            material = material_from_secrets(
                config.tls_ca, config.tls_client, lambda name: self._secrets.get((ns, name))
            )
            choice = TLSChoice(client_context(material), material.fingerprint())
            if len(self._tls_cache) > 1000:
                self._tls_cache.clear()
            self._tls_cache[cache_key] = choice
        return choice
