"""One way to answer with a model. The models' base, `Wire`, lives in
webhook_operator.api.wire_base (pure pydantic, so clients can share the shapes); it is
re-exported here for the servers."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from webhook_operator.api.wire_base import Wire

__all__ = ["Wire", "respond"]


def respond(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )
