"""Prompt formatting, black-box: chat applies the model family's template; completion prompts go in verbatim.

The spec's completion example carries the BOS token and the `[INST]` tags itself ("the BOS token <s> and [INST] and
[/INST] tags must appear with the question when using completion API"), so a server must neither template a
completion prompt nor add a second BOS to it.
"""

from __future__ import annotations

import pytest

from harness.conformance.contract import HISTORY, PATHS, Contract
from harness.conformance.endpoint import Api
from harness.conformance.fixtures import Exchanges, text_of

__all__ = [
    "test_chat_matches_templated_completion",
    "test_completion_prompt_verbatim",
    "test_multi_turn_matches_templated_completion",
]
# Enough to compare the two texts; short, since this check's requests are its own.
MULTI_TURN_MAX_TOKENS = 16


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


@pytest.mark.prompt_format
def test_multi_turn_matches_templated_completion(api: Api, exchanges: Exchanges, contract: Contract) -> None:
    """Three turns with the assistant's answers, against the one-turn exchange of the same last question: the history
    costs as many prompt tokens as a chat as in the templated completion (and more than none), and at temperature 0
    chat(messages) and completion(template(messages)) give the same text.

    Each part is judged against the one-turn exchange, so that this check tests the history and nothing else: a
    server that changes every completion prompt alike (a second BOS) fails the one-turn check, not this one — its
    token counts move by the same amount, and where the one-turn texts already differ the texts are not compared.
    """
    messages = contract.multi_turn()
    extra = {"model": contract.model, "temperature": 0, "max_tokens": MULTI_TURN_MAX_TOKENS}
    chat = api.post(PATHS["chat"], {**extra, "messages": messages})
    completion = api.post(PATHS["completion"], {**extra, "prompt": contract.render(messages)})
    assert chat.status == 200, chat.describe()
    assert completion.status == 200, completion.describe()
    one_chat, one_completion = exchanges.body_of("chat"), exchanges.body_of("completion")
    by_chat = chat.json()["usage"]["prompt_tokens"] - one_chat["usage"]["prompt_tokens"]
    by_completion = completion.json()["usage"]["prompt_tokens"] - one_completion["usage"]["prompt_tokens"]
    assert by_chat == by_completion, (
        f"{len(HISTORY)} earlier turns cost {by_completion} more prompt tokens in the templated completion but "
        f"{by_chat} more as a chat: the server drops or changes earlier turns (the assistant's answers?) when it "
        f"formats a chat. Messages: {messages!r}"
    )
    assert by_chat > 0, f"{len(HISTORY)} earlier turns cost {by_chat} more prompt tokens: no history in the prompt"
    if text_of("chat", one_chat) == text_of("completion", one_completion):  # else the one-turn check reports it
        chat_text, completion_text = text_of("chat", chat.json()), text_of("completion", completion.json())
        assert chat_text == completion_text, (
            "same conversation, different text at temperature 0: chat "
            f"{chat_text[:120]!r}, completion {completion_text[:120]!r}. Messages: {messages!r}"
        )
