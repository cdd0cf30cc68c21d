"""The OpenAPI 3.1 document served at `/openapi.json`."""

from __future__ import annotations

from typing import Any

_EVENT_IN = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 256, "description": "Must not start with inngest/"},
        "data": {"type": "object", "default": {}, "description": "data._inngest is removed"},
        "user": {"type": "object", "default": {}, "description": "Encrypted at rest"},
        "id": {
            "type": "string",
            "description": "Idempotency key: only the first event with this id in 24 h triggers runs",
        },
        "ts": {
            "type": "integer",
            "description": "Epoch milliseconds, 1980-2100; default: receive time",
        },
        "v": {"type": "string"},
    },
}
_EVENT_OUT = {
    "type": "object",
    "properties": {
        "internal_id": {"type": "string", "description": "Server-made ULID"},
        "id": {"type": "string"},
        "name": {"type": "string"},
        "data": {"type": "object"},
        "user": {"type": "object", "description": "Decrypted for authorized callers"},
        "user_erased": {"type": "boolean"},
        "ts": {"type": "integer"},
        "v": {"type": ["string", "null"]},
        "meta": {"type": "object"},
        "received_at": {"type": "string", "format": "date-time"},
    },
}
_INGEST_REPLY = {
    "type": "object",
    "properties": {
        "ids": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "integer"},
        "error": {"type": "string"},
    },
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
    },
}
_METADATA = {
    "type": "object",
    "properties": {
        "fetched_at": {"type": "string", "format": "date-time"},
        "cached_until": {"type": ["string", "null"]},
        "next_cursor": {"type": ["string", "null"]},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"data": data, "metadata": _ref("Metadata")}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(_ref("Error"), "Error") for status in statuses}


def openapi_document(version: str) -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"signingKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Headwater",
            "version": version,
            "description": "Event API and REST API, wire-compatible with Inngest.",
        },
        "components": {
            "schemas": {
                "EventIn": _EVENT_IN,
                "Event": _EVENT_OUT,
                "IngestReply": _INGEST_REPLY,
                "Error": _ERROR,
                "Metadata": _METADATA,
            },
            "securitySchemes": {
                "signingKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The signing key, raw or hashed as the Inngest SDKs send it (production mode)",
                }
            },
        },
        "paths": {
            "/e/{key}": {
                "post": {
                    "summary": "Send one event or an array of events",
                    "parameters": [
                        {
                            "name": "key",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "x-inngest-event-id-seed",
                            "in": "header",
                            "schema": {"type": "string"},
                            "description": "<millis>,<base64 of 10 bytes>: a retry with the same seed gets the same ids and stores nothing twice",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        _ref("EventIn"),
                                        {
                                            "type": "array",
                                            "items": _ref("EventIn"),
                                            "maxItems": 5000,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("IngestReply"), "Stored: one id per event, in order"),
                        "400": _json(_ref("IngestReply"), "Invalid; nothing stored"),
                        "401": _json(_ref("IngestReply"), "Unknown event key (production)"),
                        "413": _json(_ref("IngestReply"), "Too large; nothing stored"),
                    },
                }
            },
            "/health": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "OK"}}}
            },
            "/v1/events": {
                "get": {
                    "summary": "List events, newest first",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 100,
                                "default": 20,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "internal_id of the last event of the previous page",
                        },
                        {"name": "name", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "received_after",
                            "in": "query",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "received_before",
                            "in": "query",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            _envelope({"type": "array", "items": _ref("Event")}), "A page of events"
                        ),
                        **_errors(400, 401),
                    },
                }
            },
            "/v1/events/{internal_id}": {
                "get": {
                    "summary": "One event",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "internal_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_envelope(_ref("Event")), "The event"),
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/v1/users/{external_id}": {
                "delete": {
                    "summary": "Erase the user object of every event with this user.external_id",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "external_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            _envelope(
                                {
                                    "type": "object",
                                    "properties": {
                                        "external_id": {"type": "string"},
                                        "erased": {"type": "integer"},
                                    },
                                }
                            ),
                            "How many events were erased",
                        ),
                        **_errors(401),
                    },
                }
            },
        },
    }
