"""The output of a request that asks for more than plain text: reasoning, structured output, tool calls, logprobs.

Planned whole before streaming starts, as `text.plan` plans plain text, and only for requests that ask for one of
these: the plain path (the load benchmark's) does none of this work.

- Reasoning (`SimOptions.reasoning_tokens` = N): the first N tokens are reasoning (`Delta.reasoning`), then the
  answer; they count toward `max_tokens`, which may end the request inside them (`length`). Stop strings apply to
  the answer only.
- Structured output: the answer is one JSON value written whole, as guided decoding writes it. `max_tokens` may cut
  it (`length`, the text a prefix); otherwise it ends with the value (`stop`) even under `ignore_eos` or
  `min_tokens`, since guided decoding allows nothing after the value.
- Tool calls (`tool_choice: auto`): see `hermes` for when the simulator calls; the call text ends like a value.
- Logprobs: one entry per token, reasoning included, from a stream of their own (see `logprobs`).
Every answer's text is cut into pieces by the model's tokenizer, so re-tokenizing it gives back its token count.
"""

from __future__ import annotations

import dataclasses
import random

from reference_server.engines.base import Delta, FinishReason, SamplingOptions, TokenLogprob
from reference_server.engines.sim import text
from reference_server.engines.sim.conversation import last_user_text
from reference_server.engines.sim.hermes import call_text, named_tools
from reference_server.engines.sim.instance import dumps, free_object, instance
from reference_server.engines.sim.logprobs import token_logprobs
from reference_server.engines.sim.tokenizer import SimTokenizer
from schemas import ChatFamily


def is_plain(sampling: SamplingOptions, reasoning_tokens: int) -> bool:
    """Whether the request is served by `text.plan` alone."""
    return sampling.structured is None and sampling.logprobs is None and not sampling.tools and reasoning_tokens <= 0


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What planning a request needs beyond its sampling options."""

    model: str
    family: ChatFamily
    prompt: str
    tokenizer: SimTokenizer
    mean_length: int
    reasoning_tokens: int


def plan(request: Request, sampling: SamplingOptions) -> list[Delta]:
    """Every delta of the request, one token each; the last carries the finish reason."""
    thinking = min(max(request.reasoning_tokens, 0), sampling.max_tokens)
    reasoning: list[str] = []
    if thinking:
        rng = text.request_rng(request.model, request.prompt, sampling, "reasoning")
        reasoning = rng.choices(text.VOCAB, k=thinking)
    budget = sampling.max_tokens - thinking
    answer: tuple[str, ...] = ()
    finish: FinishReason = "length"
    if budget > 0:
        answer, finish = _answer(request, sampling, budget, thinking)
    logprobs: list[TokenLogprob] = []
    if sampling.logprobs is not None:
        logprob_rng = text.request_rng(request.model, request.prompt, sampling, "logprobs")
        logprobs = token_logprobs([*reasoning, *answer], sampling.logprobs, logprob_rng, sampling.temperature == 0)
    deltas = [Delta("", 1, reasoning=piece) for piece in reasoning]
    deltas += [Delta(piece, 1) for piece in answer]
    for delta, entry in zip(deltas, logprobs, strict=False):
        delta.logprobs = (entry,)
    if deltas:
        deltas[-1].finish_reason = finish
    return deltas


def _answer(
    request: Request, sampling: SamplingOptions, budget: int, thinking: int
) -> tuple[tuple[str, ...], FinishReason]:
    rng = text.request_rng(request.model, request.prompt, sampling)
    if sampling.structured is not None:
        schema = sampling.structured.schema
        value = free_object(rng, _json_size(rng, request)) if schema is None else instance(schema, rng)
        return _bounded(request.tokenizer.pieces(dumps(value)), sampling.stop, budget)
    called = named_tools(sampling.tools, last_user_text(request.family, request.prompt)) if sampling.tools else []
    if called:
        calls = "\n".join(call_text(tool.name, instance(tool.parameters, rng)) for tool in called)
        return _bounded(request.tokenizer.pieces(calls), sampling.stop, budget)
    rest = dataclasses.replace(sampling, max_tokens=budget, min_tokens=max(sampling.min_tokens - thinking, 0))
    planned = text.plan(request.model, request.prompt, rest, request.mean_length)
    return planned.pieces, planned.finish_reason


def _json_size(rng: random.Random, request: Request) -> int:
    """Properties for a JSON-mode object: about as many tokens as a plain answer would have (~8 per property)."""
    return max(1, round(text.natural_length(rng, request.mean_length) / 8))


def _bounded(pieces: list[str], stops: tuple[str, ...], budget: int) -> tuple[tuple[str, ...], FinishReason]:
    """A whole value's pieces, cut by `max_tokens` and then by the first stop string (the earlier end wins)."""
    finish: FinishReason = "stop"
    if len(pieces) > budget:
        pieces, finish = pieces[:budget], "length"
    if stops:
        stopped = text.apply_stop(pieces, stops)
        if stopped is not None:
            return stopped.pieces, stopped.finish_reason
    return tuple(pieces), finish
