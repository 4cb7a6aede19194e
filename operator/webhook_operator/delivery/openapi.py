"""The OpenAPI document of the delivery service's HTTP API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from webhook_operator import __version__

_ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_NS = {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}
_APP = {"name": "app", "in": "path", "required": True, "schema": {"type": "string"}}
_EP = {"name": "endpoint", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PAGE = [
    {
        "name": "status",
        "in": "query",
        "schema": {"type": "string"},
        "description": "pending, failed, delivered, exhausted, held or cancelled;"
        " repeat or comma-separate",
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string"},
        "description": "`next` of the previous page",
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
    },
]


def _json(ref: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "webhook-operator delivery service",
        "version": __version__,
        "description": "Emit events, read delivery history, resend, replay and ping. Authenticate "
        "with `Authorization: Bearer <ServiceAccount token>`; permissions are Kubernetes RBAC on "
        "`webhookapps.webhook-operator.dev` (emit, get, list, update).",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"reason": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "EmitRequest": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string", "example": "invoice.paid"},
                    "id": {
                        "type": "string",
                        "description": "Idempotency key: the same id within 24h"
                        " creates no new deliveries",
                    },
                    "data": {
                        "description": "The event's data; checked against the catalog's JSON schema"
                    },
                },
                "additionalProperties": False,
            },
            "EmitResponse": {
                "type": "object",
                "properties": {
                    "eventId": {"type": "string"},
                    "deliveries": {"type": "integer"},
                    "duplicate": {"type": "boolean"},
                },
            },
            "Delivery": {
                "type": "object",
                "properties": {
                    k: {"type": t}
                    for k, t in {
                        "id": "string",
                        "eventId": "string",
                        "namespace": "string",
                        "app": "string",
                        "endpoint": "string",
                        "eventType": "string",
                        "status": "string",
                        "attempts": "integer",
                        "createdAt": "string",
                        "updatedAt": "string",
                        "nextAttemptAt": "string",
                        "lastHttpStatus": "integer",
                        "lastError": "string",
                    }.items()
                },
            },
            "DeliveryPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}},
                    "next": {"type": ["string", "null"]},
                },
            },
            "DeliveryDetail": {
                "allOf": [{"$ref": "#/components/schemas/Delivery"}],
                "properties": {
                    "payload": {"type": "string", "description": "The exact JSON body sent"},
                    "attemptLog": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1/namespaces/{namespace}/apps/{app}/events": {
            "post": {
                "summary": "Emit an event to every subscribed endpoint of the app (RBAC verb emit)",
                "parameters": [_NS, _APP],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EmitRequest"}}
                    },
                },
                "responses": {
                    "202": _json("#/components/schemas/EmitResponse", "Accepted"),
                    **_errors(400, 401, 403, 404, 413, 422),
                },
            }
        },
        "/v1/namespaces/{namespace}/apps/{app}/deliveries": {
            "get": {
                "summary": "Deliveries of the app, newest first (RBAC verb list)",
                "parameters": [
                    _NS,
                    _APP,
                    *_PAGE,
                    {"name": "endpoint", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json("#/components/schemas/DeliveryPage"),
                    **_errors(400, 401, 403),
                },
            }
        },
        "/v1/namespaces/{namespace}/endpoints/{endpoint}/deliveries": {
            "get": {
                "summary": "Deliveries to one endpoint, newest first (RBAC verb list)",
                "parameters": [_NS, _EP, *_PAGE],
                "responses": {
                    "200": _json("#/components/schemas/DeliveryPage"),
                    **_errors(400, 401, 403, 404),
                },
            }
        },
        "/v1/namespaces/{namespace}/deliveries/{id}": {
            "get": {
                "summary": "One delivery with its attempts and payload (RBAC verb get)",
                "parameters": [_NS, _ID],
                "responses": {
                    "200": _json("#/components/schemas/DeliveryDetail"),
                    **_errors(401, 403, 404),
                },
            }
        },
        "/v1/namespaces/{namespace}/deliveries/{id}/resend": {
            "post": {
                "summary": "Deliver the same event to the same endpoint again (RBAC verb update)",
                "parameters": [_NS, _ID],
                "responses": {"202": {"description": "Accepted"}, **_errors(401, 403, 404)},
            }
        },
        "/v1/namespaces/{namespace}/endpoints/{endpoint}/replay": {
            "post": {
                "summary": "Deliver again every failed or exhausted delivery since a time"
                " (RBAC verb update)",
                "parameters": [_NS, _EP],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["since"],
                                "properties": {
                                    "since": {"type": "string", "format": "date-time"},
                                    "statuses": {"type": "array", "items": {"type": "string"}},
                                },
                            }
                        }
                    },
                },
                "responses": {"202": {"description": "Accepted"}, **_errors(400, 401, 403, 404)},
            }
        },
        "/v1/namespaces/{namespace}/endpoints/{endpoint}/ping": {
            "post": {
                "summary": "Send a webhook.ping event to this endpoint only (RBAC verb update)",
                "parameters": [_NS, _EP],
                "responses": {"202": {"description": "Accepted"}, **_errors(401, 403, 404)},
            }
        },
        "/internal/v1/endpoint-stats": {
            "get": {
                "summary": "Endpoints whose delivery state changed since a cursor"
                " (for the operator)",
                "parameters": [{"name": "since", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}, **_errors(400, 401, 403)},
            }
        },
    },
}
