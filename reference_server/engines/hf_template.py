"""A conversation and its tools in the form Hugging Face chat templates take them (`apply_chat_template`).

Templates follow the transformers conventions rather than OpenAI's wire format in one place: an assistant's
earlier tool calls carry `function.arguments` as a dict, not a JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reference_server.engines.base import Message, Tool


def template_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as Hugging Face chat templates take it.

    An assistant's earlier tool calls keep OpenAI's shape except `function.arguments`, which templates expect as a
    dict (they render it with `tojson`); a string that is not a JSON object becomes `{}`, as vLLM's server does,
    so that one malformed call in the history does not make every later turn fail.
    """
    conversation: list[dict[str, Any]] = []
    for m in messages:
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [_template_tool_call(call) for call in m.tool_calls]
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
        conversation.append(message)
    return conversation


def template_tools(tools: Sequence[Tool]) -> list[dict[str, Any]] | None:
    """`tools` in OpenAI's request shape, as Hugging Face templates take them; None when there are none."""
    if not tools:
        return None
    rendered = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = tool.parameters
        rendered.append({"type": "function", "function": function})
    return rendered


def _template_tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    rendered = dict(call)
    function = call.get("function")
    if isinstance(function, Mapping):
        arguments: Any = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments else {}
            except ValueError:
                arguments = {}
        rendered["function"] = {**function, "arguments": arguments if isinstance(arguments, Mapping) else {}}
    return rendered
