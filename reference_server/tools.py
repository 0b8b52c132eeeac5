"""Tool calls: what `tool_choice` asks of the engine, and how its output text becomes `tool_calls`.

- `none` (or no tools): plain text; the tools are not shown to the model.
- a named function: guided decoding to the function's `parameters`; the whole output is the call's arguments.
- `required`: guided decoding to `{"name": <one of the tools>, "arguments": <its parameters>}`; the output names
  the function.
- `auto`: the tools go to the chat template, the model writes what it likes, and calls in the Hermes format
  (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, as Qwen, Hermes and SmolLM-class templates write
  them) are taken out of the text; anything else is content. A block that does not parse stays content.

A `CallReader` turns the output text into `Part`s as it arrives, for a stream, and the same reader over the whole
text gives the non-streamed response, so streamed argument fragments always concatenate to exactly the arguments
of the response. What the reader cannot decide yet (the start of a tag, the closing brace of a `required` call) it
holds until the next text or the end.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from reference_server.engines.base import StructuredOutput, Tool

Mode = Literal["none", "auto", "required", "function"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`tool_choice` resolved against the tools: a mode and, for `function`, the function's name."""

    mode: Mode
    name: str | None = None


NO_TOOLS = ToolChoice("none")


@dataclass(frozen=True, slots=True)
class Content:
    text: str


@dataclass(frozen=True, slots=True)
class CallStart:
    """A tool call begins: its index among the response's calls, its id and the function's name."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Arguments:
    """A fragment of the arguments (a JSON string) of call `index`."""

    index: int
    fragment: str


Part = Content | CallStart | Arguments


def new_call_id() -> str:
    """OpenAI's form: `call_` and 24 hex digits."""
    return "call_" + os.urandom(12).hex()


def guided(choice: ToolChoice, tools: Sequence[Tool]) -> StructuredOutput | None:
    """The structured output a tool choice needs, or None when the model writes freely."""
    if choice.mode == "function":
        tool = next(t for t in tools if t.name == choice.name)
        return StructuredOutput(dict(tool.parameters))
    if choice.mode == "required":
        branches = [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": dict(t.parameters)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in tools
        ]
        return StructuredOutput(branches[0] if len(branches) == 1 else {"anyOf": branches})
    return None


class CallReader:
    """Output text in, parts out; `finish` at the end. `calls` says how many tool calls were read."""

    def __init__(self, ids: Callable[[], str] = new_call_id) -> None:
        self.calls = 0
        self._ids = ids

    def feed(self, text: str) -> list[Part]:
        return [Content(text)] if text else []

    def finish(self) -> list[Part]:
        return []

    def _start(self, name: str) -> CallStart:
        start = CallStart(self.calls, self._ids(), name)
        self.calls += 1
        return start


class FunctionReader(CallReader):
    """A named function: the whole output is its arguments."""

    def __init__(self, name: str, ids: Callable[[], str] = new_call_id) -> None:
        super().__init__(ids)
        self._name = name

    def feed(self, text: str) -> list[Part]:
        parts: list[Part] = [self._start(self._name)] if self.calls == 0 else []
        if text:
            parts.append(Arguments(0, text))
        return parts

    def finish(self) -> list[Part]:
        return [self._start(self._name)] if self.calls == 0 else []  # an empty output is still the call


_REQUIRED_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')


class RequiredReader(CallReader):
    """`required`: `{"name": N, "arguments": A}` — a call of N whose arguments are the text of A.

    The arguments stream as they come, less what may be the wrapper's closing brace (and the blanks around it),
    held until more text shows it is not. Output that does not start that way (an engine without guided decoding)
    is content.
    """

    def __init__(self, ids: Callable[[], str] = new_call_id) -> None:
        super().__init__(ids)
        self._pending = ""
        self._started = False

    def feed(self, text: str) -> list[Part]:
        self._pending += text
        parts: list[Part] = []
        if not self._started:
            head = _REQUIRED_HEAD.match(self._pending)
            if head is None:
                return parts
            self._started = True
            parts.append(self._start(orjson.loads(head.group(1))))
            self._pending = self._pending[head.end() :]
        kept = self._pending.rstrip()
        cut = len(kept) - 1 if kept.endswith("}") else len(kept)
        if cut > 0:
            parts.append(Arguments(0, self._pending[:cut]))
            self._pending = self._pending[cut:]
        return parts

    def finish(self) -> list[Part]:
        rest, self._pending = self._pending, ""
        if not self._started:
            return [Content(rest)] if rest else []
        rest = rest.rstrip()
        rest = rest[:-1].rstrip() if rest.endswith("}") else rest
        return [Arguments(0, rest)] if rest else []


_OPEN, _CLOSE = "<tool_call>", "</tool_call>"


class HermesReader(CallReader):
    """`auto`: content, with `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks taken out as calls.

    Each call's arguments come in one fragment, once its block is complete; blanks between calls are dropped.
    """

    def __init__(self, ids: Callable[[], str] = new_call_id) -> None:
        super().__init__(ids)
        self._buffer = ""
        self._inside = False

    def feed(self, text: str) -> list[Part]:
        self._buffer += text
        parts: list[Part] = []
        while True:
            if self._inside:
                end = self._buffer.find(_CLOSE)
                if end < 0:
                    return parts
                parts += self._block(self._buffer[:end], complete=True)
                self._buffer = self._buffer[end + len(_CLOSE) :]
                self._inside = False
                continue
            start = self._buffer.find(_OPEN)
            if start >= 0:
                parts += self._content(self._buffer[:start])
                self._buffer = self._buffer[start + len(_OPEN) :]
                self._inside = True
                continue
            hold = _partial_suffix(self._buffer, _OPEN)
            parts += self._content(self._buffer[: len(self._buffer) - hold])
            self._buffer = self._buffer[len(self._buffer) - hold :]
            return parts

    def finish(self) -> list[Part]:
        rest, self._buffer = self._buffer, ""
        if self._inside:  # a block the end of the output closed (some models stop before the closing tag)
            self._inside = False
            return self._block(rest, complete=False)
        return self._content(rest)

    def _content(self, text: str) -> list[Part]:
        if not text or (self.calls and not text.strip()):
            return []
        return [Content(text)]

    def _block(self, body: str, *, complete: bool) -> list[Part]:
        call = _parse_call(body)
        if call is None:
            raw = _OPEN + body + (_CLOSE if complete else "")
            return [Content(raw)]
        name, arguments = call
        return [self._start(name), Arguments(self.calls - 1, arguments)]


def _parse_call(body: str) -> tuple[str, str] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string already
        return value["name"], arguments
    return value["name"], orjson.dumps(arguments).decode()


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a beginning of `tag` (it may become the tag)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def reader(choice: ToolChoice, ids: Callable[[], str] = new_call_id) -> CallReader:
    if choice.mode == "function":
        assert choice.name is not None
        return FunctionReader(choice.name, ids)
    if choice.mode == "required":
        return RequiredReader(ids)
    if choice.mode == "auto":
        return HermesReader(ids)
    return CallReader(ids)


def as_template_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tools as Hugging Face chat templates take them."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def parse_tools(raw: Sequence[Mapping[str, Any]] | None) -> tuple[Tool, ...]:
    """The request's `tools` (already schema-valid) as engine `Tool`s."""
    tools: list[Tool] = []
    for item in raw or ():
        function = item["function"]
        parameters = function.get("parameters")
        tools.append(
            Tool(
                name=function["name"],
                description=function.get("description") or "",
                parameters=parameters if parameters is not None else {"type": "object", "properties": {}},
            )
        )
    return tuple(tools)
