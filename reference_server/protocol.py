"""Requests: JSON bodies validated against the request schemas in `schemas/` and turned into typed objects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import fastjsonschema
import orjson

import schemas
from reference_server.engines.base import Message
from reference_server.errors import APIError, bad_request

Kind = Literal["chat", "completion"]
_INT64 = 2**63

_SCHEMA_FILES: Mapping[Kind, str] = {
    "chat": "requests/chat_completion_request.json",
    "completion": "requests/completion_request.json",
}


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A validated chat or completion request. Exactly one of `messages` and `prompt` is set."""

    kind: Kind
    model: str
    messages: tuple[Message, ...] | None
    prompt: str | None
    stream: bool
    include_usage: bool
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    presence_penalty: float
    frequency_penalty: float
    ignore_eos: bool
    min_tokens: int


class RequestParser:
    """Compiles the request schemas once; `parse` turns a raw body into a request or a 400."""

    def __init__(self) -> None:
        self._validators: dict[Kind, Callable[[Any], Any]] = {
            kind: fastjsonschema.compile(schemas.load(path)) for kind, path in _SCHEMA_FILES.items()
        }

    def parse(self, kind: Kind, body: bytes) -> CompletionRequest:
        if not body:
            raise bad_request("The request body is empty; send a JSON object.")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.")
        try:
            self._validators[kind](data)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _schema_error(exc) from None
        return _build(kind, data)


def _schema_error(exc: fastjsonschema.JsonSchemaValueException) -> APIError:
    path = [str(p) for p in (exc.path or [])][1:]  # drop the leading "data"
    param = ""
    for part in path:
        param += f"[{part}]" if part.isdigit() else (f".{part}" if param else part)
    if exc.rule == "required" and isinstance(exc.value, dict):
        missing = next(name for name in exc.rule_definition if name not in exc.value)
        param = f"{param}.{missing}" if param else missing
        return bad_request(f"Missing required parameter '{param}'.", param=param)
    message = exc.message.replace("data.", "", 1) if exc.message.startswith("data.") else exc.message
    if not path:
        message = message.replace("data ", "the request ", 1)
    return bad_request(f"Invalid request: {message}.", param=param or None)


def _opt(data: Mapping[str, Any], name: str, default: float) -> float:
    value = data.get(name)
    return default if value is None else float(value)


def _build(kind: Kind, data: Mapping[str, Any]) -> CompletionRequest:
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    if kind == "chat":
        messages = tuple(Message(m["role"], _content_text(m["content"])) for m in data["messages"])
    else:
        raw = data["prompt"]
        prompt = raw if isinstance(raw, str) else raw[0]
    stop_raw = data.get("stop")
    stop = (stop_raw,) if isinstance(stop_raw, str) else tuple(stop_raw or ())
    stream_options = data.get("stream_options") or {}
    # OpenAI names the chat output limit `max_completion_tokens` and deprecates `max_tokens` for chat; like vLLM's
    # server, the new name wins when both are sent. Completions have only `max_tokens` (the other is ignored).
    max_tokens = data.get("max_completion_tokens") if kind == "chat" else None
    if max_tokens is None:
        max_tokens = data.get("max_tokens")
    seed = data.get("seed")
    if isinstance(seed, float) and not -_INT64 < seed < _INT64:
        # orjson reads an integer beyond 64 bits as the nearest float, which may equal a bound of the schema.
        raise bad_request("Invalid request: seed must be an integer in the signed 64-bit range.", param="seed")
    return CompletionRequest(
        kind=kind,
        model=data["model"],
        messages=messages,
        prompt=prompt,
        stream=bool(data.get("stream", False)),
        include_usage=bool(stream_options.get("include_usage", False)),
        max_tokens=None if max_tokens is None else int(max_tokens),
        temperature=_opt(data, "temperature", 1.0),
        top_p=_opt(data, "top_p", 1.0),
        stop=tuple(s for s in stop if s),
        seed=None if seed is None else int(seed),
        presence_penalty=_opt(data, "presence_penalty", 0.0),
        frequency_penalty=_opt(data, "frequency_penalty", 0.0),
        ignore_eos=bool(data.get("ignore_eos", False)),
        min_tokens=int(data.get("min_tokens", 0)),
    )


def _content_text(content: str | list[dict[str, str]]) -> str:
    return content if isinstance(content, str) else "".join(part["text"] for part in content)
