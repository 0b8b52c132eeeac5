"""The simulator's rich output, streamed by the engine: structured output, tool calls, logprobs and reasoning."""

from __future__ import annotations

import json
import math
from typing import Any

from jsonschema.validators import validator_for

from reference_server.cli import build_parser, config_from_args
from reference_server.config import SimOptions
from reference_server.engines.base import Delta, Message, SamplingOptions, StructuredOutput, Tool
from reference_server.engines.sim import SimEngine
from reference_server.engines.sim.text import plan
from reference_server.engines.sim.tokenizer import SimTokenizer

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"
WEATHER = Tool(
    "get_weather",
    "The weather now",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}, "days": {"type": "integer"}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
TIME = Tool("get_time")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 30},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["title", "rating", "tags"],
    "additionalProperties": False,
}


def engine(**options: Any) -> SimEngine:
    return SimEngine((LLAMA3,), SimOptions(ttft_ms=0, itl_ms=0, **options))


async def run(sim: SimEngine, user: str, sampling: SamplingOptions) -> list[Delta]:
    prompt = sim.tokenize(LLAMA3, sim.apply_chat_template(LLAMA3, [Message("user", user)]))
    return [d async for d in sim.generate("r", LLAMA3, prompt, sampling)]


def content(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def tokens(text: str) -> int:
    return SimTokenizer(()).count(text)


async def test_json_mode_output_is_one_object_and_each_delta_one_token() -> None:
    for seed in range(20):
        sampling = SamplingOptions(max_tokens=4000, temperature=0.7, seed=seed, structured=StructuredOutput())
        deltas = await run(engine(), "Answer in JSON.", sampling)
        assert isinstance(json.loads(content(deltas)), dict)
        assert [d.finish_reason for d in deltas][-2:] == [None, "stop"]
        assert all(d.token_count == 1 for d in deltas)
        assert tokens(content(deltas)) == len(deltas)
    json_mode = SamplingOptions(max_tokens=4000, temperature=0, structured=StructuredOutput())
    total = {mean: 0 for mean in (20, 400)}
    for mean in total:
        for i in range(10):
            total[mean] += len(await run(engine(output_len_mean=mean), f"prompt {i}", json_mode))
    assert total[400] > 5 * total[20]  # a JSON-mode object is about as long as a plain answer would be


async def test_a_schema_output_validates_and_is_cut_only_by_max_tokens() -> None:
    validator = validator_for(SCHEMA)(SCHEMA)
    guided = StructuredOutput(SCHEMA)
    full = await run(engine(), "Review it.", SamplingOptions(max_tokens=4000, temperature=0, structured=guided))
    validator.validate(json.loads(content(full)))
    assert full[-1].finish_reason == "stop" and tokens(content(full)) == len(full)
    forced = SamplingOptions(max_tokens=4000, temperature=0, structured=guided, ignore_eos=True, min_tokens=3000)
    assert content(await run(engine(), "Review it.", forced)) == content(full)  # guided decoding ends with the value
    cut = await run(engine(), "Review it.", SamplingOptions(max_tokens=5, temperature=0, structured=guided))
    assert (len(cut), cut[-1].finish_reason) == (5, "length")
    assert content(full).startswith(content(cut)) and tokens(content(cut)) == 5


async def test_a_named_tool_is_called_with_arguments_of_its_schema() -> None:
    sampling = SamplingOptions(max_tokens=4000, temperature=0, tools=(WEATHER, TIME))
    text = content(await run(engine(), "What's the weather in Oslo? Use Get_Weather.", sampling))
    assert text.startswith("<tool_call>") and text.endswith("</tool_call>")
    call = json.loads(text.removeprefix("<tool_call>").removesuffix("</tool_call>"))
    assert call["name"] == "get_weather"
    validator_for(WEATHER.parameters)(WEATHER.parameters).validate(call["arguments"])
    both = content(await run(engine(), "get_time first, then get_weather", sampling))
    names = [json.loads(c.split("</tool_call>")[0])["name"] for c in both.split("<tool_call>")[1:]]
    assert names == ["get_time", "get_weather"]
    assert json.loads(both.split("\n")[0].removeprefix("<tool_call>").removesuffix("</tool_call>"))["arguments"] == {}


async def test_without_a_named_tool_the_answer_is_the_plain_text() -> None:
    sim = engine()
    prompt = sim.tokenize(LLAMA3, sim.apply_chat_template(LLAMA3, [Message("user", "Tell me the weather.")]))
    sampling = SamplingOptions(max_tokens=4000, temperature=0, tools=(WEATHER,))
    deltas = [d async for d in sim.generate("r", LLAMA3, prompt, sampling)]
    assert content(deltas) == "".join(plan(LLAMA3, prompt.text, sampling, SimOptions().output_len_mean).pieces)
    assert "<tool_call>" not in content(deltas)


async def test_logprobs_have_the_shape_asked_for_and_leave_the_text_alone() -> None:
    for temperature, seed in ((0.0, None), (1.0, 3)):
        plain = await run(engine(), "Hi", SamplingOptions(max_tokens=40, temperature=temperature, seed=seed))
        sampling = SamplingOptions(max_tokens=40, temperature=temperature, seed=seed, logprobs=5)
        deltas = await run(engine(), "Hi", sampling)
        assert deltas == await run(engine(), "Hi", sampling)  # deterministic per request
        assert [d.text for d in deltas] == [d.text for d in plain]
        assert all(d.logprobs == () for d in plain)
        for delta in deltas:
            (entry,) = delta.logprobs
            assert entry.token == delta.text and entry.logprob <= 0
            assert len(entry.top) == 5 and len({t for t, _ in entry.top}) == 5
            values = [lp for _, lp in entry.top]
            assert values == sorted(values, reverse=True) and sum(math.exp(v) for v in values) <= 1
            if temperature == 0:
                assert entry.top[0] == (entry.token, entry.logprob)
            assert all(lp == entry.logprob for t, lp in entry.top if t == entry.token)
    sampled = await run(engine(), "Hi", SamplingOptions(max_tokens=200, temperature=1.0, seed=9, logprobs=3))
    assert any(d.logprobs[0].top[0][0] != d.text for d in sampled)  # sampling does not always take the best
    bare = await run(engine(), "Hi", SamplingOptions(max_tokens=3, temperature=0, logprobs=0))
    assert [d.logprobs[0].top for d in bare] == [(), (), ()]


async def test_reasoning_comes_first_and_counts_toward_max_tokens() -> None:
    thinker = engine(reasoning_tokens=6)
    sampling = SamplingOptions(max_tokens=20, temperature=0, ignore_eos=True, logprobs=1)
    deltas = await run(thinker, "Hi", sampling)
    assert len(deltas) == 20 and deltas[-1].finish_reason == "length"
    assert all(d.reasoning and d.text == "" for d in deltas[:6])
    assert all(d.text and not d.reasoning for d in deltas[6:])
    assert tokens("".join(d.reasoning for d in deltas)) == 6 and tokens(content(deltas)) == 14
    assert [d.logprobs[0].token for d in deltas] == [d.reasoning or d.text for d in deltas]
    answer_only = await run(engine(), "Hi", SamplingOptions(max_tokens=14, temperature=0, ignore_eos=True))
    assert content(deltas) == content(answer_only)
    short = await run(thinker, "Hi", SamplingOptions(max_tokens=4, temperature=0))
    assert [(bool(d.reasoning), d.finish_reason) for d in short] == [(True, None)] * 3 + [(True, "length")]


async def test_reasoning_then_a_guided_value() -> None:
    deltas = await run(engine(reasoning_tokens=3), "x", SamplingOptions(4000, 0, structured=StructuredOutput(SCHEMA)))
    assert all(d.reasoning for d in deltas[:3])
    validator_for(SCHEMA)(SCHEMA).validate(json.loads(content(deltas)))


def test_the_command_line_sets_reasoning_tokens() -> None:
    parse = build_parser().parse_args
    assert config_from_args(parse(["--api-key", "k", "--reasoning-tokens", "7"])).sim.reasoning_tokens == 7
    assert config_from_args(parse(["--api-key", "k"])).sim.reasoning_tokens == 0
