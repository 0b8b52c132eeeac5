"""The models the simulator serves, each with its real chat-template family and context length."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import SPECIAL_TOKENS, ChatFamily


@dataclass(frozen=True, slots=True)
class SimModel:
    id: str
    family: ChatFamily
    max_model_len: int

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return FAMILY_SPECIAL_TOKENS[self.family]


# Every special token of each family's tokenizer that its template can emit; each counts as one token.
FAMILY_SPECIAL_TOKENS: dict[ChatFamily, tuple[str, ...]] = {
    "llama3": (
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ),
    "llama2": ("<s>", "</s>"),
    "mistral": ("<s>", "</s>"),
    "chatml": ("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
}
assert all(SPECIAL_TOKENS[f]["bos_token"] in toks for f, toks in FAMILY_SPECIAL_TOKENS.items())

CATALOG: tuple[SimModel, ...] = (
    SimModel("meta-llama/Meta-Llama-3-8B-Instruct", "llama3", 8192),
    SimModel("meta-llama/Meta-Llama-3-70B-Instruct", "llama3", 8192),
    SimModel("meta-llama/Llama-2-7b-chat-hf", "llama2", 4096),
    SimModel("meta-llama/Llama-2-70b-chat-hf", "llama2", 4096),
    SimModel("mistralai/Mistral-7B-Instruct-v0.1", "mistral", 16384),
    SimModel("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral", 32768),
    SimModel("HuggingFaceTB/SmolLM2-135M-Instruct", "chatml", 8192),
)
DEFAULT_MODEL = CATALOG[0].id


def lookup(model_ids: tuple[str, ...]) -> tuple[SimModel, ...]:
    """The catalog entries to serve; an id outside the catalog is served with the Llama-3 template."""
    if not model_ids:
        return (CATALOG[0],)
    known = {m.id: m for m in CATALOG}
    return tuple(known.get(i) or SimModel(i, "llama3", 8192) for i in model_ids)
