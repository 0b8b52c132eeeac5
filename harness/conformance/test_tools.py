"""Function calling: named, required and none tool choices, call ids, the calls streamed as OpenAI streams them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from harness.conformance.contract import PATHS, Contract
from harness.conformance.endpoint import Api
from harness.conformance.features import TOOLS, WEATHER, WEATHER_QUESTION, Features, named_tool, required_tool

__all__ = [
    "test_tool_call_ids",
    "test_tool_call_named",
    "test_tool_choice_none",
    "test_tool_finish_reason",
    "test_tool_stream",
]


def _calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    message = body["choices"][0].get("message") or {}
    calls = message.get("tool_calls")
    assert isinstance(calls, list) and calls, f"the message has no tool_calls: {message!r}"
    return calls


def _arguments_problem(call: dict[str, Any]) -> str | None:
    """Why a call is not a function call whose arguments are a JSON string valid for its function's parameters."""
    function = call.get("function") or {}
    tool = TOOLS.get(str(function.get("name")))
    if call.get("type") != "function" or tool is None:
        return f"a call must have type function and the name of an offered tool: {call!r}"
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        return f"function.arguments must be a JSON string: {arguments!r}"
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        return f"function.arguments is not JSON ({exc}): {arguments!r}"
    problems = [e.message for e in Draft202012Validator(tool["function"]["parameters"]).iter_errors(value)]
    return f"the arguments {value!r} break {function['name']}'s parameters: {problems}" if problems else None


@pytest.mark.tools
@pytest.mark.feature("tools")
def test_tool_call_named(features: Features) -> None:
    """A tool_choice naming get_weather gives one call of it: a string id, type function, its name, and arguments
    that are a JSON string matching its parameters."""
    calls = _calls(features.body("tools"))
    assert len(calls) == 1, f"a named tool_choice gave {len(calls)} calls: {calls!r}"
    (call,) = calls
    assert isinstance(call.get("id"), str) and call["id"], f"the call has no id: {call!r}"
    assert (call.get("function") or {}).get("name") == "get_weather", f"the named tool was not called: {call!r}"
    assert (problem := _arguments_problem(call)) is None, problem


@pytest.mark.tools
@pytest.mark.feature("tools")
def test_tool_call_ids(api: Api, contract: Contract, features: Features) -> None:
    """Call ids are unique: within a response and across two responses to the same request."""
    first = [c.get("id") for c in _calls(features.body("tools"))]
    reply = api.post(PATHS["chat"], named_tool(contract))
    assert reply.status == 200, reply.describe()
    second = [c.get("id") for c in _calls(reply.json())]
    ids = first + second
    assert all(isinstance(i, str) and i for i in ids), f"call ids {ids}"
    assert len(set(ids)) == len(ids), f"two responses' calls share ids: {first} and {second}"


@pytest.mark.tools
@pytest.mark.feature("tools")
def test_tool_stream(api: Api, contract: Contract, features: Features) -> None:
    """Streamed, a call opens with its index, id, type and name, then only argument fragments follow, and at
    temperature 0 the fragments concatenate to the non-streamed arguments."""
    expected = [(c.get("function") or {}).get("arguments") for c in _calls(features.body("tools"))]
    calls: dict[int, dict[str, Any]] = {}
    for n, chunk in enumerate(api.stream(PATHS["chat"], named_tool(contract)).chunks()):
        for choice in chunk.get("choices") or []:
            for delta in (choice.get("delta") or {}).get("tool_calls") or []:
                index = delta.get("index")
                assert isinstance(index, int), f"chunk {n}: a tool call delta without an integer index: {delta!r}"
                function = delta.get("function") or {}
                if index not in calls:
                    assert isinstance(delta.get("id"), str) and delta.get("type") == "function", (
                        f"chunk {n}: call {index} opens without its id and type function: {delta!r}"
                    )
                    assert isinstance(function.get("name"), str), f"chunk {n}: call {index} opens without a name"
                    calls[index] = {"name": function["name"], "arguments": function.get("arguments") or ""}
                    continue
                repeated = sorted(k for k in ("id", "type") if k in delta) + (["name"] if "name" in function else [])
                assert not repeated, (
                    f"chunk {n}: call {index} repeats {repeated} after its first delta (clients concatenate "
                    f"every string they receive, the OpenAI SDK among them): {delta!r}"
                )
                calls[index]["arguments"] += function.get("arguments") or ""
    assert calls, "the stream carries no tool call deltas"
    got = [calls[i]["arguments"] for i in sorted(calls)]
    assert got == expected, f"the streamed arguments {got} differ from the non-streamed {expected}" + (
        " (the same JSON values, written differently)" if _values(got) == _values(expected) else ""
    )


def _values(arguments: list[Any]) -> list[Any] | None:
    try:
        return [orjson.loads(a) for a in arguments]
    except (orjson.JSONDecodeError, TypeError):
        return None


@pytest.mark.tools
@pytest.mark.feature("tools")
def test_tool_finish_reason(api: Api, contract: Contract, features: Features) -> None:
    """`tool_choice: required` ends with finish_reason `tool_calls`, streamed and not. (A named choice may end with
    `stop`, as OpenAI's own API does, so it is not held to this.)"""
    features.reply("tools")
    reply = api.post(PATHS["chat"], required_tool(contract))
    assert reply.status == 200, reply.describe()
    body = reply.json()
    for call in _calls(body):
        assert (problem := _arguments_problem(call)) is None, problem
    finish = body["choices"][0].get("finish_reason")
    assert finish == "tool_calls", f"tool_choice required ended with finish_reason {finish!r}"
    streamed = [
        c["finish_reason"]
        for chunk in api.stream(PATHS["chat"], required_tool(contract)).chunks()
        for c in chunk.get("choices") or []
        if c.get("finish_reason") is not None
    ]
    # How many chunks carry a finish_reason is test_one_finish_reason's to judge; here, which one.
    assert streamed and set(streamed) == {"tool_calls"}, (
        f"streamed, tool_choice required ended with finish_reasons {streamed}"
    )


@pytest.mark.tools
@pytest.mark.feature("tools")
def test_tool_choice_none(api: Api, contract: Contract, features: Features) -> None:
    """`tool_choice: none` answers in text even when the user asks for the tool by name."""
    features.reply("tools")
    body = contract.body("chat", WEATHER_QUESTION, tools=[WEATHER], tool_choice="none", max_tokens=32)
    reply = api.post(PATHS["chat"], body)
    assert reply.status == 200, reply.describe()
    choice = reply.json()["choices"][0]
    message = choice.get("message") or {}
    assert not message.get("tool_calls"), f"tool_choice none, yet tools were called: {message['tool_calls']!r}"
    assert isinstance(message.get("content"), str), f"tool_choice none gave no text: {message!r}"
    assert choice.get("finish_reason") in ("stop", "length"), f"finish_reason {choice.get('finish_reason')!r}"
