"""The simulator's parts: tokenizer, planned text, batching model and engine."""

from __future__ import annotations

import asyncio

import pytest

from reference_server.config import SimOptions
from reference_server.engines.base import Message, SamplingOptions
from reference_server.engines.sim import SimEngine
from reference_server.engines.sim.batch import BatchModel
from reference_server.engines.sim.text import plan
from reference_server.engines.sim.tokenizer import SimTokenizer

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"


def test_tokenizer_is_lossless_and_counts_special_tokens_once() -> None:
    tok = SimTokenizer(["<|begin_of_text|>", "<|eot_id|>"])
    text = "<|begin_of_text|>Hello,  world!\n\n<|eot_id|>"
    assert "".join(tok.pieces(text)) == text
    assert tok.pieces(text)[:4] == ["<|begin_of_text|>", "Hello", ",", " "]
    assert tok.pieces(text).count("<|eot_id|>") == 1
    assert tok.count("<|begin_of_text|>x") == tok.count("x") + 1
    assert tok.encode(text) == tok.encode(text)


def test_plans_are_deterministic_at_temperature_zero_and_for_a_seed() -> None:
    greedy = SamplingOptions(max_tokens=500, temperature=0)
    assert plan("m", "p", greedy, 50) == plan("m", "p", greedy, 50)
    assert plan("m", "p", greedy, 50) != plan("m", "q", greedy, 50)
    seeded = SamplingOptions(max_tokens=500, temperature=1, seed=7)
    assert plan("m", "p", seeded, 50) == plan("m", "p", seeded, 50)


def test_max_tokens_ignore_eos_and_min_tokens() -> None:
    cut = plan("m", "p", SamplingOptions(max_tokens=3, temperature=0), 1000)
    assert (len(cut.pieces), cut.finish_reason) == (3, "length")
    forced = plan("m", "p", SamplingOptions(max_tokens=777, temperature=0, ignore_eos=True), 10)
    assert (len(forced.pieces), forced.finish_reason) == (777, "length")
    long = plan("m", "p", SamplingOptions(max_tokens=5000, temperature=0, min_tokens=600), 10)
    assert len(long.pieces) >= 600 and long.finish_reason == "stop"


def test_stop_string_cuts_inside_the_token_where_it_starts() -> None:
    full = plan("m", "p", SamplingOptions(max_tokens=60, temperature=0, ignore_eos=True), 10)
    text = "".join(full.pieces)
    stop = text[20:26]
    stopped = plan("m", "p", SamplingOptions(max_tokens=60, temperature=0, ignore_eos=True, stop=(stop,)), 10)
    assert "".join(stopped.pieces) == text[: text.index(stop)]
    assert stopped.finish_reason == "stop"


async def test_batch_queues_beyond_max_num_seqs_in_fifo_order() -> None:
    batch = BatchModel(SimOptions(max_num_seqs=1))
    await batch.enter()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await batch.enter()
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert (batch.running, batch.waiting) == (1, 3)
    tasks[1].cancel()
    for _ in range(2):  # the first holder leaves, then waiter 0 does; the cancelled waiter 1 is passed over
        batch.leave()
        await asyncio.sleep(0)
    await asyncio.gather(tasks[0], tasks[2], return_exceptions=True)
    assert order == [0, 2] and (batch.running, batch.waiting) == (1, 0)
    batch.leave()
    assert batch.running == 0


def test_inter_token_latency_grows_with_the_batch() -> None:
    batch = BatchModel(SimOptions(itl_ms=10, itl_batch_factor=0.1))
    batch.running = 1
    one = batch.inter_token_delay_s()
    batch.running = 11
    assert (one, batch.inter_token_delay_s()) == pytest.approx((0.010, 0.020))
    assert batch.first_token_delay_s(100) == pytest.approx((25 + 0.05 * 100) / 1000)


async def test_engine_streams_the_plan_and_counts_finished_and_aborted() -> None:
    engine = SimEngine((LLAMA3,), SimOptions(ttft_ms=0, itl_ms=0))
    prompt = engine.tokenize(LLAMA3, engine.apply_chat_template(LLAMA3, [Message("user", "Hi")]))
    assert (
        prompt.text.startswith("<|begin_of_text|>")
        and len(prompt.token_ids) == engine.tokenize(LLAMA3, prompt.text).token_ids.__len__()
    )
    deltas = [d async for d in engine.generate("r1", LLAMA3, prompt, SamplingOptions(max_tokens=4, ignore_eos=True))]
    assert [d.token_count for d in deltas] == [1, 1, 1, 1]
    assert [d.finish_reason for d in deltas] == [None, None, None, "length"]
    generator = engine.generate("r2", LLAMA3, prompt, SamplingOptions(max_tokens=50, ignore_eos=True))
    await generator.__anext__()
    assert engine.stats().running == 1
    await engine.abort("r2")
    assert [d async for d in generator] == []
    stats = engine.stats()
    assert (stats.running, stats.finished_total, stats.aborted_total) == (0, 1, 1)
