"""Generate the CustomResourceDefinitions from the pydantic models of the API.

The models in `webhook_operator.api.v1alpha1` are the source; `crds/*.yaml` are their
output (`make crds`), and a unit test fails when the committed files are stale. Pydantic
emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema, so this module
inlines references, collapses `X | None` into `X` (absent fields are simply omitted), and
drops the keys Kubernetes refuses (`title`, `$defs`, boolean `additionalProperties`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from webhook_operator.api import v1alpha1 as api

_DROPPED_KEYS = {"title", "$defs"}


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    singular: str
    short_names: list[str]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    printer_columns: list[dict[str, Any]]
    categories: list[str] = field(default_factory=lambda: ["webhooks", "all-webhooks"])


def _ready_column() -> dict[str, Any]:
    return {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the resource is reconciled and usable.",
    }


def _age_column() -> dict[str, Any]:
    return {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind="WebhookApp",
        plural="webhookapps",
        singular="webhookapp",
        short_names=["wha", "whapp"],
        spec=api.WebhookAppSpec,
        status=api.WebhookAppStatus,
        description=(
            "A WebhookApp is a source of events: producers emit events to it, and the "
            "WebhookEndpoints that refer to it receive them. It holds the event catalog "
            "and delivery defaults for its endpoints."
        ),
        printer_columns=[
            {
                "name": "Endpoints",
                "type": "integer",
                "jsonPath": ".status.endpoints",
                "description": "Endpoints referring to this app.",
            },
            {
                "name": "Healthy",
                "type": "integer",
                "jsonPath": ".status.healthyEndpoints",
                "description": "Endpoints whose last delivery succeeded.",
            },
            {
                "name": "Failing",
                "type": "integer",
                "jsonPath": ".status.failingEndpoints",
                "description": "Endpoints whose last attempt failed and are retrying.",
            },
            {
                "name": "Last Delivery",
                "type": "date",
                "jsonPath": ".status.lastDeliveryTime",
                "description": "Last delivery attempt across the app's endpoints.",
            },
            _ready_column(),
            _age_column(),
        ],
    ),
    KindInfo(
        kind="WebhookEndpoint",
        plural="webhookendpoints",
        singular="webhookendpoint",
        short_names=["whe", "whep"],
        spec=api.WebhookEndpointSpec,
        status=api.WebhookEndpointStatus,
        description=(
            "A WebhookEndpoint is a URL that receives the events of one WebhookApp it "
            "subscribes to, signed with the Standard Webhooks scheme, retried on a "
            "schedule, with its health in status."
        ),
        printer_columns=[
            {
                "name": "App",
                "type": "string",
                "jsonPath": ".spec.appRef.name",
                "description": "The WebhookApp this endpoint receives events from.",
            },
            {
                "name": "URL",
                "type": "string",
                "jsonPath": ".spec.url",
                "description": "Where deliveries are sent.",
            },
            {
                "name": "Events",
                "type": "string",
                "jsonPath": ".spec.events",
                "description": "Subscribed event types.",
            },
            {
                "name": "Health",
                "type": "string",
                "jsonPath": ".status.health",
                "description": "Pending, Healthy, Failing or Disabled.",
            },
            {
                "name": "Last Delivery",
                "type": "date",
                "jsonPath": ".status.lastDeliveryTime",
                "description": "When the last delivery attempt ended.",
            },
            {
                "name": "Last Success",
                "type": "date",
                "jsonPath": ".status.lastSuccessTime",
                "description": "When the last delivery succeeded.",
            },
            {**_ready_column(), "priority": 1},
            _age_column(),
        ],
    ),
)


def _collapse_optional(node: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, {"type": "null"}], ...}` becomes X merged with the outer keys."""
    variants = node.get("anyOf")
    if not variants:
        return node
    non_null = [v for v in variants if v != {"type": "null"}]
    if len(non_null) != 1:
        raise ValueError(f"unions are not structural: {variants}")
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    if outer.get("default", ...) is None:
        del outer["default"]
    return {**non_null[0], **outer}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = _collapse_optional(node)
    ref = node.get("$ref")
    if ref is not None:
        target = copy.deepcopy(defs[ref.rsplit("/", 1)[-1]])
        # The field's own description wins over the referenced type's docstring.
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        node = _collapse_optional(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "additionalProperties" and isinstance(value, bool):
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties", "allOf"):
            out[key] = _structural(value, defs)
        elif key == "description":
            # Docstrings wrap at the source's width; kubectl explain re-wraps on its own.
            out[key] = " ".join(value.split())
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, as a CRD embeds it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    return schema


def crd(info: KindInfo) -> dict[str, Any]:
    spec_schema = openapi_schema(info.spec)
    status_schema = openapi_schema(info.status)
    spec_schema.setdefault("description", f"Desired state of the {info.kind}.")
    status_schema["description"] = (
        f"Observed state of the {info.kind}, written by the operator. Never edit it."
    )
    root = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion of this object: webhook-operator.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": f"Kind of this object: {info.kind}."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{api.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "webhook-operator"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": info.short_names,
                "categories": info.categories,
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": info.printer_columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def crd_filename(info: KindInfo) -> str:
    return f"{api.GROUP}_{info.plural}.yaml"


def render(info: KindInfo) -> str:
    header = "# Generated by `make crds` from webhook_operator/api/v1alpha1.py. Do not edit.\n"
    body = yaml.safe_dump(crd(info), sort_keys=False, width=100, allow_unicode=True)
    return header + body


def rendered_files() -> dict[str, str]:
    """File name -> content of every CRD."""
    return {crd_filename(info): render(info) for info in KINDS}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in rendered_files().items():
        path = directory / name
        path.write_text(content)
        written.append(path)
    return written


def all_crds() -> list[dict[str, Any]]:
    return [crd(info) for info in KINDS]
