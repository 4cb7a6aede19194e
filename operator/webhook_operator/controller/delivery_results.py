"""Delivery results from the data plane into endpoint status.

The delivery service keeps, per endpoint, the outcome of its latest attempts. The operator
polls `GET /internal/v1/endpoint-stats?since=<cursor>`, which answers with only the
endpoints whose delivery state changed since the cursor:

    {"cursor": "...", "endpoints": [{"namespace": "...", "name": "...",
      "lastDeliveryTime": "...", "lastSuccessTime": "...", "lastFailureTime": "...",
      "lastHttpStatus": 503, "lastError": "...", "consecutiveFailures": 2,
      "disabledReason": null, "disabledAt": null,
      "deliveries": {"delivered": 10, "failed": 2, ...}, "window": "24h"}]}

Each changed endpoint is re-reconciled; its status write goes through the status writer,
so a busy endpoint still costs at most one write per interval."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from webhook_operator.controller.context import Context
from webhook_operator.health import DeliveryState
from webhook_operator.timestamps import parse_ts

log = logging.getLogger(__name__)
STATS_PATH = "/internal/v1/endpoint-stats"
FULL_RESYNC_SECONDS = 300.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10.0)


def parse_record(record: dict[str, Any]) -> DeliveryState:
    counts = record.get("deliveries") or {}
    status = record.get("lastHttpStatus")
    error = record.get("lastError")
    return DeliveryState(
        last_delivery_time=parse_ts(record.get("lastDeliveryTime")),
        last_success_time=parse_ts(record.get("lastSuccessTime")),
        last_failure_time=parse_ts(record.get("lastFailureTime")),
        last_http_status=status if isinstance(status, int) else None,
        last_error=str(error)[:1024] if error else None,
        consecutive_failures=int(record.get("consecutiveFailures") or 0),
        disabled_reason=record.get("disabledReason") or None,
        disabled_at=parse_ts(record.get("disabledAt")),
        counts={k: int(v) for k, v in counts.items() if isinstance(v, int)},
        window=record.get("window"),
    )


def apply_records(ctx: Context, records: list[dict[str, Any]]) -> int:
    """Take delivery results in; returns how many endpoints changed."""
    changed = 0
    for record in records:
        namespace, name = record.get("namespace"), record.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            continue
        state = parse_record(record)
        if ctx.delivery.get((namespace, name)) == state:
            continue
        ctx.delivery[(namespace, name)] = state
        changed += 1
        ctx.queue.add(("endpoint", namespace, name))
    return changed


async def bearer_headers(ctx: Context) -> dict[str, str]:
    """The operator's own credentials, which the delivery service checks with a TokenReview."""
    token = await ctx.kube.api.token()
    return {"Authorization": f"Bearer {token}"} if token else {}


async def poll(ctx: Context, base_url: str, interval: float = 1.0) -> None:
    """Poll the delivery service until cancelled; failures back off and never stop it."""
    cursor = ""
    backoff = interval
    last_full = asyncio.get_running_loop().time()
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        while True:
            if asyncio.get_running_loop().time() - last_full > FULL_RESYNC_SECONDS:
                # A cursor from a store that was since replaced would hide every change.
                cursor, last_full = "", asyncio.get_running_loop().time()
            try:
                async with http.get(
                    base_url.rstrip("/") + STATS_PATH,
                    params={"since": cursor},
                    headers=await bearer_headers(ctx),
                ) as response:
                    response.raise_for_status()
                    body = await response.json()
                cursor = str(body.get("cursor", cursor))
                apply_records(ctx, list(body.get("endpoints") or []))
                backoff = interval
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("polling delivery results from %s failed: %s", base_url, exc)
                backoff = min(backoff * 2, 30.0)
            await asyncio.sleep(backoff)
