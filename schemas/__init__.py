"""The contract shared by the reference server and the harness: JSON Schemas and chat templates.

Both sides read this package; neither imports the other. Files are loaded on first use, never at import.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Literal

from jinja2 import Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

Profile = Literal["anyscale", "openai"]
PROFILES: tuple[Profile, ...] = ("anyscale", "openai")

ChatFamily = Literal["llama3", "llama2", "mistral", "chatml"]
CHAT_FAMILIES: tuple[ChatFamily, ...] = ("llama3", "llama2", "mistral", "chatml")

# The special tokens each family's template uses, as the real tokenizers define them.
SPECIAL_TOKENS: Mapping[ChatFamily, Mapping[str, str]] = {
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama2": {"bos_token": "<s>", "eos_token": "</s>"},
    "mistral": {"bos_token": "<s>", "eos_token": "</s>"},
    "chatml": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
}


def family_for_model(model: str) -> ChatFamily | None:
    """The chat-template family of a model id, by the naming conventions of the spec's model families."""
    name = model.lower()
    if "llama-3" in name or "llama3" in name:
        return "llama3"
    if "llama-2" in name or "llama2" in name or "codellama" in name:
        return "llama2"
    if "mistral" in name or "mixtral" in name:
        return "mistral"
    if "smollm" in name or "hermes" in name or "qwen" in name or "chatml" in name:
        return "chatml"
    return None


class ChatTemplateError(ValueError):
    """The family's template rejects the conversation (for example roles that do not alternate)."""


@functools.cache
def load(name: str) -> dict[str, Any]:
    """A schema by its path inside this package, e.g. `"anyscale/chat_chunk.json"`."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def response_schema(profile: Profile, obj: str) -> dict[str, Any]:
    """The schema of a response object (`chat_completion`, `chat_chunk`, `error`, …) under a profile."""
    return load(f"{profile}/{obj}.json")


@functools.cache
def chat_template_source(family: ChatFamily) -> str:
    return resources.files(__package__).joinpath(f"chat_templates/{family}.jinja").read_text(encoding="utf-8")


def _raise(message: str) -> None:
    raise ChatTemplateError(message)


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    # The same environment Hugging Face tokenizers render chat templates with.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env


@functools.lru_cache(maxsize=64)
def _compiled(source: str) -> Template:
    return _environment().from_string(source)


def render_chat(
    family: ChatFamily,
    messages: Sequence[Mapping[str, str]],
    *,
    add_generation_prompt: bool = True,
    template: str | None = None,
) -> str:
    """Render a conversation with a family's template (or an explicit Jinja `template`)."""
    source = template if template is not None else chat_template_source(family)
    try:
        return _compiled(source).render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            **SPECIAL_TOKENS[family],
        )
    except ChatTemplateError:
        raise
    except TemplateError as exc:
        raise ChatTemplateError(f"chat template failed: {exc}") from exc
