"""The simulator's prefix cache: whole blocks of a shared prefix are found, never the block of the prompt's last
token, the least recently used go first; the engine reports the cached tokens and skips their prefill."""

from __future__ import annotations

import pytest

from reference_server.config import SimOptions
from reference_server.engines.base import SamplingOptions
from reference_server.engines.sim import SimEngine
from reference_server.engines.sim.batch import BatchModel
from reference_server.engines.sim.prefix_cache import PrefixCache

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"


def test_a_shared_prefix_is_found_block_by_block() -> None:
    cache = PrefixCache(block_size=4, capacity=100)
    assert cache.admit(list(range(10))) == 0  # nothing cached yet; blocks 0-3 and 4-7 are cached after
    assert cache.admit([*range(8), 99, 98, 97]) == 8
    assert cache.admit([*range(6), 55, 56, 57]) == 4  # the second block differs
    assert cache.admit([1, 0, 2, 3, 4]) == 0  # the same tokens in another order are another prefix
    assert (cache.queried_tokens, cache.hit_tokens) == (35, 12)


def test_the_block_of_the_last_token_is_always_computed() -> None:
    cache = PrefixCache(block_size=4, capacity=100)
    cache.admit(list(range(8)))
    assert cache.admit(list(range(8))) == 4  # the same prompt again: its last token is in the second block
    assert cache.admit(list(range(9))) == 8
    assert cache.admit([0, 1, 2]) == 0  # no whole block


def test_the_least_recently_used_blocks_go_first() -> None:
    cache = PrefixCache(block_size=2, capacity=3)
    cache.admit([1, 1, 2, 2, 9])  # blocks a=(1,1), b=a+(2,2)
    cache.admit([3, 3, 9])  # c
    assert len(cache) == 3
    cache.admit([1, 1, 9])  # a used again
    cache.admit([4, 4, 9])  # d: b, the least recently used, goes
    assert len(cache) == 3
    assert cache.admit([1, 1, 2, 2, 9]) == 2  # a still there, b not
    with pytest.raises(ValueError, match="at least 1"):
        PrefixCache(block_size=0, capacity=1)


async def test_the_engine_reports_the_cached_tokens_and_prefills_only_the_rest() -> None:
    options = SimOptions(ttft_ms=0, itl_ms=0, prefill_ms_per_token=0, block_size=16, prefix_cache_blocks=64)
    engine = SimEngine((LLAMA3,), options)
    prompt = engine.tokenize(LLAMA3, "word " * 100)
    sampling = SamplingOptions(max_tokens=3, temperature=0, ignore_eos=True)
    firsts = []
    for n in range(2):
        deltas = [d async for d in engine.generate(f"r{n}", LLAMA3, prompt, sampling)]
        firsts.append(deltas[0].cached_tokens)
        assert [d.cached_tokens for d in deltas[1:]] == [None, None]
    assert firsts == [0, (len(prompt.token_ids) - 1) // 16 * 16]
    assert engine.stats().extra["prefix_cache_blocks"] == len(prompt.token_ids) // 16
    plain = SimEngine((LLAMA3,), SimOptions(ttft_ms=0, itl_ms=0, prefix_cache_blocks=0))
    deltas = [d async for d in plain.generate("r", LLAMA3, prompt, sampling)]
    assert [d.cached_tokens for d in deltas] == [None, None, None] and plain.stats().extra == {}


async def test_the_first_token_waits_only_for_the_uncached_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = SimEngine((LLAMA3,), SimOptions(ttft_ms=0, itl_ms=0, block_size=16, prefix_cache_blocks=64))
    asked: list[int] = []
    monkeypatch.setattr(BatchModel, "first_token_delay_s", lambda _, tokens: asked.append(tokens) or 0.0)
    prompt = engine.tokenize(LLAMA3, "word " * 100)
    sampling = SamplingOptions(max_tokens=1, temperature=0)
    for n in range(2):
        [d async for d in engine.generate(f"r{n}", LLAMA3, prompt, sampling)]
    assert asked == [len(prompt.token_ids), len(prompt.token_ids) - (len(prompt.token_ids) - 1) // 16 * 16]
