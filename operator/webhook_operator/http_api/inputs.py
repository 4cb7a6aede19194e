"""Reading and checking what a client sent: path names, query numbers, cursors and JSON
bodies, each refused with a 4xx and a reason before it reaches Kubernetes or a database."""

from __future__ import annotations

import asyncio
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from webhook_operator.http_api.errors import ApiError

M = TypeVar("M", bound=BaseModel)

# What Kubernetes allows as names: anything else cannot exist, so it is refused before it
# reaches the store (PostgreSQL refuses a NUL in text with an error, not an empty answer).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
DELIVERY_ID = re.compile(r"[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}")
PATH_NAMES = {
    "namespace": (DNS_LABEL, "a namespace name (a DNS label)"),
    "app": (DNS_SUBDOMAIN, "a WebhookApp name (a DNS subdomain)"),
    "endpoint": (DNS_SUBDOMAIN, "a WebhookEndpoint name (a DNS subdomain)"),
    "id": (DELIVERY_ID, "a delivery id such as dlv_01J…"),
}


def whole_number(raw: str, name: str, low: int, high: int, reason: str) -> int:
    # isdigit() alone would take "²", which int() then refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not (
        low <= int(raw) <= high
    ):
        raise ApiError(400, reason, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def limit(request: web.Request, default: int = 50, most: int = 500) -> int:
    return whole_number(request.query.get("limit", str(default)), "limit", 1, most, "BadLimit")


def path_name(request: web.Request, key: str) -> str:
    value = request.match_info[key]
    pattern, what = PATH_NAMES[key]
    if not pattern.fullmatch(value):
        raise ApiError(400, "InvalidName", f"{value!r} is not {what}")
    return value


def query_name(request: web.Request, key: str) -> str | None:
    value = request.query.get(key) or None
    if value is not None and not DNS_SUBDOMAIN.fullmatch(value):
        raise ApiError(400, "InvalidName", f"{key}={value!r} is not a Kubernetes object name")
    return value


def cursor(request: web.Request) -> str | None:
    value = request.query.get("cursor") or None
    if value is not None and not DELIVERY_ID.fullmatch(value):
        raise ApiError(400, "BadCursor", "cursor must be the `next` value of a previous page")
    return value


def json_body_type(request: web.Request) -> None:
    """JSON is the only body accepted; no Content-Type at all is taken to mean JSON."""
    if request.headers.get("Content-Type") is None:
        return
    mime = request.content_type
    charset = request.charset
    if not (mime == "application/json" or mime.endswith("+json")) or (
        charset is not None and charset.lower() not in ("utf-8", "utf8")
    ):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"send the body as Content-Type: application/json (UTF-8), not {mime!r}",
        )


async def read_body(request: web.Request, limit: int, within: float) -> bytes:
    """The whole body, however it is chunked: 413 past the limit, 408 when the client
    stops sending."""
    json_body_type(request)
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            413, "TooLarge", f"the body is {request.content_length} bytes; the limit is {limit}"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "TooLarge", f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "BodyTimeout", f"the body did not arrive within {within:g} s") from None
    return b"".join(chunks)


def parse_model(model: type[M], raw: bytes) -> M:
    """A request body as `model`: 400 when it is not JSON, 422 naming each field that is
    wrong when it is JSON of the wrong shape."""
    if not raw.strip():
        raise ApiError(400, "EmptyBody", "send a JSON object as the request body")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise ApiError(400, "InvalidJSON", "the body is not valid JSON") from None
        raise ApiError(422, "Invalid", describe(problems)) from None


def describe(problems: list[Any]) -> str:
    """Pydantic's errors as one line for people: `field: what is wrong; ...`."""
    parts = []
    for problem in problems[:10]:
        where = ".".join(str(p) for p in problem.get("loc", ())) or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts)
