"""The vllm engine with a reasoning parser (`reasoning_parser=qwen3`) on the embedded model, driven directly.

SmolLM2 is no reasoning model, but vLLM's qwen3 parser works on its text: Qwen3's templates open the thinking block
in the prompt, so output is thinking until it writes `</think>`, and the answer after it. The module has its own
engine, small in memory because it may run beside the session's engine of test_vllm_engine.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from reference_server.engines.base import Delta, Message, SamplingOptions
from reference_server.engines.embedded_model import SERVED_MODEL_ID, ensure_embedded_model
from reference_server.engines.vllm_engine import VllmEngine
from reference_server.engines.vllm_options import VllmOptions

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="session")]

MODEL = SERVED_MODEL_ID


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine() -> AsyncIterator[VllmEngine]:
    options = VllmOptions(
        model=str(ensure_embedded_model()),
        served_model_name=SERVED_MODEL_ID,
        max_model_len=1024,
        enforce_eager=True,
        gpu_memory_utilization=0.15,
        reasoning_parser="qwen3",
    )
    engine = VllmEngine(options)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


async def generate(engine: VllmEngine, request_id: str, text: str, max_tokens: int) -> list[Delta]:
    sampling = SamplingOptions(max_tokens=max_tokens, temperature=0)
    return [d async for d in engine.generate(request_id, MODEL, engine.tokenize(MODEL, text), sampling)]


async def test_output_that_never_closes_the_thinking_block_is_all_reasoning(engine: VllmEngine) -> None:
    chat = engine.apply_chat_template(MODEL, [Message("user", "Write a long story about a dragon.")])
    deltas = await generate(engine, "unclosed", chat, 16)
    assert "".join(d.reasoning for d in deltas).strip()
    assert all(d.text == "" for d in deltas)
    assert sum(d.token_count for d in deltas) == 16 and deltas[-1].finish_reason == "length"


async def test_text_after_the_end_of_thinking_is_the_answer(engine: VllmEngine) -> None:
    # The chat model does not write </think> when asked to; a pattern it continues makes it close the block.
    shots = "<think>Let me think.</think>Answer: yes\n<think>Let me think.</think>Answer: no\n"
    deltas = await generate(engine, "closed", shots + "<think>Let me", 10)
    reasoning, answer = "".join(d.reasoning for d in deltas), "".join(d.text for d in deltas)
    assert (reasoning, answer[:7]) == (" think.", "Answer:"), (reasoning, answer)
    assert "</think>" not in answer and sum(d.token_count for d in deltas) == 10
    # Thinking comes first: no reasoning after the first delta of the answer.
    first_answer = next(i for i, d in enumerate(deltas) if d.text)
    assert all(d.reasoning == "" for d in deltas[first_answer + 1 :])
