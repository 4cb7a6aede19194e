"""The Secrets an endpoint's requests carry (headersFrom values, the TLS CA and client
certificate), checked as the delivery service will use them, so a missing Secret or key or
an unusable certificate shows on the endpoint (Ready=False with a reason) before a delivery
fails on it. Messages name Secrets and keys, never values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook_operator import conditions as cond
from webhook_operator.api.v1alpha1 import WebhookEndpointSpec
from webhook_operator.secret_refs import (
    InvalidSecretValue,
    MissingSecretValue,
    header_value,
    secret_bytes,
)
from webhook_operator.tls_context import InvalidTLSMaterial, client_context, material_from_secrets

SecretLookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    message: str


def referenced(spec: WebhookEndpointSpec) -> set[str]:
    names = {h.secret_key_ref.name for h in spec.headers_from or ()}
    if spec.tls is not None:
        if spec.tls.ca_secret_ref is not None:
            names.add(spec.tls.ca_secret_ref.name)
        if spec.tls.client_cert_secret_ref is not None:
            names.add(spec.tls.client_cert_secret_ref.name)
    return names


def _missing(exc: MissingSecretValue) -> Verdict:
    reason = cond.SECRET_NOT_FOUND if exc.secret_missing else cond.SECRET_KEY_MISSING
    return Verdict(False, reason, str(exc))


# Verdicts by what they depend on (the references and the Secrets' resourceVersions):
# endpoints are reconciled again for every delivery result, and building a TLS context
# each time would write a key file per reconcile.
_verdicts: dict[tuple[Any, ...], Verdict] = {}
_VERDICTS_KEPT = 10_000


def check(spec: WebhookEndpointSpec, secret: SecretLookup) -> Verdict:
    versions = tuple(
        (name, ((secret(name) or {}).get("metadata") or {}).get("resourceVersion"))
        for name in sorted(referenced(spec))
    )
    key = (
        tuple(
            (h.name, h.secret_key_ref.name, h.secret_key_ref.key) for h in spec.headers_from or ()
        ),
        spec.tls.model_dump_json() if spec.tls is not None else None,
        versions,
    )
    verdict = _verdicts.get(key)
    if verdict is None or any(version is None for _, version in versions):
        verdict = _check(spec, secret)
        if len(_verdicts) >= _VERDICTS_KEPT:
            _verdicts.clear()
        _verdicts[key] = verdict
    return verdict


def _check(spec: WebhookEndpointSpec, secret: SecretLookup) -> Verdict:
    for header in spec.headers_from or ():
        ref = header.secret_key_ref
        try:
            header_value(
                secret_bytes(secret(ref.name), ref.name, ref.key, "headersFrom"), ref.name, ref.key
            )
        except MissingSecretValue as exc:
            return _missing(exc)
        except InvalidSecretValue as exc:
            return Verdict(False, cond.SECRET_INVALID, f"header {header.name}: {exc}")
    tls = spec.tls
    if tls is not None:
        try:
            ca = tls.ca_secret_ref
            client = tls.client_cert_secret_ref
            client_context(
                material_from_secrets(
                    (ca.name, ca.key) if ca else None, client.name if client else None, secret
                )
            )
        except MissingSecretValue as exc:
            return _missing(exc)
        except (InvalidSecretValue, InvalidTLSMaterial) as exc:
            return Verdict(False, cond.INVALID_TLS_SECRET, str(exc))
    return Verdict(True, cond.SECRETS_FOUND, "headersFrom and tls Secrets are usable")
