"""Access tickets: signed, self-contained bearer tokens naming one app, a scope, a subject
and an expiry, checked in-process without asking the apiserver.

A ticket is a JWT signed with HMAC-SHA256 (PyJWT does the signing and the parsing; nothing
here is hand-rolled crypto). The header's `kid` names the key by a digest of it, so a
replica that holds an older key can tell "signed with a key I have not seen" (read the key
again) from "tampered with" (refuse). The clock is an argument: expiry is decided here,
not by the library's own call to time()."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

ISSUER = "webhook-operator-portal"
ALGORITHM = "HS256"
# Subjects name the platform's customer and user; they go into Events and annotations.
SUBJECT_PATTERN = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_CLAIMS = ("iss", "sub", "ns", "app", "scope", "iat", "exp", "jti")


class Scope(StrEnum):
    MANAGE = "manage"
    READ = "read"


@dataclass(frozen=True)
class Ticket:
    id: str
    namespace: str
    app: str
    scope: Scope
    subject: str
    issued_at: int
    expires_at: int

    @property
    def writes(self) -> bool:
        return self.scope is Scope.MANAGE


class InvalidTicket(Exception):
    """Why a ticket is refused; `reason` is the CamelCase word the API answers with."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownKey(InvalidTicket):
    """Signed with a key this process does not hold (yet, or any more)."""


def key_id(key: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(key).digest()[:9]).decode()


def encode(key: bytes, ticket: Ticket) -> str:
    claims = {
        "iss": ISSUER,
        "sub": ticket.subject,
        "ns": ticket.namespace,
        "app": ticket.app,
        "scope": ticket.scope.value,
        "iat": ticket.issued_at,
        "exp": ticket.expires_at,
        "jti": ticket.id,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": key_id(key)})


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidTicket("MalformedTicket", "the ticket is not a well-formed token") from None


def decode(keys: dict[str, bytes], token: str, now: float) -> Ticket:
    """The ticket, if `token` was signed with one of `keys` (by key id) and is unexpired."""
    if len(token) > 4096:
        raise InvalidTicket("MalformedTicket", "the ticket is too long to be one of ours")
    header = _header(token)
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        raise InvalidTicket("InvalidTicket", "the ticket was not issued by this portal")
    key = keys.get(kid)
    if key is None:
        raise UnknownKey(
            "InvalidTicket",
            "the ticket was signed with a key the portal does not hold; the key was rotated,"
            " so ask for a new ticket",
        )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "require": list(_CLAIMS)},
        )
    except jwt.InvalidSignatureError:
        raise InvalidTicket("InvalidTicket", "the ticket's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise InvalidTicket("InvalidTicket", f"the ticket is not valid: {exc}") from None
    return unexpired(_from_claims(claims), now)


def unexpired(ticket: Ticket, now: float) -> Ticket:
    if now >= ticket.expires_at:
        raise InvalidTicket(
            "ExpiredTicket", "the ticket has expired; ask the platform for a new one"
        )
    return ticket


def _from_claims(claims: dict[str, Any]) -> Ticket:
    try:
        ticket = Ticket(
            id=str(claims["jti"]),
            namespace=str(claims["ns"]),
            app=str(claims["app"]),
            scope=Scope(claims["scope"]),
            subject=str(claims["sub"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
        )
    except (KeyError, ValueError, TypeError):
        raise InvalidTicket("InvalidTicket", "the ticket's claims are incomplete") from None
    return ticket
