"""Controls of the output: the chat output limit's name, stop lists, several choices, log probabilities, seeds."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from harness.conformance.contract import MAX_TOKENS, PATHS, Contract, Kind
from harness.conformance.endpoint import Api
from harness.conformance.features import COUNTING, SHORT_TOKENS, Features, choices
from harness.conformance.fixtures import text_of

__all__ = [
    "test_logprobs",
    "test_max_completion_tokens",
    "test_n_choices",
    "test_seed_reproducible",
    "test_stop_list",
]

LIMIT = 5
TOP = 2
SEED = 1234
NEVER = "zq#never-in-any-reply#qz"


def _ok(status: int, describe: str) -> None:
    assert status == 200, describe


@pytest.mark.output
@pytest.mark.feature("max_completion_tokens")
def test_max_completion_tokens(api: Api, contract: Contract) -> None:
    """Chat's output limit is `max_completion_tokens` (OpenAI's name; `max_tokens` is deprecated for chat), and it
    wins over `max_tokens`: 5 tokens and `length`, alone and beside a larger `max_tokens`."""
    for limits in ({"max_completion_tokens": LIMIT}, {"max_tokens": MAX_TOKENS, "max_completion_tokens": LIMIT}):
        body = contract.body("chat", COUNTING, **limits)
        if "max_tokens" not in limits:
            del body["max_tokens"]
        reply = api.post(PATHS["chat"], body)
        _ok(reply.status, reply.describe())
        answer = reply.json()
        got = (answer["choices"][0].get("finish_reason"), answer["usage"]["completion_tokens"])
        assert got == ("length", LIMIT), f"{limits} gave finish_reason {got[0]!r} after {got[1]} tokens"


def _words(text: str) -> list[str]:
    """The words of `text` at their first occurrence, after its start, in order: each a stop string that cuts it."""
    return [m.group() for m in re.finditer(r"\S+", text) if m.start() > 0 and text.find(m.group()) == m.start()]


@pytest.mark.output
@pytest.mark.feature("stop_list")
def test_stop_list(api: Api, contract: Contract, kind: Kind) -> None:
    """With a list of stop strings the text ends right before the earliest of them, wherever it is in the list."""
    reply = api.post(PATHS[kind], contract.body(kind, COUNTING, max_tokens=64))
    _ok(reply.status, reply.describe())
    text = text_of(kind, reply.json())
    words = _words(text)
    assert len(words) >= 2, f"the reply is too short to pick two stop strings from: {text!r}"
    early, late = words[len(words) // 3], words[2 * len(words) // 3]
    stop = [late, NEVER, early]  # the earliest last: a server that honours only the first string cuts at `late`
    stopped = api.post(PATHS[kind], contract.body(kind, COUNTING, max_tokens=64, stop=stop))
    _ok(stopped.status, stopped.describe())
    body = stopped.json()
    expected = text[: text.index(early)]
    got = text_of(kind, body)
    assert got == expected, f"with stop {stop!r} the text should be {expected!r}, got {got!r}"
    assert body["choices"][0].get("finish_reason") == "stop", f"finish_reason {body['choices'][0]!r}"


def _choice_text(choice: dict[str, Any]) -> Any:
    return (choice.get("message") or {}).get("content") if "message" in choice else choice.get("text")


@pytest.mark.output
@pytest.mark.feature("n")
def test_n_choices(api: Api, contract: Contract, features: Features) -> None:
    """`n: 2` gives choices 0 and 1, each with its text and finish_reason; streamed, each index opens with the
    role once and ends with one finish_reason, and usage counts both."""
    body = features.body("n")
    indexes = sorted(c.get("index") for c in body["choices"])
    assert indexes == [0, 1], f"n 2 gave choices with indexes {indexes}"
    for choice in body["choices"]:
        assert isinstance(_choice_text(choice), str), f"choice {choice.get('index')} has no text: {choice!r}"
        assert choice.get("finish_reason") in ("stop", "length"), f"choice {choice!r}"
    assert body["usage"]["completion_tokens"] >= 2, f"usage {body['usage']} counts fewer tokens than choices"
    streamed = api.stream(PATHS["chat"], choices(contract))
    roles: dict[Any, int] = {}
    finishes: dict[Any, list[str]] = {}
    for chunk in streamed.chunks():
        for choice in chunk.get("choices") or []:
            index = choice.get("index")
            if (choice.get("delta") or {}).get("role") is not None:
                roles[index] = roles.get(index, 0) + 1
            if choice.get("finish_reason") is not None:
                finishes.setdefault(index, []).append(choice["finish_reason"])
    assert roles == {0: 1, 1: 1}, f"streamed, the role came per index {roles} (expected once for 0 and for 1)"
    assert sorted(finishes) == [0, 1] and all(len(f) == 1 for f in finishes.values()), (
        f"streamed, the finish_reasons per index are {finishes} (expected one for 0 and one for 1)"
    )


def _alternatives_problem(kind: Kind, tops: list[Any], asked: int) -> str | None:
    """Chat gives exactly `top_logprobs` alternatives; completions `logprobs` of them, or one more (the sampled
    token, when it is not among them), as OpenAI documents."""
    if not tops or not all(isinstance(t, (list, dict)) for t in tops):
        return f"each token needs its alternatives as a list (chat) or an object (completions): {str(tops)[:300]}"
    counts = {len(t) for t in tops}
    allowed = {asked} if kind == "chat" else {asked, asked + 1}
    if not counts <= allowed:
        return f"the alternatives per token number {sorted(counts)} (asked for {asked}; allowed {sorted(allowed)})"
    return None


def _logprob_problem(value: Any) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value > 0:
        return f"a logprob must be a number <= 0, got {value!r}"
    return None


@pytest.mark.output
@pytest.mark.feature("logprobs")
def test_logprobs(api: Api, contract: Contract, features: Features, kind: Kind) -> None:
    """One log probability per generated token, each <= 0, with the alternatives asked for: chat's
    `logprobs.content` (`top_logprobs: 2`), the completion object's parallel lists (`logprobs: 2`); streamed,
    as many entries as tokens."""
    features.reply("logprobs")
    if kind == "chat":
        body = features.body("logprobs")
        request = contract.body("chat", COUNTING, max_tokens=SHORT_TOKENS, logprobs=True, top_logprobs=TOP)
    else:
        request = contract.body("completion", COUNTING, max_tokens=SHORT_TOKENS, logprobs=TOP)
        reply = api.post(PATHS["completion"], request)
        _ok(reply.status, reply.describe())
        body = reply.json()
    tokens = body["usage"]["completion_tokens"]
    logprobs = body["choices"][0].get("logprobs")
    assert isinstance(logprobs, dict), f"no logprobs object: {body['choices'][0]!r}"
    if kind == "chat":
        entries = logprobs.get("content")
        assert isinstance(entries, list) and len(entries) == tokens, (
            f"{tokens} tokens but logprobs.content is {str(entries)[:300]}"
        )
        for entry in entries:
            assert isinstance(entry.get("token"), str), f"entry {entry!r} has no token"
            assert (problem := _logprob_problem(entry.get("logprob"))) is None, problem
            assert all(_logprob_problem(t.get("logprob")) is None for t in entry.get("top_logprobs") or []), entry
        tops = [e.get("top_logprobs") for e in entries]
    else:
        lists = {k: logprobs.get(k) for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}
        lengths = {k: len(v) if isinstance(v, list) else None for k, v in lists.items()}
        assert set(lengths.values()) == {tokens}, f"{tokens} tokens, but the logprobs lists have lengths {lengths}"
        for value in lists["token_logprobs"] or []:
            assert (problem := _logprob_problem(value)) is None, problem
        tops = list(lists["top_logprobs"] or [])
    assert (problem := _alternatives_problem(kind, tops, TOP)) is None, problem
    streamed = api.stream(PATHS[kind], request).chunks()
    counted = 0
    for chunk in streamed:
        for choice in chunk.get("choices") or []:
            lp = choice.get("logprobs") or {}
            counted += len((lp.get("content") if kind == "chat" else lp.get("tokens")) or [])
    assert counted == tokens, f"streamed, {counted} logprob entries for the {tokens} tokens of the same request"


@pytest.mark.output
@pytest.mark.feature("seed")
def test_seed_reproducible(api: Api, contract: Contract, kind: Kind) -> None:
    """At temperature 1 the same `seed` gives the same text twice."""
    texts = []
    for _ in range(2):
        body = contract.body(kind, COUNTING, max_tokens=16, temperature=1.0, seed=SEED)
        reply = api.post(PATHS[kind], body)
        _ok(reply.status, reply.describe())
        texts.append(text_of(kind, reply.json()))
    assert texts[0] == texts[1], f"seed {SEED} at temperature 1 gave {texts[0]!r}, then {texts[1]!r}"
