"""Property tests of the chat templates: every message's text is in the prompt, in order, and the prompt ends
with the generation prompt of its family."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas import SPECIAL_TOKENS, ChatFamily, render_chat

GENERATION_PROMPT: dict[ChatFamily, str] = {
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "chatml": "<|im_start|>assistant\n",
    "llama2": " [/INST]",
    "mistral": " [/INST]",
}
_TEXT = st.text(max_size=30)
# Text that cannot be mistaken for template markup, for counting the template's own markers.
_PLAIN = st.text(st.characters(exclude_characters="<>[]|"), max_size=30)


@st.composite
def conversations(draw: st.DrawFn, family: ChatFamily, text: st.SearchStrategy[str]) -> list[dict[str, str]]:
    """A conversation the family's template accepts, ending with a user turn (as one asks for a completion)."""
    if family in ("llama3", "chatml"):  # any roles in any order
        roles = [*draw(st.lists(st.sampled_from(["system", "user", "assistant"]), max_size=5)), "user"]
    else:  # user/assistant alternating from a user turn; Llama 2 also takes one system turn first
        turns = draw(st.integers(0, 3))
        roles = ["user", "assistant"] * turns + ["user"]
        if family == "llama2" and draw(st.booleans()):
            roles.insert(0, "system")
    return [{"role": role, "content": draw(text)} for role in roles]


def family_and_conversation(text: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[ChatFamily, list[dict[str, str]]]]:
    families: list[ChatFamily] = ["llama3", "llama2", "mistral", "chatml"]
    return st.sampled_from(families).flatmap(lambda f: conversations(f, text).map(lambda c: (f, c)))


@given(family_and_conversation(_TEXT))
def test_every_message_appears_in_order_and_the_generation_prompt_ends_the_prompt(
    case: tuple[ChatFamily, list[dict[str, str]]],
) -> None:
    family, messages = case
    prompt = render_chat(family, messages)
    position = 0
    for message in messages:
        found = prompt.find(message["content"].strip(), position)  # templates may trim a message's ends
        assert found >= 0, (message, prompt)
        position = found + len(message["content"].strip())
    assert prompt.endswith(GENERATION_PROMPT[family])
    if family != "chatml":  # ChatML has no BOS
        assert prompt.startswith(SPECIAL_TOKENS[family]["bos_token"])


@given(family_and_conversation(_PLAIN))
def test_one_turn_marker_per_message_and_one_generation_prompt(case: tuple[ChatFamily, list[dict[str, str]]]) -> None:
    family, messages = case
    prompt = render_chat(family, messages)
    without = render_chat(family, messages, add_generation_prompt=False)
    users = sum(m["role"] == "user" for m in messages)
    if family == "llama3":
        assert prompt.count("<|start_header_id|>") == len(messages) + 1
        assert prompt.count("<|eot_id|>") == len(messages)
        assert prompt == without + GENERATION_PROMPT[family]
    elif family == "chatml":
        default_system = messages[0]["role"] != "system"
        assert prompt.count("<|im_start|>") == len(messages) + default_system + 1
        assert prompt == without + GENERATION_PROMPT[family]
    else:  # the generation prompt of Llama 2 and Mistral is the user turn's own [/INST]
        assert prompt.count("[INST]") == prompt.count("[/INST]") == users
        assert prompt == without
