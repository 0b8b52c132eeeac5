"""Non-streamed chat and completion responses: schema, id, created, model, usage, finish reason, limits on output."""

from __future__ import annotations

import re
from typing import Any

import pytest

from harness.conformance.contract import CREATED_SKEW_S, MAX_TOKENS, PATHS, Contract, Kind
from harness.conformance.endpoint import Api
from harness.conformance.fixtures import Exchanges, text_of

__all__ = [
    "test_created_is_now",
    "test_finish_reason",
    "test_ignored_arguments",
    "test_max_tokens_one",
    "test_model_echo",
    "test_response_id",
    "test_response_schema",
    "test_stop_string",
    "test_usage_arithmetic",
]

COUNTING = "Count from one to twenty in words, separated by spaces."
STOP_BASE_TOKENS = 64


def _ok(reply_status: int, describe: str) -> None:
    assert reply_status == 200, describe


def _usage_problem(usage: Any) -> str | None:
    if not isinstance(usage, dict):
        return f"usage is not an object: {usage!r}"
    counts = {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        return f"usage counts are not integers: {counts}"
    prompt, completion, total = counts.values()
    assert isinstance(prompt, int) and isinstance(completion, int) and isinstance(total, int)
    if prompt < 1 or completion < 1:
        return f"a prompt and a completion of at least one token each were counted as {counts}"
    if total != prompt + completion:
        return f"total_tokens {total} != prompt_tokens {prompt} + completion_tokens {completion}"
    return None


@pytest.mark.shapes
def test_response_schema(exchanges: Exchanges, contract: Contract, kind: Kind) -> None:
    """The body is JSON and validates against the profile's schema of a chat completion or a completion."""
    reply = exchanges.reply(kind)
    _ok(reply.status, reply.describe())
    assert reply.content_type == "application/json", f"Content-Type is {reply.content_type!r}"
    obj = contract.response_object(kind)
    problems = contract.errors(obj, reply.json())
    assert not problems, f"profile {contract.profile}: the {kind} response breaks {obj}.json: {problems}"


@pytest.mark.shapes
def test_response_id(api: Api, exchanges: Exchanges, contract: Contract, kind: Kind) -> None:
    """The id has the profile's format, and two responses have two ids."""
    first = exchanges.body_of(kind)["id"]
    assert (problem := contract.id_problem(kind, first)) is None, problem
    reply = api.post(PATHS[kind], contract.body(kind, max_tokens=1))
    _ok(reply.status, reply.describe())
    second = reply.json()["id"]
    assert (problem := contract.id_problem(kind, second)) is None, problem
    assert second != first, f"two responses share the id {first!r}"


@pytest.mark.shapes
def test_created_is_now(exchanges: Exchanges, kind: Kind) -> None:
    """`created` is an integer number of seconds close to the client's clock, streamed or not."""
    reply = exchanges.reply(kind)
    chunks = exchanges.stream(kind).chunks()
    for what, created, sent_s in (
        ("response", exchanges.body_of(kind)["created"], reply.sent_at_s),
        ("first chunk", chunks[0].get("created"), exchanges.stream(kind).sent_at_s),
    ):
        assert isinstance(created, int) and not isinstance(created, bool), f"{what}: created is {created!r}"
        assert abs(created - sent_s) <= CREATED_SKEW_S, (
            f"{what}: created {created} is {created - sent_s:+.0f} s from the client's clock"
        )


@pytest.mark.shapes
def test_model_echo(exchanges: Exchanges, contract: Contract, kind: Kind) -> None:
    """`model` echoes the request, in the response and in every chunk."""
    model = exchanges.body_of(kind)["model"]
    assert model == contract.model, f"asked for {contract.model!r}, the response says {model!r}"
    chunk_models = {c.get("model") for c in exchanges.stream(kind).chunks()}
    assert chunk_models == {contract.model}, f"asked for {contract.model!r}, the chunks say {chunk_models}"


@pytest.mark.shapes
def test_usage_arithmetic(exchanges: Exchanges, contract: Contract, kind: Kind) -> None:
    """`total_tokens` is `prompt_tokens + completion_tokens`, in the response and in any chunk with usage."""
    problem = _usage_problem(exchanges.body_of(kind).get("usage"))
    assert problem is None, f"response: {problem}"
    chunks = exchanges.stream(kind, include_usage=contract.profile == "openai").chunks()
    for n, chunk in enumerate(chunks):
        if chunk.get("usage") is not None:
            assert (problem := _usage_problem(chunk["usage"])) is None, f"chunk {n}: {problem}"


@pytest.mark.shapes
def test_finish_reason(exchanges: Exchanges, kind: Kind) -> None:
    """A natural end is `stop`; `length` only when `max_tokens` was reached."""
    body = exchanges.body_of(kind)
    finish = body["choices"][0].get("finish_reason")
    completion = body["usage"]["completion_tokens"]
    assert finish in ("stop", "length"), f"finish_reason {finish!r} is neither stop nor length"
    if finish == "length":
        assert completion == MAX_TOKENS, f"finish_reason length after {completion} of max_tokens {MAX_TOKENS}"
    assert completion <= MAX_TOKENS, f"{completion} completion tokens exceed max_tokens {MAX_TOKENS}"


@pytest.mark.shapes
def test_max_tokens_one(api: Api, contract: Contract, kind: Kind) -> None:
    """`max_tokens: 1` gives exactly one token and finish_reason `length`."""
    reply = api.post(PATHS[kind], contract.body(kind, max_tokens=1))
    _ok(reply.status, reply.describe())
    body = reply.json()
    finish = body["choices"][0].get("finish_reason")
    completion = body["usage"]["completion_tokens"]
    assert (finish, completion) == ("length", 1), f"max_tokens 1 gave finish_reason {finish!r}, {completion} tokens"


def _stop_candidate(text: str) -> str | None:
    """A word of `text` whose first occurrence is not at its start: a stop string that must cut it."""
    words = [m for m in re.finditer(r"\S+", text) if m.start() > 0 and text.find(m.group()) == m.start()]
    return words[len(words) // 2].group() if words else None


@pytest.mark.shapes
def test_stop_string(api: Api, contract: Contract, kind: Kind) -> None:
    """A stop string ends the text right before it (it is not returned), with finish_reason `stop`."""
    reply = api.post(PATHS[kind], contract.body(kind, COUNTING, max_tokens=STOP_BASE_TOKENS))
    _ok(reply.status, reply.describe())
    text = text_of(kind, reply.json())
    stop = _stop_candidate(text)
    assert stop is not None, f"the reply is too short to pick a stop string from: {text!r}"
    stopped = api.post(PATHS[kind], contract.body(kind, COUNTING, max_tokens=STOP_BASE_TOKENS, stop=[stop]))
    _ok(stopped.status, stopped.describe())
    body = stopped.json()
    expected = text[: text.index(stop)]
    got = text_of(kind, body)
    assert got == expected, f"with stop {stop!r} the text should be {expected!r}, got {got!r}"
    assert body["choices"][0].get("finish_reason") == "stop", f"finish_reason {body['choices'][0]!r}"


@pytest.mark.shapes
def test_ignored_arguments(api: Api, contract: Contract, kind: Kind) -> None:
    """Unsupported and unknown arguments are ignored, as the spec says, not refused."""
    extra: dict[str, Any] = {"logit_bias": {}, "user": "conformance-suite", "x_conformance_unknown_argument": True}
    reply = api.post(PATHS[kind], contract.body(kind, max_tokens=4, **extra))
    assert reply.status == 200, f"a request with {sorted(extra)} was refused: {reply.describe()}"
    assert isinstance(text_of(kind, reply.json()), str)
