"""The Standard Webhooks signature scheme (https://www.standardwebhooks.com/).

Every delivery is signed so receivers can tell it came from us and was not altered. The
scheme is public so receivers can verify with any Standard Webhooks library; this module is
the one place the operator, the delivery service and `kubectl webhooks verify` share, so
signing and verifying cannot drift apart. It is pure: no clock is read unless `verify` is
not given `now`, and nothing is logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

# Canonical integer seconds only: `int()` would also take "+1", " 1", "01" or "1_000",
# which no sender produces and whose signed text would differ from what we recompute.
_TIMESTAMP = re.compile(r"0|[1-9][0-9]*")


class InvalidSecret(ValueError):
    """A signing secret that is not `whsec_` followed by enough base64-encoded bytes."""


class InvalidSignature(ValueError):
    """A delivery whose headers do not prove it was signed with one of the given keys."""


def generate_secret(nbytes: int = 32) -> str:
    """A new random signing secret in the `whsec_<base64>` form."""
    if nbytes < MIN_SECRET_BYTES:
        raise ValueError(
            f"a secret needs at least {MIN_SECRET_BYTES} random bytes, {nbytes} were asked for"
        )
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The raw HMAC key inside a `whsec_` secret; raises InvalidSecret explaining the flaw."""
    # Surrounding whitespace is what copying from a terminal or a YAML block adds; anything
    # inside the secret is a real mistake and must not be silently dropped.
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"the secret must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret(f"the part after {SECRET_PREFIX} is not valid base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise InvalidSecret(
            f"the secret must hold at least {MIN_SECRET_BYTES} random bytes, "
            f"this one has {len(key)}"
        )
    return key


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    # hmac.digest is the one-shot C path: several times cheaper than hmac.new(...).digest()
    # on the delivery hot path.
    return hmac.digest(key, signed, "sha256")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of a delivery under one key."""
    digest = _digest(key, msg_id, timestamp, body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per key, separated by spaces.

    During a secret rotation both the old and the new key are valid, so a receiver that
    still holds either one can verify the delivery.
    """
    if not keys:
        raise ValueError("at least one key is needed to sign a delivery")
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def webhook_headers(
    keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers a signed delivery carries."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(keys, msg_id, timestamp, body),
    }


def _as_keys(secret_or_keys: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    # A str or bytes is itself a Sequence, so the single-value cases must be taken first.
    if isinstance(secret_or_keys, str | bytes):
        secret_or_keys = [secret_or_keys]
    keys = [decode_secret(k) if isinstance(k, str) else k for k in secret_or_keys]
    if not keys:
        raise ValueError("at least one secret or key is needed to verify a delivery")
    return keys


def _header(headers: Mapping[str, str], name: str) -> str:
    # HTTP header names are case-insensitive, and frameworks disagree on how they spell them.
    for key, value in headers.items():
        if key.lower() == name:
            if not value:
                break
            return value
    raise InvalidSignature(f"the {name} header is missing")


def _check_timestamp(text: str, now: int, tolerance: int) -> int:
    if not _TIMESTAMP.fullmatch(text):
        raise InvalidSignature(
            f"the {TIMESTAMP_HEADER} header is not a whole number of seconds: {text!r}"
        )
    timestamp = int(text)
    # The window stops an intercepted delivery from being replayed later; it is symmetric
    # so a receiver whose clock runs behind ours still accepts fresh deliveries.
    if timestamp < now - tolerance:
        raise InvalidSignature(
            f"the timestamp is too old: {now - timestamp}s before now, "
            f"more than the {tolerance}s tolerance"
        )
    if timestamp > now + tolerance:
        raise InvalidSignature(
            f"the timestamp is too new: {timestamp - now}s after now, "
            f"more than the {tolerance}s tolerance"
        )
    return timestamp


def _offered_digests(header: str) -> list[bytes]:
    # Unknown versions and malformed entries are skipped rather than rejected: the scheme
    # lets senders add signature versions a receiver may not understand yet.
    digests = []
    for entry in header.split(" "):
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            digests.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return digests


def verify(
    secret_or_keys: str | bytes | Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check that a delivery was signed with one of the given secrets (or raw keys).

    Returns nothing on success; raises InvalidSignature saying what failed otherwise, and
    InvalidSecret if a given secret is malformed.
    """
    keys = _as_keys(secret_or_keys)
    msg_id = _header(headers, ID_HEADER)
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    offered = _offered_digests(_header(headers, SIGNATURE_HEADER))
    current = int(time.time()) if now is None else now
    timestamp = _check_timestamp(timestamp_text, current, tolerance)
    for key in keys:
        expected = _digest(key, msg_id, timestamp, body)
        # Constant-time comparison, so response timing does not leak how close a forged
        # signature came.
        if any(hmac.compare_digest(expected, digest) for digest in offered):
            return
    raise InvalidSignature(
        "no signature matched: the body or headers were changed, or it was signed "
        "with a different secret"
    )
