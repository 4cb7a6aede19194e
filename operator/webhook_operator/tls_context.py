"""TLS client contexts for endpoints with their own trust (a private CA) or a client
certificate (mutual TLS), built from PEM text held in Secrets.

Python's ssl module loads a certificate chain only from files, so the PEM is written to a
private temporary file (mode 0600) that is deleted as soon as it is loaded. The operator
builds the same context to check a Secret, so what it reports as valid is what the
delivery service can use."""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook_operator.secret_refs import TLS_CERT_KEY, TLS_KEY_KEY, secret_bytes


class InvalidTLSMaterial(Exception):
    """The message names the Secret and what is wrong, never the key material."""


@dataclass(frozen=True)
class TLSMaterial:
    """Where each piece comes from (for messages) and its PEM bytes."""

    ca_pem: bytes | None = None
    ca_source: str = ""
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    client_source: str = ""

    def fingerprint(self) -> str:
        """Equal for equal material: connections are pooled per fingerprint, so two
        endpoints with different client certificates never share a connection."""
        digest = hashlib.sha256()
        for part in (self.ca_pem, self.cert_pem, self.key_pem):
            digest.update(b"-" if part is None else len(part).to_bytes(8, "big") + part)
        return digest.hexdigest()


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)


def client_context(material: TLSMaterial) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if material.ca_pem is not None:
        # Only this CA: a receiver on a private CA is pinned to it.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cadata=material.ca_pem.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            why = _reason(exc) if isinstance(exc, ssl.SSLError) else "not PEM text"
            raise InvalidTLSMaterial(
                f"{material.ca_source} does not hold a PEM CA certificate ({why})"
            ) from None
    if material.cert_pem is not None or material.key_pem is not None:
        _load_chain(context, material)
    return context


def _load_chain(context: ssl.SSLContext, material: TLSMaterial) -> None:
    fd, path = tempfile.mkstemp(prefix="client-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write((material.cert_pem or b"") + b"\n" + (material.key_pem or b""))
        # An encrypted key must fail, not make OpenSSL prompt on a terminal for a password.
        context.load_cert_chain(path, password=lambda: b"")
    except ssl.SSLError as exc:
        raise InvalidTLSMaterial(
            f"{material.client_source}: tls.crt and tls.key are not a PEM certificate and its"
            f" unencrypted private key ({_reason(exc)})"
        ) from None
    finally:
        os.unlink(path)


def material_from_secrets(
    ca: tuple[str, str] | None,
    client: str | None,
    secret: Callable[[str], dict[str, Any] | None],
) -> TLSMaterial:
    """The PEM an endpoint's tls names: `ca` is (Secret, key), `client` a kubernetes.io/tls
    Secret. Raises MissingSecretValue or InvalidSecretValue (secret_refs)."""
    ca_pem = cert = key = None
    ca_source = client_source = ""
    if ca is not None:
        name, ca_key = ca
        ca_pem = secret_bytes(secret(name), name, ca_key, "tls.caSecretRef")
        ca_source = f"Secret {name} key {ca_key!r}"
    if client is not None:
        cert = secret_bytes(secret(client), client, TLS_CERT_KEY, "tls.clientCertSecretRef")
        key = secret_bytes(secret(client), client, TLS_KEY_KEY, "tls.clientCertSecretRef")
        client_source = f"Secret {client}"
    return TLSMaterial(ca_pem, ca_source, cert, key, client_source)
