"""Structured outputs and tool calls under load: what the requests ask for, and the check of every answer.

`--response-format json` (JSON mode), `--response-format schema:FILE` (a JSON Schema) and `--tools FILE` (an OpenAI
`tools` array, with `--tool-choice auto|required|none|NAME`) add their fields to every request. Each response's
output is then checked once, after its last chunk — never on the path that stamps arrivals:

- JSON mode: the content parses as a JSON object; a schema: it also validates against the schema.
- Tools: every call has an id (unique in the response), type `function`, the name of an offered function (the one
  named by `--tool-choice NAME`), and arguments that parse as a JSON object valid against its parameters; with
  `required` or a name there is at least one call and `finish_reason` is `tool_calls`; with `none` there is none.

An answer cut by the output limit (`finish_reason: length`) is not judged: guided decoding stops where the limit
says, mid-value (its record's `output_error` stays null, as for a request that asked nothing). What fails goes into
the record's `output_error` ("" when the answer was fine); `harness.analysis.table` counts, per step, the share of the
judged answers that failed (`rates.output_error`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

CHOICES = ("auto", "required", "none")


@dataclass(slots=True)
class Call:
    """One tool call as the stream built it up."""

    id: str | None = None
    type: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What every request asks of its output, and how to check an answer."""

    response_format: Mapping[str, Any] | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | None = None  # auto | required | none | a function's name; None: the server's default
    _schema_check: Callable[[Any], Any] | None = None
    _parameter_checks: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, response_format: str | None, tools_file: Path | None, tool_choice: str | None) -> OutputSpec | None:
        """From the command line; None when nothing is asked. Raises ValueError naming what is wrong."""
        if response_format is None and tools_file is None:
            if tool_choice is not None:
                raise ValueError("--tool-choice needs --tools")
            return None
        fmt: dict[str, Any] | None = None
        schema_check = None
        if response_format == "json":
            fmt = {"type": "json_object"}
        elif response_format is not None:
            if not response_format.startswith("schema:"):
                raise ValueError(f"--response-format is json or schema:FILE, not {response_format!r}")
            path = Path(response_format.removeprefix("schema:"))
            schema = _load(path, dict, "a JSON Schema object")
            schema_check = _compile(schema, str(path))
            fmt = {"type": "json_schema", "json_schema": {"name": path.stem[:64] or "schema", "schema": schema}}
        tools: tuple[Mapping[str, Any], ...] = ()
        checks: dict[str, Callable[[Any], Any]] = {}
        if tools_file is not None:
            raw = _load(tools_file, list, "a JSON array of tools")
            for n, tool in enumerate(raw):
                function = tool.get("function") if isinstance(tool, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise ValueError(
                        f"{tools_file}: tools[{n}] is not {{'type': 'function', 'function': {{'name'...}}}}"
                    )
                parameters = function.get("parameters") or {"type": "object"}
                checks[function["name"]] = _compile(parameters, f"{tools_file}: tools[{n}].function.parameters")
            tools = tuple(raw)
            if tool_choice is not None and tool_choice not in CHOICES and tool_choice not in checks:
                raise ValueError(f"--tool-choice {tool_choice!r} is none of {', '.join(CHOICES)} or the tools' names")
        elif tool_choice is not None:
            raise ValueError("--tool-choice needs --tools")
        return cls(fmt, tools, tool_choice, schema_check, checks)

    def body(self) -> dict[str, Any]:
        """The fields every request carries."""
        body: dict[str, Any] = {}
        if self.response_format is not None:
            body["response_format"] = dict(self.response_format)
        if self.tools:
            body["tools"] = [dict(t) for t in self.tools]
            if self.tool_choice in CHOICES:
                body["tool_choice"] = self.tool_choice
            elif self.tool_choice is not None:
                body["tool_choice"] = {"type": "function", "function": {"name": self.tool_choice}}
        return body

    def describe(self) -> str:
        parts = []
        if self.response_format is not None:
            parts.append(f"response_format {self.response_format['type']}")
        if self.tools:
            parts.append(f"{len(self.tools)} tools, tool_choice {self.tool_choice or 'auto'}")
        return ", ".join(parts)

    def check(self, content: str, calls: Sequence[Call], finish_reason: str | None) -> str | None:
        """The first thing wrong with an answer, or None."""
        if finish_reason == "length":
            return None
        if self.tools:
            if problem := self._check_calls(calls, finish_reason):
                return problem
            if calls:
                return None
        if self.response_format is not None:
            try:
                value = orjson.loads(content)
            except orjson.JSONDecodeError as exc:
                return f"the content is not JSON: {exc} in {content[:80]!r}"
            if not isinstance(value, dict):
                return f"the content is JSON but not an object: {content[:80]!r}"
            if self._schema_check is not None:
                try:
                    self._schema_check(value)
                except fastjsonschema.JsonSchemaValueException as exc:
                    return f"the content breaks the schema: {exc.message}"
        return None

    def _check_calls(self, calls: Sequence[Call], finish_reason: str | None) -> str | None:
        choice = self.tool_choice
        if choice == "none":
            return "a tool was called although tool_choice was none" if calls else None
        forced = choice not in (None, "auto")
        if forced and not calls:
            return f"no tool call although tool_choice was {choice}"
        if calls and finish_reason != "tool_calls":
            return f"finish_reason {finish_reason!r} after a tool call, not tool_calls"
        ids = [c.id for c in calls]
        if len(set(ids)) != len(ids):
            return f"tool call ids repeat: {ids}"
        for n, call in enumerate(calls):
            if not call.id or call.type != "function":
                return f"tool call {n} lacks an id or type function: id={call.id!r}, type={call.type!r}"
            check = self._parameter_checks.get(call.name)
            if check is None or (forced and choice != "required" and call.name != choice):
                return f"tool call {n} names {call.name!r}, which was not offered"
            text = "".join(call.arguments)
            try:
                arguments = orjson.loads(text)
            except orjson.JSONDecodeError:
                return f"tool call {n} ({call.name}): the arguments are not JSON: {text[:80]!r}"
            if not isinstance(arguments, dict):
                return f"tool call {n} ({call.name}): the arguments are not a JSON object: {text[:80]!r}"
            try:
                check(arguments)
            except fastjsonschema.JsonSchemaValueException as exc:
                return f"tool call {n} ({call.name}): the arguments break the parameters: {exc.message}"
        return None


def _load(path: Path, kind: type, what: str) -> Any:
    try:
        value = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{path}: expected {what}")
    return value


def _compile(schema: Any, where: str) -> Callable[[Any], Any]:
    try:
        return fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ValueError(f"{where}: not a valid JSON Schema: {exc}") from None
