"""The server's OpenAPI 3.1 document, generated from the JSON Schemas in `schemas/`.

Two forms. With no arguments it describes any reference server: either profile's shapes (`anyOf`), any model id;
`schemas/openapi.json` is that document as committed (a test keeps the two equal); regenerate it with
`python -m reference_server.openapi > schemas/openapi.json`. A running server serves the document of itself
(`GET /openapi.json`): its profile's shapes only, and `model` restricted to the ids it serves, so that a client
generating requests from the document (a fuzzer) knows which requests can succeed.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Sequence
from typing import Any

import schemas
from schemas import Profile

_ERROR_STATUSES = {
    "400": "Malformed JSON, wrong types, out-of-range values, or a prompt that does not fit the context.",
    "401": "Missing or wrong API key.",
    "404": "Unknown model, or no trace for that request id.",
    "408": "The request body did not arrive in time.",
    "413": "The request body is too large.",
    "415": "The request body is not JSON.",
    "429": "The key has as many requests in flight as its concurrency limit allows.",
    "500": "Internal error.",
    "503": "The server is shutting down.",
}
_DUPLICATE_KEYS = (
    " A member name given twice in the JSON body is not an error: the last occurrence wins, as in most JSON"
    " parsers (RFC 8259 leaves it to the implementation)."
)


def _embed(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def _error_responses(statuses: tuple[str, ...]) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    return {s: {"description": _ERROR_STATUSES[s], "content": {"application/json": {"schema": ref}}} for s in statuses}


def _json_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


class _Builder:
    def __init__(self, profile: Profile | None, models: Sequence[str]) -> None:
        self.profiles: tuple[Profile, ...] = (profile,) if profile is not None else schemas.PROFILES
        self.models = list(models)

    def response(self, obj: str) -> dict[str, Any]:
        refs = [{"$ref": f"#/components/schemas/{p}_{obj}"} for p in self.profiles]
        # anyOf, not oneOf: the profiles' shapes overlap (a model list is valid under both).
        return refs[0] if len(refs) == 1 else {"anyOf": refs}

    def event(self, chunk: str) -> dict[str, Any]:
        """One server-sent event (OpenAPI before 3.2 has `schema` describe each event of a stream)."""
        payload = {"anyOf": [self.response(chunk), {"$ref": "#/components/schemas/Error"}]}
        return {
            "type": "object",
            "description": f"`data: <{chunk}>` events, then `data: [DONE]`; an error after the status line is sent "
            "as an event holding the error envelope, and the stream ends without `[DONE]`.",
            "required": ["data"],
            "properties": {
                "event": {"const": "message"},
                "data": {
                    "anyOf": [
                        {"const": "[DONE]"},
                        {"type": "string", "contentMediaType": "application/json", "contentSchema": payload},
                    ]
                },
            },
        }

    def request(self, name: str) -> dict[str, Any]:
        schema = copy.deepcopy(_embed(schemas.load(f"requests/{name}.json")))
        schema["description"] = schema.get("description", "") + _DUPLICATE_KEYS
        if self.models:
            schema["properties"]["model"]["enum"] = self.models
        return schema

    def model_parameter(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.models:
            schema["enum"] = self.models
        return {"name": "model", "in": "path", "required": True, "schema": schema}

    def completion(self, summary: str, request: str, obj: str, chunk: str) -> dict[str, Any]:
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
                        "application/json": {"schema": self.response(obj)},
                        "text/event-stream": {"schema": self.event(chunk)},
                    },
                },
                **_error_responses(("400", "401", "404", "408", "413", "415", "429", "500", "503")),
            },
        }

    def components(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "ChatCompletionRequest": self.request("chat_completion_request"),
            "CompletionRequest": self.request("completion_request"),
            "Error": _embed(schemas.load("anyscale/error.json")),
            "Trace": {
                "type": "object",
                "required": ["received_ns", "received_by", "first_token_ns", "chunk_ns", "end_ns", "clock"],
                "properties": {
                    "received_ns": {"type": "integer"},
                    "received_by": {
                        "enum": ["kernel", "loop"],
                        "description": "whose time received_ns is: the kernel's when the bytes reached the socket "
                        "(--event-loop asyncio), or when the server's event loop read them",
                    },
                    "first_token_ns": {"type": ["integer", "null"]},
                    "chunk_ns": {"type": "array", "items": {"type": "integer"}},
                    "chunk_written_ns": {"type": "array", "items": {"type": "integer"}},
                    "end_ns": {"type": ["integer", "null"]},
                    "end_written_ns": {"type": ["integer", "null"]},
                    "clock": {"const": "CLOCK_MONOTONIC"},
                },
            },
        }
        for profile in self.profiles:
            for obj in ("chat_completion", "completion", "chat_chunk", "completion_chunk", "model_list", "model"):
                found[f"{profile}_{obj}"] = _embed(schemas.response_schema(profile, obj))
        return found


def openapi_document(profile: Profile | None = None, models: Sequence[str] = ()) -> dict[str, Any]:
    """The document of any reference server, or (given them) of one serving `profile` and `models`."""
    b = _Builder(profile, models)
    return {
        "openapi": "3.1.0",
        "info": _info(),
        "components": {
            "schemas": b.components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "esecret_… key"}},
        },
        "paths": {**_service_paths(), **_api_paths(b), "/debug/traces/{request_id}": _trace_path()},
    }


def _info() -> dict[str, Any]:
    return {
        "title": "Anyscale Endpoints API (reference server)",
        "version": "1.0.0",
        "description": "Chat and completion endpoints; at most N requests in flight per API key (default 30). "
        "Every error, of any path, is the error envelope of `#/components/schemas/Error`: also a request that "
        "is not valid HTTP/1.1 (400), has a request line over 8 KiB (414), or a header over 16 KiB or too many "
        "headers (431), which never reaches an operation.",
    }


def _service_paths() -> dict[str, Any]:
    """The paths that take no key: liveness, metrics, version, this document."""
    return {
        "/health": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": {"description": "Serving.", "content": _json_of({"type": "object"})}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "The text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/version": {
            "get": {
                "summary": "This server's version, its engine and the engine library's version",
                "responses": {"200": {"description": "Versions by name.", "content": _json_of({"type": "object"})}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1.", "content": _json_of({"type": "object"})}},
            }
        },
    }


def _api_paths(b: _Builder) -> dict[str, Any]:
    """The models and the two completion endpoints."""
    return {
        "/v1/models": {
            "get": {
                "summary": "List models",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {"description": "The served models.", "content": _json_of(b.response("model_list"))},
                    **_error_responses(("401", "503")),
                },
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "Retrieve a model",
                "security": [{"bearer": []}],
                "parameters": [b.model_parameter()],
                "responses": {
                    "200": {"description": "The model.", "content": _json_of(b.response("model"))},
                    **_error_responses(("401", "404", "503")),
                },
            }
        },
        "/v1/chat/completions": {
            "post": b.completion("Chat completion", "ChatCompletionRequest", "chat_completion", "chat_chunk")
        },
        "/v1/completions": {
            "post": b.completion(
                "Completion (the prompt is used verbatim)", "CompletionRequest", "completion", "completion_chunk"
            )
        },
    }


def _trace_path() -> dict[str, Any]:
    return {
        "get": {
            "summary": "Ground-truth timings of a request sent with `x-trace-timing: 1`",
            "security": [{"bearer": []}],
            "parameters": [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The trace.", "content": _json_of({"$ref": "#/components/schemas/Trace"})},
                **_error_responses(("401", "404", "503")),
            },
        }
    }


if __name__ == "__main__":
    json.dump(openapi_document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
