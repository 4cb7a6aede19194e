"""Pure parsing of what people type or paste: times, durations, headers, statuses, JSON.

No I/O and no clock (callers pass `now`), so every rule here is unit-tested directly and
a mistake is reported as a ValueError whose message the command prints unchanged."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from webhook_operator.durations import parse_duration
from webhook_operator.store.base import DeliveryStatus

# Go durations stop at hours; "since 3d" is what people ask for when looking back, so a
# leading day count is allowed on top of the CRD notation.
_DAYS = re.compile(r"([0-9]+)d(.*)")
# The first line of a raw HTTP request as tools print it ("POST /hook HTTP/1.1").
_REQUEST_LINE = re.compile(r"[A-Z]+ \S+ HTTP/[0-9.]+")
# RFC 9110 token characters: what a header name may contain.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# What the portal accepts as a ticket's subject (TicketRequest.subject).
MAX_SUBJECT = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

SINCE_HELP = (
    "an RFC 3339 time such as 2026-11-25T10:00:00Z, or a duration back from now: 30m, 2h, 3d"
)


def parse_relative(text: str) -> timedelta:
    """A duration such as 90s, 30m, 2h, 1h30m, 3d or 1d12h."""
    match = _DAYS.fullmatch(text)
    if match:
        rest = match.group(2)
        return timedelta(days=int(match.group(1))) + (
            parse_duration(rest) if rest else timedelta(0)
        )
    return parse_duration(text)


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: an absolute RFC 3339 time (a bare date means its midnight UTC), or a
    relative duration meaning that long before `now`."""
    value = text.strip()
    if not value:
        raise ValueError(f"--since is empty: give {SINCE_HELP}")
    try:
        return now - parse_relative(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r} is neither: give {SINCE_HELP}") from None
    # A time without an offset is taken as UTC, as the service does, not as local time:
    # the same command then means the same instant on every machine.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def rfc3339(value: datetime) -> str:
    """UTC with milliseconds and `Z`, the form the service writes."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_tolerance(text: str) -> int:
    """`--tolerance`: whole seconds ("300") or a duration ("10m"), never negative."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        seconds = parse_relative(value).total_seconds()
    except ValueError:
        raise ValueError(
            f"--tolerance {text!r} is not a number of seconds or a duration such as 10m"
        ) from None
    return int(seconds)


def parse_header_line(line: str) -> tuple[str, str]:
    """One `Name: value` header; the name lower-cased, as HTTP treats it."""
    name, sep, value = line.partition(":")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"{line.strip()!r} is not a header: write it as 'webhook-id: msg_...'")
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid header name")
    return name.lower(), value.strip()


def parse_headers_text(text: str) -> dict[str, str]:
    """Headers pasted into a file: a JSON object, or `Name: value` lines as printed by
    curl -v, a proxy log or a request dump (a leading request line is skipped, `> `/`< `
    prefixes are dropped, the first blank line after the headers ends them)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            loaded = json.loads(stripped)
        except ValueError as exc:
            raise ValueError(f"the headers file looks like JSON but is not valid: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError("a JSON headers file must hold an object of header names to values")
        return {str(k).lower(): str(v) for k, v in loaded.items()}
    headers: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line[:2] in ("> ", "< ") or line in (">", "<"):
            line = line[2:]
        if not line.strip():
            if headers:
                break
            continue
        if not headers and _REQUEST_LINE.fullmatch(line.strip()):
            continue
        name, value = parse_header_line(line)
        headers[name] = value
    if not headers:
        raise ValueError("the headers file holds no headers")
    return headers


def parse_headers(lines: Iterable[str]) -> dict[str, str]:
    """Repeated `--header 'Name: value'` flags; a later one wins, as in a request."""
    return dict(parse_header_line(line) for line in lines)


def parse_statuses(values: Iterable[str]) -> list[str]:
    """`--status` given repeatedly and/or comma-separated, checked before any request so
    a typo is caught with the list of valid values."""
    found: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            try:
                status = DeliveryStatus(name)
            except ValueError:
                allowed = ", ".join(s.value for s in DeliveryStatus)
                raise ValueError(f"unknown status {part.strip()!r} (one of {allowed})") from None
            if status.value not in found:
                found.append(status.value)
    return found


def parse_json_data(text: str, source: str) -> Any:
    """The event's `data` from --data or --data-file, with where the mistake is."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None


def age(timestamp: str | None, now: datetime) -> str:
    """How long ago, the way `kubectl get` prints AGE (45s, 12m, 3h5m, 4d)."""
    if not timestamp:
        return ""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 8:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days, hours = divmod(hours, 24)
    if days < 8:
        return f"{days}d{hours}h" if hours else f"{days}d"
    return f"{days}d"


def parse_ttl(text: str) -> str:
    """A ticket lifetime as the portal reads it (15m, 1h, 90s): checked here so a typo is a
    usage error at once; the portal still decides the cap."""
    try:
        if parse_duration(text.strip()) <= timedelta(0):
            raise ValueError
    except ValueError:
        raise ValueError(f"--ttl {text!r} is not a duration such as 15m, 90s or 1h") from None
    return text.strip()


def check_subject(text: str) -> str:
    if not text or len(text) > MAX_SUBJECT or _CONTROL.search(text):
        raise ValueError(
            f"--subject must be 1 to {MAX_SUBJECT} characters without control characters"
        )
    return text


def token_subject(token: str) -> str | None:
    """The `sub` claim of a JWT-shaped token (ServiceAccount tokens are), read without
    verifying the signature: only a label for who asked, never trusted as identity. None
    for tokens of any other shape or a subject the portal would refuse."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(subject, str):
        return None
    try:
        return check_subject(subject)
    except ValueError:
        return None
