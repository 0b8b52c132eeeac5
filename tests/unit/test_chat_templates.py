"""Golden strings for each chat-template family, as the models' own tokenizers render them."""

from __future__ import annotations

import pytest

from schemas import ChatTemplateError, family_for_model, render_chat

SYS = {"role": "system", "content": "You are brief."}
U1 = {"role": "user", "content": "Hi"}
A1 = {"role": "assistant", "content": "Hello!"}
U2 = {"role": "user", "content": "Joke?"}


@pytest.mark.parametrize(
    ("family", "messages", "expected"),
    [
        (
            "llama3",
            [U1],
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            "llama3",
            [SYS, U1, A1, U2],
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nJoke?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ("llama2", [U1], "<s>[INST] Hi [/INST]"),
        (
            "llama2",
            [SYS, U1, A1, U2],
            "<s>[INST] <<SYS>>\nYou are brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Joke? [/INST]",
        ),
        ("mistral", [U1], "<s>[INST] Hi [/INST]"),
        ("mistral", [U1, A1, U2], "<s>[INST] Hi [/INST]Hello!</s>[INST] Joke? [/INST]"),
        (
            "chatml",
            [U1],
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
            "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "chatml",
            [SYS, U1],
            "<|im_start|>system\nYou are brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        ),
    ],
)
def test_golden_renderings(family: str, messages: list[dict[str, str]], expected: str) -> None:
    assert render_chat(family, messages) == expected  # type: ignore[arg-type]


def test_without_generation_prompt_the_assistant_header_is_absent() -> None:
    assert render_chat("chatml", [SYS, U1], add_generation_prompt=False).endswith("Hi<|im_end|>\n")
    assert not render_chat("llama3", [U1], add_generation_prompt=False).endswith("<|end_header_id|>\n\n")


@pytest.mark.parametrize(
    ("family", "messages", "fragment"),
    [
        ("mistral", [SYS, U1], "alternate"),  # Mistral/Mixtral templates have no system role
        ("mistral", [U1, U2], "alternate"),
        ("llama2", [A1, U1], "alternate"),
        ("llama2", [SYS, U1, U2], "alternate"),
    ],
)
def test_roles_that_must_alternate(family: str, messages: list[dict[str, str]], fragment: str) -> None:
    with pytest.raises(ChatTemplateError, match=fragment):
        render_chat(family, messages)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("meta-llama/Llama-2-70b-chat-hf", "llama2"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "chatml"),
        ("some/unknown-model", None),
    ],
)
def test_family_for_model(model: str, family: str | None) -> None:
    assert family_for_model(model) == family
