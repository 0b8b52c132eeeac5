"""The vllm engine on the embedded model, driven directly (no HTTP): templates, tokens, sampling, guided JSON,
logprobs, aborts.

One engine serves the whole session (starting vLLM takes about a minute on CPU); every test runs on the
session's event loop, which vLLM's output handler is bound to.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from reference_server.engines.base import Delta, EngineStats, Message, SamplingOptions, StructuredOutput
from reference_server.engines.embedded_model import SERVED_MODEL_ID, ensure_embedded_model
from reference_server.engines.vllm_engine import EngineRequestRejectedError, VllmEngine
from reference_server.engines.vllm_options import VllmOptions

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="session")]

MODEL = SERVED_MODEL_ID
BOS = "<|im_start|>"
STATS_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def model_folder() -> Path:
    return ensure_embedded_model()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(model_folder: Path) -> AsyncIterator[VllmEngine]:
    options = VllmOptions(
        model=str(model_folder),
        served_model_name=SERVED_MODEL_ID,
        max_model_len=2048,
        enforce_eager=True,
        gpu_memory_utilization=0.3,
    )
    engine = VllmEngine(options)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@pytest.fixture(scope="session")
def hf_tokenizer(model_folder: Path) -> Any:
    """The converted folder's tokenizer loaded on its own, as a check on what the engine counts."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_folder)


async def collect(engine: VllmEngine, request_id: str, text: str, sampling: SamplingOptions) -> list[Delta]:
    prompt = engine.tokenize(MODEL, text)
    return [d async for d in engine.generate(request_id, MODEL, prompt, sampling)]


def joined(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def chat(engine: VllmEngine, content: str) -> str:
    return engine.apply_chat_template(MODEL, [Message("user", content)])


async def wait_for_stats(engine: VllmEngine, condition: Callable[[EngineStats], bool]) -> EngineStats:
    deadline = time.monotonic() + STATS_TIMEOUT_S
    while True:
        stats = engine.stats()
        if condition(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


def idle(stats: EngineStats) -> bool:
    return stats.running == 0 and stats.waiting == 0


async def test_model_card_names_the_served_model(engine: VllmEngine) -> None:
    (card,) = engine.models
    assert card.id == SERVED_MODEL_ID
    assert card.max_model_len == 2048


async def test_chat_template_renders_chatml_with_generation_prompt(engine: VllmEngine) -> None:
    rendered = engine.apply_chat_template(MODEL, [Message("system", "Be brief."), Message("user", "Hi!")])
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    )


async def test_rendered_chat_tokenizes_with_exactly_one_bos(engine: VllmEngine, hf_tokenizer: Any) -> None:
    prompt = engine.tokenize(MODEL, chat(engine, "Hello"))
    bos_id = hf_tokenizer.convert_tokens_to_ids(BOS)
    assert prompt.token_ids[0] == bos_id
    assert prompt.token_ids[1] != bos_id
    # The system turn, the user turn and the generation prompt each open with it once.
    assert list(prompt.token_ids).count(bos_id) == 3


async def test_completion_prompt_gets_no_added_tokens(engine: VllmEngine, hf_tokenizer: Any) -> None:
    prompt = engine.tokenize(MODEL, "The quick brown fox")
    assert list(prompt.token_ids) == hf_tokenizer("The quick brown fox", add_special_tokens=False).input_ids
    assert hf_tokenizer.convert_tokens_to_ids(BOS) not in prompt.token_ids


async def test_greedy_generation_is_deterministic(engine: VllmEngine) -> None:
    sampling = SamplingOptions(max_tokens=24, temperature=0.0)
    first = await collect(engine, "greedy-1", chat(engine, "Name three colours."), sampling)
    second = await collect(engine, "greedy-2", chat(engine, "Name three colours."), sampling)
    assert joined(first) == joined(second)
    assert joined(first).strip()
    assert [d.finish_reason for d in first][-1] in ("stop", "length")
    assert sum(d.token_count for d in first) == sum(d.token_count for d in second)


async def test_max_tokens_ends_with_length_after_exactly_that_many_tokens(engine: VllmEngine) -> None:
    deltas = await collect(
        engine,
        "length",
        chat(engine, "Write a long story about a dragon."),
        SamplingOptions(max_tokens=7, temperature=0),
    )
    assert sum(d.token_count for d in deltas) == 7
    assert deltas[-1].finish_reason == "length"
    assert all(d.finish_reason is None for d in deltas[:-1])


async def test_stop_string_truncates_the_text(engine: VllmEngine) -> None:
    text = chat(engine, "Write a long story about a dragon.")
    full = joined(await collect(engine, "stop-full", text, SamplingOptions(max_tokens=40, temperature=0)))
    stop = full[20:24]
    assert len(stop) == 4
    deltas = await collect(engine, "stop-cut", text, SamplingOptions(max_tokens=40, temperature=0, stop=(stop,)))
    assert joined(deltas) == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"


async def test_token_counts_match_the_tokenizer(engine: VllmEngine, hf_tokenizer: Any) -> None:
    text = chat(engine, "Write a long story about a dragon.")
    prompt = engine.tokenize(MODEL, text)
    assert len(prompt.token_ids) == len(hf_tokenizer(text, add_special_tokens=False).input_ids)
    deltas = await collect(engine, "usage", text, SamplingOptions(max_tokens=16, temperature=0))
    assert deltas[-1].finish_reason == "length"
    generated = joined(deltas)
    assert sum(d.token_count for d in deltas) == len(hf_tokenizer(generated, add_special_tokens=False).input_ids)


WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 16}}, "required": ["zone"]}


async def guided(engine: VllmEngine, request_id: str, content: str, schema: dict[str, Any] | None) -> Any:
    sampling = SamplingOptions(max_tokens=120, temperature=0, structured=StructuredOutput(schema))
    deltas = await collect(engine, request_id, chat(engine, content), sampling)
    assert deltas[-1].finish_reason == "stop", joined(deltas)  # the grammar ended the output, not the limit
    return json.loads(joined(deltas))


async def test_json_schema_output_validates(engine: VllmEngine) -> None:
    """What a named tool choice asks for: the function's parameters as the schema of the whole output."""
    arguments = await guided(engine, "schema", "What is the weather in Paris this week?", WEATHER)
    jsonschema.validate(arguments, WEATHER)


async def test_a_schema_over_several_functions_names_one_and_its_arguments_validate(engine: VllmEngine) -> None:
    """What `tool_choice: required` asks for: one of the functions by name, with arguments matching its schema."""
    functions = {"get_weather": WEATHER, "get_time": TIME}
    schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for name, parameters in functions.items()
        ]
    }
    call = await guided(engine, "required", "What time is it in Tokyo?", schema)
    jsonschema.validate(call, schema)
    jsonschema.validate(call["arguments"], functions[call["name"]])


async def test_json_mode_output_is_one_json_object(engine: VllmEngine) -> None:
    # A 135M model rambles on in JSON as in prose (asked for '{"answer": "yes"}' it invents a character sheet that
    # outruns any limit); a question whose answer is its own example is closed at once.
    value = await guided(engine, "json-mode", 'What is 2+2? Reply as JSON: {"result": 4}', None)
    assert isinstance(value, dict) and value


async def test_logprobs_give_each_token_its_logprob_and_the_k_best_alternatives(engine: VllmEngine) -> None:
    text = chat(engine, "Name three colours.")
    deltas = await collect(engine, "logprobs", text, SamplingOptions(max_tokens=12, temperature=0, logprobs=3))
    entries = [entry for d in deltas for entry in d.logprobs]
    assert all(len(d.logprobs) == d.token_count for d in deltas)
    assert len(entries) == 12
    assert "".join(e.token for e in entries) == joined(deltas)
    for entry in entries:
        assert len(entry.top) == 3
        assert [lp for _, lp in entry.top] == sorted((lp for _, lp in entry.top), reverse=True)
        # Greedy: the sampled token is among the most likely (two tokens may tie; vLLM orders ties its own way).
        assert entry.logprob == entry.top[0][1] and (entry.token, entry.logprob) in entry.top
        assert entry.logprob <= 0
    bare = await collect(engine, "logprobs-0", text, SamplingOptions(max_tokens=4, temperature=0, logprobs=0))
    assert [(e.token, e.logprob) for d in bare for e in d.logprobs] == [(e.token, e.logprob) for e in entries[:4]]
    assert all(e.top == () for d in bare for e in d.logprobs)
    plain = await collect(engine, "no-logprobs", text, SamplingOptions(max_tokens=4, temperature=0))
    assert all(d.logprobs == () for d in plain)


async def test_what_vllm_refuses_in_logprobs_or_schema_fails_before_streaming(engine: VllmEngine) -> None:
    prompt = engine.tokenize(MODEL, chat(engine, "Hi"))
    with pytest.raises(EngineRequestRejectedError, match="logprobs"):
        engine.generate("too-many-logprobs", MODEL, prompt, SamplingOptions(max_tokens=4, logprobs=21))
    unsupported = StructuredOutput({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}})
    with pytest.raises(EngineRequestRejectedError, match=r"\$defs/missing"):
        engine.generate("bad-schema", MODEL, prompt, SamplingOptions(max_tokens=4, structured=unsupported))
    assert idle(engine.stats())


async def test_abort_mid_stream_frees_the_engine(engine: VllmEngine) -> None:
    before = engine.stats()
    sampling = SamplingOptions(max_tokens=1500, temperature=1.0, ignore_eos=True, seed=1)
    stream = engine.generate("abort-me", MODEL, engine.tokenize(MODEL, chat(engine, "Count to a million.")), sampling)
    received = 0
    async for delta in stream:
        received += delta.token_count
        if received >= 3:
            break
    # vLLM's scheduler reports the request while it decodes; the wrapper's bookkeeping is not what is read here.
    busy = await wait_for_stats(engine, lambda s: s.running == 1)
    assert busy.running == 1

    await engine.abort("abort-me")

    after = await wait_for_stats(engine, idle)
    assert (after.running, after.waiting) == (0, 0)
    assert after.aborted_total == before.aborted_total + 1
    assert after.finished_total == before.finished_total
    assert after.extra["frontend_unfinished"] == 0
    assert isinstance(stream, AsyncGenerator)
    await stream.aclose()


async def test_closing_the_stream_without_abort_also_frees_the_engine(engine: VllmEngine) -> None:
    before = engine.stats()
    sampling = SamplingOptions(max_tokens=1500, temperature=1.0, ignore_eos=True, seed=2)
    stream = engine.generate("close-me", MODEL, engine.tokenize(MODEL, chat(engine, "Count to a million.")), sampling)
    await anext(stream)
    await wait_for_stats(engine, lambda s: s.running == 1)

    assert isinstance(stream, AsyncGenerator)
    await stream.aclose()

    after = await wait_for_stats(engine, idle)
    assert (after.running, after.waiting) == (0, 0)
    assert after.aborted_total == before.aborted_total + 1


async def test_abort_of_a_finished_request_is_a_no_op(engine: VllmEngine) -> None:
    await collect(engine, "done", chat(engine, "Hi"), SamplingOptions(max_tokens=4, temperature=0))
    before = engine.stats()
    await engine.abort("done")
    await engine.abort("never-existed")
    after = engine.stats()
    assert (after.finished_total, after.aborted_total) == (before.finished_total, before.aborted_total)


async def test_concurrent_requests_all_finish(engine: VllmEngine) -> None:
    sampling = SamplingOptions(max_tokens=8, temperature=0.7, seed=3, ignore_eos=True)
    results = await asyncio.gather(
        *(collect(engine, f"batch-{i}", chat(engine, f"Say {i}."), sampling) for i in range(8))
    )
    assert [sum(d.token_count for d in r) for r in results] == [8] * 8
    assert all(r[-1].finish_reason == "length" for r in results)
    assert idle(await wait_for_stats(engine, idle))


async def test_prompt_longer_than_the_context_fails_before_streaming(engine: VllmEngine) -> None:
    prompt = engine.tokenize(MODEL, "word " * 2100)
    with pytest.raises(EngineRequestRejectedError, match="maximum context length"):
        engine.generate("too-long", MODEL, prompt, SamplingOptions(max_tokens=4))
    assert idle(engine.stats())


async def test_a_prompt_sharing_a_prefix_reports_vllms_cached_tokens(engine: VllmEngine) -> None:
    shared = "The history of the city begins with a small harbour on the river. " * 12
    sampling = SamplingOptions(max_tokens=2, temperature=0, ignore_eos=True)
    first = await collect(engine, "cache-1", chat(engine, shared + "What came first?"), sampling)
    second = await collect(engine, "cache-2", chat(engine, shared + "And what came next?"), sampling)
    found = [deltas[0].cached_tokens for deltas in (first, second)]
    assert found[0] is not None and found[1] is not None
    prompt = engine.tokenize(MODEL, chat(engine, shared))
    # The second found whole blocks of the shared part, up to (not beyond) it, in vLLM's own count.
    assert found[1] > found[0] and found[1] <= len(prompt.token_ids)
    assert found[1] >= len(prompt.token_ids) // 2
