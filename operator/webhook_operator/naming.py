"""Names of the objects the operator derives, which the delivery service must find too."""

from __future__ import annotations

import hashlib

SIGNING_SECRET_SUFFIX = "-signing-secret"


def generated_secret_name(endpoint: str) -> str:
    """`<endpoint>-signing-secret`, shortened with a hash when over the 253-character limit."""
    name = endpoint + SIGNING_SECRET_SUFFIX
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:8]
    return f"{endpoint[: 253 - len(SIGNING_SECRET_SUFFIX) - 9]}-{digest}{SIGNING_SECRET_SUFFIX}"
