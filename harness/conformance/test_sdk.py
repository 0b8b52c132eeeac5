"""The official `openai` Python SDK, as the spec tells users to call the API, parses every kind of response."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import openai
import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from harness.conformance.contract import MAX_TOKENS, Contract

__all__ = ["test_sdk_parses"]

UNKNOWN_MODEL = "conformance/no-such-model"


def _messages(contract: Contract) -> list[ChatCompletionMessageParam]:
    return cast("list[ChatCompletionMessageParam]", contract.conversation())


def _models(sdk: openai.OpenAI, contract: Contract) -> None:
    models = list(sdk.models.list())
    assert all(isinstance(m, Model) and isinstance(m.id, str) for m in models), f"models: {models!r}"


def _chat(sdk: openai.OpenAI, contract: Contract) -> None:
    r = sdk.chat.completions.create(model=contract.model, messages=_messages(contract), temperature=0, max_tokens=8)
    assert isinstance(r, ChatCompletion) and isinstance(r.id, str), f"{r!r}"
    assert isinstance(r.choices[0].message.content, str), f"{r.choices!r}"
    assert r.usage is not None and isinstance(r.usage.total_tokens, int), f"usage {r.usage!r}"


def _chat_stream(sdk: openai.OpenAI, contract: Contract) -> None:
    stream = sdk.chat.completions.create(
        model=contract.model,
        messages=_messages(contract),
        temperature=0,
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    chunks = list(stream)
    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks), f"{chunks[:3]!r}"
    pieces = [ch.delta.content for c in chunks for ch in c.choices if ch.delta.content]
    assert pieces, f"no content in {len(chunks)} chunks"


def _completion(sdk: openai.OpenAI, contract: Contract) -> None:
    r = sdk.completions.create(model=contract.model, prompt=contract.body("completion")["prompt"], max_tokens=8)
    assert isinstance(r, Completion) and isinstance(r.choices[0].text, str), f"{r!r}"
    assert r.usage is not None and isinstance(r.usage.completion_tokens, int), f"usage {r.usage!r}"


def _completion_stream(sdk: openai.OpenAI, contract: Contract) -> None:
    prompt = contract.body("completion")["prompt"]
    chunks = list(sdk.completions.create(model=contract.model, prompt=prompt, max_tokens=8, stream=True))
    assert chunks and all(isinstance(c, Completion) for c in chunks), f"{chunks[:3]!r}"
    assert "".join(ch.text for c in chunks for ch in c.choices), f"no text in {len(chunks)} chunks"


def _error(sdk: openai.OpenAI, contract: Contract) -> None:
    """An error becomes the SDK's exception for its status, with the envelope parsed."""
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model=UNKNOWN_MODEL, messages=_messages(contract))
    error = caught.value
    assert isinstance(error.body, dict) and error.body.get("message"), f"the SDK could not parse {error.body!r}"


CASES: dict[str, Callable[[openai.OpenAI, Contract], None]] = {
    "models": _models,
    "chat": _chat,
    "chat_stream": _chat_stream,
    "completion": _completion,
    "completion_stream": _completion_stream,
    "error": _error,
}


@pytest.mark.shapes
@pytest.mark.parametrize("case", list(CASES))
def test_sdk_parses(sdk: openai.OpenAI, contract: Contract, case: str) -> None:
    """Each kind of response, streamed or not, and an error, through the official SDK with no retries."""
    try:
        CASES[case](sdk, contract)
    except openai.OpenAIError as exc:
        if case == "error" and isinstance(exc, openai.APIStatusError):
            raise
        raise AssertionError(f"the openai SDK failed on {case}: {type(exc).__name__}: {exc}") from exc
