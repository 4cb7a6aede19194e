"""How the delivery service's registry and the operator's store read the Secrets an
endpoint names beyond its signing secret: header values, TLS material and the previous key
of a user's signing Secret (with and without an expiry), and which Secrets each side
fetches or watches."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from webhook_operator.controller.store import Store
from webhook_operator.delivery.registry import Registry, endpoint_config
from webhook_operator.secret_refs import InvalidSecretValue, MissingSecretValue
from webhook_operator.signing import decode_secret

NOW = 1_800_000_000.0
CURRENT = "whsec_" + base64.b64encode(b"c" * 32).decode()
PREVIOUS = "whsec_" + base64.b64encode(b"p" * 32).decode()


def endpoint(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "ep"},
        "spec": {"appRef": {"name": "app"}, "url": "https://127.0.0.1/h", "events": ["*"], **spec},
    }


def secret(
    name: str, data: dict[str, str], version: str = "1", **annotations: str
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "resourceVersion": version,
            "annotations": annotations,
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def registry_with(obj: dict[str, Any], *secrets: dict[str, Any]) -> Registry:
    registry = Registry()
    registry.on_endpoint("ADDED", obj)
    for s in secrets:
        registry.on_secret("ADDED", s)
    return registry


def test_previous_key_of_a_users_secret_signs_while_present() -> None:
    registry = registry_with(
        endpoint(secretRef={"name": "mine"}),
        secret("mine", {"secret": CURRENT, "secret.previous": PREVIOUS}),
    )
    config = registry.endpoints[("ns", "ep")]
    assert registry.signing_keys(config, NOW) == (decode_secret(CURRENT), decode_secret(PREVIOUS))
    registry.on_secret("MODIFIED", secret("mine", {"secret": CURRENT}, version="2"))
    assert registry.signing_keys(config, NOW) == (decode_secret(CURRENT),)


def test_previous_key_of_a_users_secret_honours_an_expiry_annotation() -> None:
    expiring = secret(
        "mine",
        {"secret": CURRENT, "secret.previous": PREVIOUS},
        **{"webhook-operator.dev/previous-expires-at": "2027-01-15T08:00:00Z"},
    )
    registry = registry_with(endpoint(secretRef={"name": "mine"}), expiring)
    config = registry.endpoints[("ns", "ep")]
    before, after = 1_800_000_000.0 - 86400 * 365, 1_800_000_000.0 + 86400 * 365
    assert len(registry.signing_keys(config, before)) == 2
    assert len(registry.signing_keys(config, after)) == 1


def test_a_generated_secrets_previous_key_without_expiry_is_not_used() -> None:
    registry = registry_with(
        endpoint(), secret("ep-signing-secret", {"secret": CURRENT, "previous": PREVIOUS})
    )
    config = registry.endpoints[("ns", "ep")]
    assert registry.signing_keys(config, NOW) == (decode_secret(CURRENT),)


def test_header_values_are_read_trimmed_and_follow_the_secret() -> None:
    obj = endpoint(
        headersFrom=[{"name": "X-Api-Key", "secretKeyRef": {"name": "auth", "key": "token"}}]
    )
    registry = registry_with(obj, secret("auth", {"token": "  abc\n"}))
    config = registry.endpoints[("ns", "ep")]
    assert registry.secret_headers(config) == {"X-Api-Key": "abc"}
    registry.on_secret("MODIFIED", secret("auth", {"token": "def"}, version="2"))
    assert registry.secret_headers(config) == {"X-Api-Key": "def"}
    registry.on_secret("MODIFIED", secret("auth", {"token": "a\u20acb"}, version="3"))
    with pytest.raises(InvalidSecretValue, match="only Latin-1 text") as caught:
        registry.secret_headers(config)
    assert "\u20ac" not in str(caught.value)
    registry.on_secret("DELETED", secret("auth", {}))
    with pytest.raises(MissingSecretValue, match="does not exist"):
        registry.secret_headers(config)


def test_every_referenced_secret_is_fetched_by_the_delivery_service() -> None:
    obj = endpoint(
        secretRef={"name": "signing"},
        headersFrom=[{"name": "A", "secretKeyRef": {"name": "auth", "key": "k"}}],
        tls={"caSecretRef": {"name": "ca"}, "clientCertSecretRef": {"name": "client"}},
    )
    config = endpoint_config(obj, None)
    assert config is not None
    assert config.tls_ca == ("ca", "ca.crt")
    assert registry_with(obj).user_secrets() == {
        ("ns", n) for n in ("signing", "auth", "ca", "client")
    }


def test_the_operator_watches_every_referenced_secret_and_forgets_dropped_ones() -> None:
    store = Store()
    obj = endpoint(
        headersFrom=[{"name": "A", "secretKeyRef": {"name": "auth", "key": "k"}}],
        tls={"clientCertSecretRef": {"name": "client"}},
    )
    store.put_endpoint(obj)
    assert store.endpoints_using_secret("ns", "auth") == [("ns", "ep")]
    assert store.secret_is_relevant("ns", "client", {})
    store.put_endpoint(endpoint())
    assert not store.secret_is_relevant("ns", "auth", {})
    assert not store.secret_is_relevant("ns", "client", {})
