"""RFC 3339 timestamps as Kubernetes writes them (second precision, `Z`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def format_ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(value: Any) -> datetime | None:
    """A timestamp from the API or the data plane; None for anything unreadable."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
