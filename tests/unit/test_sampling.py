"""What the engine is asked for a request: the prompt's tokens, the sampling options, each choice's seed."""

from __future__ import annotations

import orjson
import pytest

from reference_server.config import SimOptions
from reference_server.engines.base import SamplingOptions
from reference_server.engines.sim import SimEngine
from reference_server.errors import APIError
from reference_server.faults import NO_FAULT, Fault, InjectedFault
from reference_server.protocol import CompletionRequest, Kind, RequestParser
from reference_server.sampling import choice_sampling, engine_prompt, sampling_options

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"
MISTRAL = "mistralai/Mistral-7B-Instruct-v0.1"
ENGINE = SimEngine((LLAMA3, MISTRAL), SimOptions())
CARDS = {card.id: card for card in ENGINE.models}
PARSER = RequestParser()
MESSAGES = [{"role": "user", "content": "Hi"}]


def request(kind: Kind = "chat", **body: object) -> CompletionRequest:
    base: dict[str, object] = {"model": LLAMA3}
    base.update({"messages": MESSAGES} if kind == "chat" else {"prompt": "Once upon"})
    return PARSER.parse(kind, orjson.dumps({**base, **body}))


def test_chat_is_rendered_with_the_template_and_a_completion_prompt_is_verbatim() -> None:
    chat = engine_prompt(ENGINE, CARDS, request(), NO_FAULT)
    assert chat.text.startswith("<|begin_of_text|>") and "Hi" in chat.text
    assert chat.token_ids == ENGINE.tokenize(LLAMA3, chat.text).token_ids
    completion = engine_prompt(ENGINE, CARDS, request("completion"), NO_FAULT)
    assert completion.text == "Once upon"
    bos = engine_prompt(ENGINE, CARDS, request("completion"), InjectedFault(Fault.TEMPLATE_COMPLETION, 0))
    assert bos.text == "<|begin_of_text|>Once upon"


def test_an_unknown_model_is_404_and_a_refused_conversation_400() -> None:
    with pytest.raises(APIError) as unknown:
        engine_prompt(ENGINE, CARDS, request(model="nobody/none"), NO_FAULT)
    assert (unknown.value.status, unknown.value.code, unknown.value.param) == (404, "model_not_found", "model")
    system = [{"role": "system", "content": "Be brief."}, *MESSAGES]
    with pytest.raises(APIError) as refused:  # Mistral's template has no system role
        engine_prompt(ENGINE, CARDS, request(model=MISTRAL, messages=system), NO_FAULT)
    assert (refused.value.status, refused.value.param) == (400, "messages")


def test_the_output_limit_is_what_was_asked_or_the_rest_of_the_context() -> None:
    req = request(max_tokens=7, min_tokens=20, temperature=0.5)
    prompt = engine_prompt(ENGINE, CARDS, req, NO_FAULT)
    options = sampling_options(100, req, prompt, NO_FAULT)
    assert (options.max_tokens, options.min_tokens, options.temperature) == (7, 7, 0.5)
    unbounded = sampling_options(100, request(), prompt, NO_FAULT)
    assert unbounded.max_tokens == 100 - len(prompt.token_ids)


def test_a_request_beyond_the_context_is_refused_with_both_numbers() -> None:
    req = request("completion", max_tokens=10)
    prompt = engine_prompt(ENGINE, CARDS, req, NO_FAULT)
    context = len(prompt.token_ids) + 9
    with pytest.raises(APIError) as caught:
        sampling_options(context, req, prompt, NO_FAULT)
    error = caught.value
    assert (error.status, error.code, error.param) == (400, "context_length_exceeded", "prompt")
    assert f"maximum context length is {context} tokens" in error.message
    assert f"requested {context + 1} tokens ({len(prompt.token_ids)} in the prompt, 10 in the" in error.message
    with pytest.raises(APIError, match="your prompt has"):
        sampling_options(len(prompt.token_ids), request("completion"), prompt, NO_FAULT)


def test_tools_reach_the_engine_only_under_auto_and_a_named_call_is_guided() -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    auto = request(tools=tools)
    prompt = engine_prompt(ENGINE, CARDS, auto, NO_FAULT)
    assert [t.name for t in sampling_options(8192, auto, prompt, NO_FAULT).tools] == ["weather"]
    named = request(tools=tools, tool_choice={"type": "function", "function": {"name": "weather"}})
    options = sampling_options(8192, named, prompt, NO_FAULT)
    assert options.tools == () and options.structured is not None
    assert sampling_options(8192, request(), prompt, NO_FAULT).structured is None


def test_each_choice_gets_its_own_seed_within_64_bits() -> None:
    seeded = SamplingOptions(max_tokens=4, seed=10)
    assert choice_sampling(seeded, 0) is seeded
    assert choice_sampling(seeded, 3).seed == 13
    top = SamplingOptions(max_tokens=4, seed=2**63 - 2)
    assert choice_sampling(top, 1).seed == 2**63 - 1 and choice_sampling(top, 2).seed == 2**63 - 4
    unseeded = SamplingOptions(max_tokens=4)
    assert choice_sampling(unseeded, 5) is unseeded
