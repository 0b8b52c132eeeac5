"""Requests: JSON bodies validated against the request schemas in `schemas/` and turned into typed objects."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import fastjsonschema
import jsonschema
import orjson

import schemas
from reference_server import tools as tooling
from reference_server.engines.base import Message, StructuredOutput, Tool
from reference_server.errors import APIError, bad_request
from reference_server.tools import NO_TOOLS, ToolChoice

Kind = Literal["chat", "completion"]
ResponseFormat = Literal["text", "json_object", "json_schema"]
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
    n: int = 1
    logprobs: int | None = None  # None: not asked; k: each token's logprob and the k most likely
    response_format: ResponseFormat = "text"
    structured: StructuredOutput | None = None  # what response_format asks the engine for
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = NO_TOOLS

    @property
    def plain(self) -> bool:
        """One choice of plain text: the streaming fast path serves it (structured text is still plain text)."""
        return self.n == 1 and self.logprobs is None and self.tool_choice.mode == "none"


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
        messages = tuple(_message(m) for m in data["messages"])
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
        n=int(data.get("n") or 1),
        logprobs=_logprobs(kind, data),
        **_response_format(data) if kind == "chat" else {},
        **_tools(data) if kind == "chat" else {},
    )


def _message(m: Mapping[str, Any]) -> Message:
    return Message(
        m["role"],
        _content_text(m.get("content")),
        tool_calls=tuple(m.get("tool_calls") or ()),
        tool_call_id=m.get("tool_call_id"),
    )


def _content_text(content: str | list[dict[str, str]] | None) -> str:
    if content is None:  # an assistant message that only called tools
        return ""
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


# What the request schema cannot say about the relations between fields is checked below; each error names
# `param` so that a client (and the fuzz test) can tell it from a shape error.


def _logprobs(kind: Kind, data: Mapping[str, Any]) -> int | None:
    if kind == "completion":
        value = data.get("logprobs")
        return None if value is None else int(value)
    top = data.get("top_logprobs")
    if not data.get("logprobs"):
        if top is not None:
            raise bad_request("Invalid request: top_logprobs needs logprobs set to true.", param="top_logprobs")
        return None
    return 0 if top is None else int(top)


def _response_format(data: Mapping[str, Any]) -> dict[str, Any]:
    fmt = data.get("response_format") or {"type": "text"}
    kind: ResponseFormat = fmt["type"]
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"response_format": kind, "structured": StructuredOutput(None)}
    schema = (fmt.get("json_schema") or {}).get("schema")
    if schema is None:  # a named format with no schema constrains the output to JSON only
        return {"response_format": kind, "structured": StructuredOutput(None)}
    _check_schema(schema, "response_format")
    return {"response_format": kind, "structured": StructuredOutput(schema)}


def _tools(data: Mapping[str, Any]) -> dict[str, Any]:
    tools = tooling.parse_tools(data.get("tools"))
    raw = data.get("tool_choice")
    choice: ToolChoice
    if isinstance(raw, dict):
        name = raw["function"]["name"]
        if name not in {t.name for t in tools}:
            raise bad_request(
                f"Invalid request: tool_choice names the function {name!r}, which is not among the tools.",
                param="tool_choice",
            )
        choice = ToolChoice("function", name)
    elif raw == "required":
        if not tools:
            raise bad_request("Invalid request: tool_choice 'required' needs tools.", param="tool_choice")
        choice = ToolChoice("required")
    elif raw == "none" or not tools:
        choice = NO_TOOLS
    else:
        choice = ToolChoice("auto")
    for n, tool in enumerate(tools):
        _check_schema(tool.parameters, f"tools[{n}].function.parameters")
    return {"tools": tools, "tool_choice": choice}


def _check_schema(schema: Mapping[str, Any], param: str) -> None:
    problem = _schema_problem(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    if problem is not None:
        raise bad_request(f"Invalid request: {param} is not a valid JSON Schema: {problem}", param=param)


@functools.lru_cache(maxsize=256)  # a load test sends the same schema with every request
def _schema_problem(serialised: bytes) -> str | None:
    schema = orjson.loads(serialised)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return str(exc.message)
    return None
