"""The server's OpenAPI 3.1 document, generated from the JSON Schemas in `schemas/`.

`schemas/openapi.json` is this document as committed (a test keeps the two equal); regenerate it with
`python -m reference_server.openapi > schemas/openapi.json`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import schemas

_ERROR_STATUSES = {
    "400": "Malformed JSON, wrong types, out-of-range values, or a prompt that does not fit the context.",
    "401": "Missing or wrong API key.",
    "404": "Unknown model.",
    "408": "The request body did not arrive in time.",
    "413": "The request body is too large.",
    "415": "The request body is not JSON.",
    "429": "The key has as many requests in flight as its concurrency limit allows.",
    "500": "Internal error.",
    "503": "The server is shutting down.",
}


def _embed(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def _error_responses(statuses: tuple[str, ...]) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    return {s: {"description": _ERROR_STATUSES[s], "content": {"application/json": {"schema": ref}}} for s in statuses}


def _either(obj: str) -> dict[str, Any]:
    return {"oneOf": [{"$ref": f"#/components/schemas/{p}_{obj}"} for p in schemas.PROFILES]}


def _completion_operation(summary: str, request: str, obj: str, chunk: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}},
        },
        "responses": {
            "200": {
                "description": "The completion; with `stream: true`, server-sent events of chunks and `[DONE]`.",
                "content": {
                    "application/json": {"schema": _either(obj)},
                    "text/event-stream": {
                        "schema": {
                            "type": "string",
                            "description": f"`data: <{chunk}>` events, then `data: [DONE]`.",
                        }
                    },
                },
            },
            **_error_responses(("400", "401", "404", "408", "413", "415", "429", "500", "503")),
        },
    }


def _json_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def openapi_document() -> dict[str, Any]:
    components: dict[str, Any] = {
        "ChatCompletionRequest": _embed(schemas.load("requests/chat_completion_request.json")),
        "CompletionRequest": _embed(schemas.load("requests/completion_request.json")),
        "Error": _embed(schemas.load("anyscale/error.json")),
    }
    for profile in schemas.PROFILES:
        for obj in ("chat_completion", "completion", "chat_chunk", "completion_chunk", "model_list", "model"):
            components[f"{profile}_{obj}"] = _embed(schemas.response_schema(profile, obj))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Anyscale Endpoints API (reference server)",
            "version": "1.0.0",
            "description": "Chat and completion endpoints; at most N requests in flight per API key (default 30).",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "esecret_… key"}},
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": {"description": "Serving.", "content": _json_of({"type": "object"})}},
                }
            },
            "/v1/models": {
                "get": {
                    "summary": "List models",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "The served models.",
                            "content": _json_of(_either("model_list")),
                        },
                        **_error_responses(("401", "503")),
                    },
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "summary": "Retrieve a model",
                    "security": [{"bearer": []}],
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "The model.", "content": _json_of(_either("model"))},
                        **_error_responses(("401", "404", "503")),
                    },
                }
            },
            "/v1/chat/completions": {
                "post": _completion_operation(
                    "Chat completion", "ChatCompletionRequest", "chat_completion", "chat_chunk"
                )
            },
            "/v1/completions": {
                "post": _completion_operation(
                    "Completion (the prompt is used verbatim)",
                    "CompletionRequest",
                    "completion",
                    "completion_chunk",
                )
            },
        },
    }


if __name__ == "__main__":
    json.dump(openapi_document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
