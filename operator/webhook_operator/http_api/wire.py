"""The base of every request and answer model: camelCase on the wire, unknown request
fields refused, and one way to answer with a model."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        serialize_by_alias=True,
    )


def respond(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
        headers=headers,
    )
