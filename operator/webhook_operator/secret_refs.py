"""Values the endpoint's requests take from Secrets (headersFrom, TLS material), read the
same way by the operator (which reports what is wrong on the endpoint's status) and the
delivery service (which refuses to send without them), so the two cannot disagree.

Messages name the Secret and the key, never a value: they end up in conditions, Events
and the delivery log."""

from __future__ import annotations

import base64
import binascii
from typing import Any

TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
# A user-provided signing Secret's previous value sits beside the current one, under the
# current key's name with this suffix ("secret.previous" for the default key).
PREVIOUS_SUFFIX = ".previous"


class MissingSecretValue(Exception):
    """A referenced Secret or key is absent; the message is meant for a person."""

    def __init__(self, message: str, *, secret_missing: bool) -> None:
        super().__init__(message)
        self.secret_missing = secret_missing


class InvalidSecretValue(Exception):
    """A referenced value cannot be used; the message never quotes it."""


def previous_key(key: str) -> str:
    return key + PREVIOUS_SUFFIX


def secret_bytes(secret: dict[str, Any] | None, name: str, key: str, what: str) -> bytes:
    """The decoded value of `key`, or MissingSecretValue saying which of the two is missing
    (`what` names the field, such as "tls.caSecretRef")."""
    if secret is None:
        raise MissingSecretValue(
            f"Secret {name} named in {what} does not exist in the endpoint's namespace",
            secret_missing=True,
        )
    data = secret.get("data") or {}
    raw = data.get(key)
    if raw is None:
        keys = ", ".join(sorted(data)) or "none"
        raise MissingSecretValue(
            f"Secret {name} named in {what} has no key {key!r} (keys: {keys})",
            secret_missing=False,
        )
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecretValue(f"Secret {name} key {key!r} is not valid base64") from None


def header_value(raw: bytes, name: str, key: str) -> str:
    """A header value as HTTP can carry it: text without line breaks or NUL, in Latin-1.
    Whitespace around it (a file's final newline) is dropped, as HTTP itself ignores it."""
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidSecretValue(f"Secret {name} key {key!r} is not UTF-8 text") from None
    if any(c in value for c in "\r\n\0"):
        raise InvalidSecretValue(
            f"Secret {name} key {key!r} holds a line break or NUL, which a header value cannot"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidSecretValue(
            f"Secret {name} key {key!r} holds characters an HTTP header cannot carry"
            " (only Latin-1 text)"
        ) from None
    if not value:
        raise InvalidSecretValue(f"Secret {name} key {key!r} is empty")
    return value
