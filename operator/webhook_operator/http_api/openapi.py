"""Routes and their OpenAPI document from one table.

Each server lists its operations once (method, path, handler, the pydantic models of the
request and the answer, the query parameters); `add_routes` registers them with aiohttp and
`document` writes the OpenAPI 3.1 document from the same list, so a route cannot exist
undocumented and a documented shape cannot differ from the one the code uses."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PATH_PARAM = re.compile(r"\{([a-zA-Z_]+)\}")


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    where: str = "query"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 401, 403)
    tag: str | None = None
    description: str | None = None
    # Answers that are not JSON (Prometheus text, a file download) say so here.
    content_type: str = "application/json"
    # Not for callers outside the project (the operator's results feed): documented all the same.
    internal: bool = False


class ErrorDetail(BaseModel):
    reason: str
    """One CamelCase word saying why, for example InvalidName."""
    message: str
    """What is wrong and how to fix it, for people."""


class Error(BaseModel):
    """Every error answer of every API of the project."""

    error: ErrorDetail


def add_routes(router: web.UrlDispatcher, operations: Sequence[Operation]) -> None:
    for op in operations:
        router.add_route(op.method, op.path, op.handler)


def _path_params(path: str, params: tuple[Param, ...]) -> list[dict[str, Any]]:
    declared = {p.name for p in params if p.where == "path"}
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(path)
        if name not in declared
    ]


def _param(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "required": p.required or p.where == "path",
        "description": p.description,
        "schema": p.schema,
    }


def _content(ref: dict[str, Any] | None, content_type: str) -> dict[str, Any]:
    if ref is None:
        return {content_type: {}} if content_type != "application/json" else {}
    return {content_type: {"schema": ref}}


def document(
    title: str, version: str, description: str, operations: Sequence[Operation]
) -> dict[str, Any]:
    wanted: dict[tuple[type[BaseModel], Any], None] = {(Error, "serialization"): None}
    for op in operations:
        if op.request is not None:
            wanted[(op.request, "validation")] = None
        if op.response is not None:
            wanted[(op.response, "serialization")] = None
    refs, defs = models_json_schema(list(wanted), ref_template="#/components/schemas/{model}")

    def ref(model: type[BaseModel] | None, mode: str) -> dict[str, Any] | None:
        return None if model is None else dict(refs[(model, mode)])  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.handler.__name__,
            "summary": op.summary,
            "parameters": _path_params(op.path, op.params) + [_param(p) for p in op.params],
            "responses": {
                str(op.status): {
                    "description": op.summary,
                    "content": _content(ref(op.response, "serialization"), op.content_type),
                },
                **{
                    str(code): {
                        "description": "Error",
                        "content": _content(ref(Error, "serialization"), "application/json"),
                    }
                    for code in op.errors
                },
            },
        }
        if op.description:
            entry["description"] = op.description
        if op.tag:
            entry["tags"] = [op.tag]
        if op.internal:
            entry["x-internal"] = True
        if op.request is not None:
            entry["requestBody"] = {
                "required": True,
                "content": _content(ref(op.request, "validation"), "application/json"),
            }
        if not entry["responses"][str(op.status)]["content"]:
            del entry["responses"][str(op.status)]["content"]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
