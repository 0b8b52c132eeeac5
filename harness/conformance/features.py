"""The chat surface beyond plain text, as features: each found out first, so that one not offered is said so.

Every check of the chat surface carries `@pytest.mark.feature(NAME)`. The optional features (`n`, `logprobs`,
`json_mode`, `json_schema`, `tools`) are discovered by a probe, the feature's first request: a target that refuses
it with a 4xx in the error envelope does not offer the feature, and the feature's checks are skipped with a reason
that starts `not offered`; any other answer means the feature is offered, and what comes back is checked. The other
features (the output limit's chat name, stop lists, seeds) are part of the contract and have no probe. The result
lists each feature as offered (every check passed), not offered, or failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from harness.conformance.contract import PATHS, Contract
from harness.conformance.endpoint import Api, Reply

NOT_OFFERED = "not offered"
COUNTING = "Count from one to twenty in words, separated by spaces."
WEATHER_QUESTION = "Please use get_weather to tell me the weather in Paris for the next 3 days."
PERSON_QUESTION = "Describe a person in JSON with their name and age."
JSON_QUESTION = "Reply with a JSON object that has a key 'answer' whose value is the word Test."
# Short outputs keep the feature checks cheap on slow engines; long enough for a stop list and logprobs.
SHORT_TOKENS = 8

# The tools are `strict`, as OpenAI's function calling asks for calls that must match their parameters: without it,
# neither OpenAI nor vLLM (its default --tool-strict-level) promises schema-valid arguments, and the checks below
# demand them.
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time now in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TOOLS: Mapping[str, dict[str, Any]] = {"get_weather": WEATHER, "get_time": TIME}
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def named_tool(contract: Contract, **extra: Any) -> dict[str, Any]:
    """A chat request that must call get_weather (tool_choice names it), at temperature 0."""
    choice = {"type": "function", "function": {"name": "get_weather"}}
    return contract.body("chat", WEATHER_QUESTION, tools=[WEATHER, TIME], tool_choice=choice, **extra)


def required_tool(contract: Contract, **extra: Any) -> dict[str, Any]:
    """A chat request that must call one of the tools or more (tool_choice required)."""
    return contract.body("chat", WEATHER_QUESTION, tools=[WEATHER, TIME], tool_choice="required", **extra)


def json_mode(contract: Contract, **extra: Any) -> dict[str, Any]:
    return contract.body("chat", JSON_QUESTION, response_format={"type": "json_object"}, **extra)


def json_schema(contract: Contract, **extra: Any) -> dict[str, Any]:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    return contract.body("chat", PERSON_QUESTION, response_format=fmt, **extra)


def choices(contract: Contract, **extra: Any) -> dict[str, Any]:
    """n = 2 while sampling: several choices of one greedy decoding are the same text, and vLLM refuses n > 1 at
    temperature 0 ("n must be 1 when using greedy sampling"), which would read as n not offered at all."""
    return contract.body("chat", COUNTING, n=2, max_tokens=SHORT_TOKENS, temperature=1, seed=7, **extra)


def chat_logprobs(contract: Contract, **extra: Any) -> dict[str, Any]:
    return contract.body("chat", COUNTING, max_tokens=SHORT_TOKENS, logprobs=True, top_logprobs=2, **extra)


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    label: str  # what the README's matrix calls it
    probe: Callable[[Contract], dict[str, Any]] | None  # the first request, or None: not optional


FEATURES: tuple[Feature, ...] = (
    Feature("max_completion_tokens", "`max_completion_tokens` (and its precedence over `max_tokens`)", None),
    Feature("stop_list", "`stop` as a list", None),
    Feature("n", "`n` > 1, streamed and not", choices),
    Feature("logprobs", "`logprobs` / `top_logprobs`", chat_logprobs),
    Feature("json_mode", "JSON mode (`response_format: json_object`)", json_mode),
    Feature("json_schema", "JSON schema (`response_format: json_schema`)", json_schema),
    Feature("tools", "tools: named, required and none; ids; streamed calls", named_tool),
    Feature("seed", "`seed` reproducibility", None),
)
BY_NAME: Mapping[str, Feature] = {f.name: f for f in FEATURES}


def _refusal(reply: Reply) -> str | None:
    """The envelope's message when `reply` is a 4xx in the error envelope (the feature is refused), else None."""
    if not 400 <= reply.status < 500 or reply.status in (401, 403, 404, 429):
        return None  # a key, model or limit problem says nothing about the feature
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


class Features:
    """The probes, each sent once per session; the checks of a feature start from its probe's reply."""

    def __init__(self, api: Api, contract: Contract) -> None:
        self.api = api
        self.contract = contract
        self._replies: dict[str, Reply] = {}

    def reply(self, name: str) -> Reply:
        """The probe's reply, which must have been accepted: a refusal skips the check as not offered."""
        feature = BY_NAME[name]
        assert feature.probe is not None, f"{name} is not an optional feature"
        if name not in self._replies:
            self._replies[name] = self.api.post(PATHS["chat"], feature.probe(self.contract))
        reply = self._replies[name]
        if (message := _refusal(reply)) is not None:
            pytest.skip(f"{NOT_OFFERED}: {name} was refused with HTTP {reply.status}: {message}")
        assert reply.status == 200, f"the {name} request failed: {reply.describe()}"
        return reply

    def body(self, name: str) -> dict[str, Any]:
        """The probe's JSON body (the feature offered and the request answered 200)."""
        body = self.reply(name).json()
        assert isinstance(body, dict), f"the {name} response is not a JSON object: {body!r}"
        return body
