"""One admitted request through the simulator: its choices' deltas, aborts when they stop early, and its metrics."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import make_mocked_request

from reference_server.auth import KeyRing
from reference_server.config import ApiKey, ServerConfig, SimOptions, digest
from reference_server.engines.sim import SimEngine
from reference_server.faults import NO_FAULT, Fault, FaultPlan, InjectedFault
from reference_server.generation import Generation
from reference_server.limiter import ConcurrencyLimiter, Slot
from reference_server.metrics import ServerMetrics
from reference_server.profile import Usage
from reference_server.protocol import RequestParser
from reference_server.sampling import engine_prompt, sampling_options
from reference_server.state import ServerState
from reference_server.traces import TraceStore

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"


def state() -> ServerState:
    config = ServerConfig(keys=(ApiKey("k", digest("esecret_generation_key")),), sim=SimOptions(ttft_ms=0, itl_ms=0))
    engine = SimEngine((LLAMA3,), config.sim)
    limiter = ConcurrencyLimiter(30)
    return ServerState(
        config=config,
        engine=engine,
        keyring=KeyRing(config.keys),
        limiter=limiter,
        parser=RequestParser(),
        metrics=ServerMetrics(engine.stats, limiter.snapshot),
        traces=TraceStore(),
        openapi=b"",
        cards={card.id: card for card in engine.models},
    )


def generation(s: ServerState, plan: FaultPlan = NO_FAULT, **body: Any) -> Generation:
    raw = orjson.dumps({"model": LLAMA3, "messages": [{"role": "user", "content": "Hi"}], **body})
    req = s.parser.parse("chat", raw)
    plan = plan.for_request(req)
    prompt = engine_prompt(s.engine, s.cards, req, plan)
    sampling = sampling_options(s.cards[LLAMA3].max_model_len, req, prompt, plan)
    request = make_mocked_request("POST", "/v1/chat/completions")
    return Generation(s, request, req, Slot("k", 30, 29), "m-" + "a" * 32, prompt, sampling, plan, None)


async def test_a_choice_streams_to_its_finish_and_counts_as_finished() -> None:
    s = state()
    gen = generation(s, max_tokens=5, ignore_eos=True)
    deltas = [d async for d in gen.deltas()]
    assert [d.token_count for d in deltas] == [1] * 5
    assert [d.finish_reason for d in deltas] == [None] * 4 + ["length"]
    stats = s.engine.stats()
    assert (stats.finished_total, stats.aborted_total, stats.running) == (1, 0, 0)


async def test_a_choice_left_early_aborts_its_engine_request() -> None:
    s = state()
    deltas = generation(s, max_tokens=50, ignore_eos=True).deltas()
    await deltas.__anext__()
    await deltas.aclose()  # type: ignore[attr-defined]
    stats = s.engine.stats()
    assert (stats.finished_total, stats.aborted_total, stats.running) == (0, 1, 0)


async def test_n_choices_are_merged_each_to_one_finish() -> None:
    s = state()
    gen = generation(s, n=3, max_tokens=4, ignore_eos=True, seed=1)
    merged = [item async for item in gen.merged()]
    for index in range(3):
        mine = [delta for i, delta in merged if i == index]
        assert len(mine) == 4 and [d.finish_reason for d in mine].count("length") == 1
    assert [choice.index for choice in gen.choices()] == [0, 1, 2]
    assert s.engine.stats().finished_total == 3


async def test_deltas_pass_through_the_fault_plan() -> None:
    s = state()
    plain = [d async for d in generation(s, max_tokens=500, temperature=0).deltas()]
    assert plain[-1].finish_reason == "stop"  # a natural end
    length_on_eos = InjectedFault(Fault.LENGTH_ON_EOS, 0)
    faulty = [d async for d in generation(s, length_on_eos, max_tokens=500, temperature=0).deltas()]
    assert [d.text for d in faulty] == [d.text for d in plain] and faulty[-1].finish_reason == "length"


def test_headers_tell_the_id_and_the_slot() -> None:
    assert generation(state()).headers("text/event-stream") == {
        "Content-Type": "text/event-stream",
        "x-request-id": "m-" + "a" * 32,
        "x-concurrency-limit": "30",
        "x-concurrency-remaining": "29",
    }


def test_an_answer_is_counted_in_the_metrics() -> None:
    s = state()
    gen = generation(s)
    gen.account(Usage(12, 5), gen.started_s + 0.25)
    gen.account(Usage(3, 1), None)  # nothing generated: no time to first token
    value = s.metrics.registry.get_sample_value
    assert value("llm_prompt_tokens_total") == 15 and value("llm_completion_tokens_total") == 6
    assert value("llm_time_to_first_token_seconds_count", {"endpoint": "chat"}) == 1
    assert value("llm_time_to_first_token_seconds_sum", {"endpoint": "chat"}) == 0.25
    assert value("llm_request_duration_seconds_count", {"endpoint": "chat"}) == 2
