"""Prompt formatting, black-box: chat applies the model family's template; completion prompts go in verbatim.

The spec's completion example carries the BOS token and the `[INST]` tags itself ("the BOS token <s> and [INST] and
[/INST] tags must appear with the question when using completion API"), so a server must neither template a
completion prompt nor add a second BOS to it.
"""

from __future__ import annotations

import pytest

from harness.conformance.contract import PATHS, Contract
from harness.conformance.endpoint import Api
from harness.conformance.fixtures import Exchanges, text_of

__all__ = ["test_chat_matches_templated_completion", "test_completion_prompt_verbatim"]


@pytest.mark.prompt_format
def test_chat_matches_templated_completion(exchanges: Exchanges, contract: Contract) -> None:
    """chat(messages) and completion(template(messages)) at temperature 0: same prompt_tokens, same text."""
    template = contract.render(contract.conversation())
    chat = exchanges.body_of("chat")
    completion = exchanges.body_of("completion")
    chat_tokens = chat["usage"]["prompt_tokens"]
    completion_tokens = completion["usage"]["prompt_tokens"]
    assert completion_tokens == chat_tokens, (
        f"the {contract.family} template of the conversation costs {completion_tokens} prompt tokens as a "
        f"completion but {chat_tokens} as a chat: the server changes completion prompts (a second BOS?) or "
        f"formats chats with another template. Template: {template!r}"
    )
    chat_text, completion_text = text_of("chat", chat), text_of("completion", completion)
    assert chat_text == completion_text, (
        f"same prompt, different text at temperature 0: chat {chat_text[:120]!r}, completion {completion_text[:120]!r}"
    )


@pytest.mark.prompt_format
def test_completion_prompt_verbatim(api: Api, contract: Contract) -> None:
    """A prompt that starts with the BOS text counts exactly one token more than the same prompt without it."""
    with_bos = contract.render(contract.conversation())
    bos = contract.bos
    assert with_bos.startswith(bos), f"the {contract.family} template does not start with its BOS {bos!r}"
    counts = []
    for prompt in (with_bos, with_bos.removeprefix(bos)):
        reply = api.post(PATHS["completion"], {"model": contract.model, "prompt": prompt, "max_tokens": 1})
        assert reply.status == 200, reply.describe()
        counts.append(reply.json()["usage"]["prompt_tokens"])
    assert counts[0] - counts[1] == 1, (
        f"prompt_tokens with the leading {bos!r}: {counts[0]}, without: {counts[1]}; a verbatim prompt differs by "
        "exactly the one BOS token (0 means the server adds a BOS when the prompt lacks one)"
    )
