"""The vllm engine: its translations to and from vLLM, and its failure without vLLM (its options: test_vllm_options).

Generation is in tests/integration; what needs vLLM's classes (not its engine) is marked `vllm` and runs here.
"""

from __future__ import annotations

import json
import sys
from types import MappingProxyType
from typing import Any

import pytest

from reference_server.engines.base import Message, SamplingOptions, StructuredOutput, Tool
from reference_server.engines.hf_template import template_messages, template_tools
from reference_server.engines.vllm_engine import VllmEngine, VllmUnavailableError
from reference_server.engines.vllm_sampling import MIN_LOGPROB, sampling_params, token_logprobs


def test_missing_vllm_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(VllmUnavailableError, match=r"pip install '\.\[cpu\]'.*pip install '\.\[gpu\]'"):
        VllmEngine()


def test_tool_calls_in_the_history_reach_the_template_with_arguments_as_objects() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"city": "Rome"}'}}
    broken = {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": '{"city": '}}
    conversation = template_messages(
        [
            Message("user", "Weather?"),
            Message("assistant", "", tool_calls=(call, broken)),
            Message("tool", "sunny", tool_call_id="call_1"),
        ]
    )
    assert conversation == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"city": "Rome"}}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
    ]
    assert call["function"] == {"name": "f", "arguments": '{"city": "Rome"}'}  # the caller's copy is untouched


def test_tools_reach_the_template_in_openais_request_shape() -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    assert template_tools(()) is None
    assert template_tools([Tool("weather", "Current weather.", params), Tool("now")]) == [
        {"type": "function", "function": {"name": "weather", "description": "Current weather.", "parameters": params}},
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]


@pytest.mark.vllm
def test_sampling_options_map_onto_streaming_sampling_params() -> None:
    from vllm.sampling_params import RequestOutputKind

    params = sampling_params(
        SamplingOptions(
            max_tokens=12,
            temperature=0.5,
            top_p=0.9,
            stop=("END", "\n\n"),
            seed=7,
            presence_penalty=0.25,
            frequency_penalty=-0.5,
            ignore_eos=True,
            min_tokens=3,
        )
    )
    assert params.output_kind == RequestOutputKind.DELTA
    assert (params.max_tokens, params.min_tokens, params.seed, params.n) == (12, 3, 7, 1)
    assert (params.temperature, params.top_p) == (0.5, 0.9)
    assert (params.presence_penalty, params.frequency_penalty) == (0.25, -0.5)
    assert params.stop == ["END", "\n\n"]
    assert params.ignore_eos is True


@pytest.mark.vllm
def test_no_stop_strings_means_none() -> None:
    assert not sampling_params(SamplingOptions(max_tokens=1)).stop


@pytest.mark.vllm
def test_structured_output_becomes_vllms_json_schema_or_json_mode() -> None:
    schema = MappingProxyType({"type": "object", "properties": MappingProxyType({"a": {"type": "integer"}})})
    guided = sampling_params(SamplingOptions(max_tokens=5, structured=StructuredOutput(schema))).structured_outputs
    assert json.loads(guided.json) == {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert guided.json_object is None
    json_mode = sampling_params(SamplingOptions(max_tokens=5, structured=StructuredOutput())).structured_outputs
    assert (json_mode.json, json_mode.json_object) == (None, True)
    plain = sampling_params(SamplingOptions(max_tokens=5))
    assert (plain.structured_outputs, plain.logprobs) == (None, None)
    assert sampling_params(SamplingOptions(max_tokens=5, logprobs=0)).logprobs == 0


def logprob(value: float, rank: int, text: str) -> Any:
    from vllm.logprobs import Logprob

    return Logprob(logprob=value, rank=rank, decoded_token=text)


@pytest.mark.vllm
def test_logprobs_are_the_sampled_token_and_the_best_alternatives_best_first() -> None:
    # As vLLM builds them: the sampled token first (with its vocabulary rank), then ranks 1..k.
    sampled_outside_top = {7: logprob(-3.0, 5, " c"), 1: logprob(-0.5, 1, " a"), 2: logprob(-1.0, 2, " b")}
    sampled_in_top = {2: logprob(-1.0, 2, " b"), 1: logprob(-0.5, 1, " a")}
    floor = {1: logprob(float("-inf"), 1, " a")}
    out = token_logprobs([7, 2, 1], [sampled_outside_top, sampled_in_top, floor], 2, decode=str)
    assert [(t.token, t.logprob) for t in out] == [(" c", -3.0), (" b", -1.0), (" a", MIN_LOGPROB)]
    assert out[0].top == ((" a", -0.5), (" b", -1.0))
    assert out[1].top == ((" a", -0.5), (" b", -1.0))
    assert out[2].top == ((" a", MIN_LOGPROB),)
    assert token_logprobs([7], [sampled_outside_top], 0, decode=str)[0].top == ()


@pytest.mark.vllm
def test_a_position_without_the_sampled_token_reports_it_decoded_with_the_floor() -> None:
    (missing,) = token_logprobs([9], [None], 2, decode=lambda token_id: f"<{token_id}>")
    assert (missing.token, missing.logprob, missing.top) == ("<9>", MIN_LOGPROB, ())


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from vllm.tokenizers import get_tokenizer

    from reference_server.engines.embedded_model import ensure_embedded_model

    return get_tokenizer(str(ensure_embedded_model()))


def split_token_by_token(tokenizer: Any, parser: str, text: str) -> tuple[str, str]:
    from reference_server.engines.vllm_reasoning import ReasoningSplitter

    prompt = tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    stream = ReasoningSplitter(parser, tokenizer).stream(prompt)
    ids = tokenizer.encode(text, add_special_tokens=False)
    parts = [stream.split(tokenizer.decode([t]), [t], finished=i == len(ids) - 1) for i, t in enumerate(ids)]
    return "".join(r for r, _ in parts), "".join(a for _, a in parts)


@pytest.mark.vllm
def test_vllms_qwen3_parser_splits_thinking_from_the_answer_across_deltas(tokenizer: Any) -> None:
    text = "<think>Two and two make four.</think>The answer is 4."
    assert split_token_by_token(tokenizer, "qwen3", text) == ("Two and two make four.", "The answer is 4.")
    # Qwen3's templates open the thinking block in the prompt: output that never closes it is all thinking.
    assert split_token_by_token(tokenizer, "qwen3", "Just an answer.") == ("Just an answer.", "")


@pytest.mark.vllm
def test_a_reasoning_parser_is_refused_by_name_or_by_the_tokenizer_it_needs(tokenizer: Any) -> None:
    from reference_server.engines.vllm_reasoning import ReasoningParserError, ReasoningSplitter

    with pytest.raises(ReasoningParserError, match=r"unknown reasoning parser 'no_such'.*deepseek_r1"):
        ReasoningSplitter("no_such", tokenizer)
    # deepseek_r1 needs <think> and </think> as tokens; SmolLM2's vocabulary has neither.
    with pytest.raises(ReasoningParserError, match="deepseek_r1"):
        ReasoningSplitter("deepseek_r1", tokenizer)
