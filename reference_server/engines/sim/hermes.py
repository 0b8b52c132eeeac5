"""Tool calls in the Hermes format, which the HTTP layer parses: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`.

The simulator's rule for `tool_choice: auto` (it has no model to decide): it calls every offered tool whose name the
last user message contains as a whole word, ignoring case, in the order the message first names them, and answers
in plain text when it names none. Tool results are not the user's words: after one, the simulator answers in text,
as a model does once it has what it asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from reference_server.engines.base import Tool
from reference_server.engines.sim.instance import dumps

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def named_tools(tools: Sequence[Tool], message: str) -> list[Tool]:
    """The tools `message` names as whole words (letters, digits and `_` do not continue the name), by first mention."""
    mentions: list[tuple[int, Tool]] = []
    for tool in tools:
        found = re.search(rf"(?<!\w){re.escape(tool.name)}(?!\w)", message, re.IGNORECASE)
        if found is not None and tool.name:
            mentions.append((found.start(), tool))
    return [tool for _, tool in sorted(mentions, key=lambda m: m[0])]


def call_text(name: str, arguments: Any) -> str:
    """One call as the model writes it; `arguments` is the JSON value (not a string holding it)."""
    return OPEN + dumps({"name": name, "arguments": arguments}) + CLOSE


def calls_text(calls: Sequence[Mapping[str, Any]]) -> str:
    """An assistant's earlier `tool_calls` (OpenAI's shape) as the Hermes text it once wrote, one call a line."""
    written = []
    for call in calls:
        function = call.get("function") or {}
        raw = function.get("arguments", "{}")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            arguments = raw  # passed on as the client sent it; the template only has to render it
        written.append(call_text(str(function.get("name", "")), arguments))
    return "\n".join(written)
