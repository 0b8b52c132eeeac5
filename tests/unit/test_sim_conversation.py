"""Conversations with tool calls through the simulator's templates, and the rule for when it calls a tool."""

from __future__ import annotations

import pytest

from reference_server.config import SimOptions
from reference_server.engines.base import Message, Tool
from reference_server.engines.sim import SimEngine
from reference_server.engines.sim.catalog import CATALOG
from reference_server.engines.sim.conversation import last_user_text, template_messages
from reference_server.engines.sim.hermes import call_text, named_tools

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOL_ROUND = [
    Message("user", "Weather in Paris? Use get_weather."),
    Message("assistant", "", tool_calls=(CALL, {**CALL, "id": "call_2"})),
    Message("tool", "18 C", tool_call_id="call_1"),
    Message("tool", "19 C", tool_call_id="call_2"),
]
# One model of each template family.
FAMILY_MODELS = {m.family: m.id for m in reversed(CATALOG)}
ENGINE = SimEngine(tuple(FAMILY_MODELS.values()), SimOptions())


def test_calls_and_results_are_written_out_and_results_share_one_user_turn() -> None:
    assert template_messages(TOOL_ROUND) == [
        {"role": "user", "content": "Weather in Paris? Use get_weather."},
        {
            "role": "assistant",
            "content": '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        },
        {"role": "user", "content": "<tool_response>\n18 C\n</tool_response>\n<tool_response>\n19 C\n</tool_response>"},
    ]
    spoken = template_messages([Message("assistant", "Let me look.", tool_calls=(CALL,)), Message("tool", "x")])
    assert spoken[0]["content"] == "Let me look.\n" + call_text("get_weather", {"city": "Paris"})
    plain = [Message("system", "Be brief."), Message("user", "Hi")]
    assert template_messages(plain) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_arguments_that_are_not_json_are_rendered_as_sent() -> None:
    broken = {"function": {"name": "f", "arguments": "{oops"}}
    (turn,) = template_messages([Message("assistant", "", tool_calls=(broken,))])
    assert turn["content"] == '<tool_call>{"name": "f", "arguments": "{oops"}</tool_call>'


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
def test_every_family_renders_a_tool_round_and_reads_the_user_back(family: str) -> None:
    model = FAMILY_MODELS[family]  # type: ignore[index]
    follow_up = [*TOOL_ROUND, Message("user", "And get_time in Rome?")]
    first = ENGINE.apply_chat_template(model, TOOL_ROUND[:1])
    after_results = ENGINE.apply_chat_template(model, TOOL_ROUND)
    asked_again = ENGINE.apply_chat_template(model, follow_up)
    assert "<tool_response>\n19 C\n</tool_response>" in after_results
    assert last_user_text(family, first).strip() == "Weather in Paris? Use get_weather."  # type: ignore[arg-type]
    assert last_user_text(family, after_results).strip() == ""  # type: ignore[arg-type]
    assert last_user_text(family, asked_again).strip() == "And get_time in Rome?"  # type: ignore[arg-type]


def test_the_llama2_system_prompt_is_not_the_user_s_words() -> None:
    prompt = ENGINE.apply_chat_template(
        FAMILY_MODELS["llama2"], [Message("system", "get_weather"), Message("user", "Hi")]
    )
    assert last_user_text("llama2", prompt) == "Hi"
    assert last_user_text("llama3", "no turns at all") == ""


def test_tools_are_called_when_named_as_whole_words_in_order_of_mention() -> None:
    weather, time, dash = Tool("get_weather"), Tool("get_time"), Tool("look-up")
    tools = (weather, time, dash)
    assert named_tools(tools, "What is the weather? Use GET_WEATHER please.") == [weather]
    assert named_tools(tools, "get_time, then get_weather") == [time, weather]
    assert named_tools(tools, "get_weathers or my_get_time or get_time2") == []
    assert named_tools(tools, "please (look-up) this") == [dash]
    assert named_tools(tools, "nothing to call") == []
