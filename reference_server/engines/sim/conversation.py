"""Conversations with tool calls, in and out of the simulator's chat templates.

The simulator's templates are the real models' own, and they know only `content`: the user/assistant families
(Llama 2, Mistral) even refuse any other role. So a conversation is first written the way Hermes-style tool models
see it: an assistant's calls become the `<tool_call>` text it wrote, and tool results become a user turn of
`<tool_response>` blocks (consecutive results, and a user message right after them, share one turn, so that
roles still alternate). The simulator, having no model, then reads the rendered prompt back to find the last
thing the user said.
"""

from __future__ import annotations

from collections.abc import Sequence

from reference_server.engines.base import Message
from reference_server.engines.sim.hermes import calls_text
from schemas import ChatFamily

RESULT_OPEN, RESULT_CLOSE = "<tool_response>", "</tool_response>"

# Where each family's template puts a user message: the text before it and the text after it.
_USER_TURNS: dict[ChatFamily, tuple[str, str]] = {
    "llama3": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    "chatml": ("<|im_start|>user\n", "<|im_end|>"),
    "llama2": ("[INST] ", " [/INST]"),
    "mistral": ("[INST] ", " [/INST]"),
}
_LLAMA2_SYSTEM_END = "<</SYS>>\n\n"


def template_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """The messages as the templates take them: role and content only, tool calls and results written out."""
    if not any(m.tool_calls or m.role == "tool" for m in messages):
        return [{"role": m.role, "content": m.content} for m in messages]
    turns: list[dict[str, str]] = []
    from_tool = False  # whether the last turn is one that tool results opened
    for m in messages:
        if m.role == "tool":
            block = f"{RESULT_OPEN}\n{m.content}\n{RESULT_CLOSE}"
            if from_tool:
                turns[-1]["content"] += "\n" + block
            else:
                turns.append({"role": "user", "content": block})
            from_tool = True
            continue
        if m.role == "user" and from_tool:
            turns[-1]["content"] += "\n" + m.content
        elif m.tool_calls:
            calls = calls_text(m.tool_calls)
            turns.append({"role": m.role, "content": f"{m.content}\n{calls}" if m.content else calls})
        else:
            turns.append({"role": m.role, "content": m.content})
        from_tool = False
    return turns


def last_user_text(family: ChatFamily, prompt: str) -> str:
    """What the user last wrote in a rendered prompt: its last user turn, less any tool results it opens with.

    "" when the prompt has no user turn (e.g. a raw completion prompt) or the turn holds only tool results.
    """
    opening, closing = _USER_TURNS[family]
    start = prompt.rfind(opening)
    if start < 0:
        return ""
    start += len(opening)
    end = prompt.find(closing, start)
    text = prompt[start : end if end >= 0 else len(prompt)]
    if family == "llama2" and _LLAMA2_SYSTEM_END in text:  # the system prompt rides in the first user turn
        text = text[text.index(_LLAMA2_SYSTEM_END) + len(_LLAMA2_SYSTEM_END) :]
    results_end = text.rfind(RESULT_CLOSE)
    return text[results_end + len(RESULT_CLOSE) :] if results_end >= 0 else text
