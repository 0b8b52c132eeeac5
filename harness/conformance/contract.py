"""What the suite expects of a target, in the terms the checks test.

The settings come from the command line (once, in the plugin); the contract turns them into what each profile
promises (schemas, ids, object names) and into the conversation and requests the suite sends.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft7Validator

import schemas
from harness.target.endpoint import Target
from schemas import CHAT_FAMILIES, ChatFamily, Profile

Kind = Literal["chat", "completion"]
KINDS: tuple[Kind, ...] = ("chat", "completion")
PATHS: Mapping[Kind, str] = {"chat": "/chat/completions", "completion": "/completions"}
MARKERS: Mapping[str, str] = {
    "shapes": "response shapes: models, chat and completion bodies, ids, usage, finish reasons, arguments",
    "streaming": "SSE: content type, framing, chunks, ids, role, finish reason, usage, text",
    "errors": "error statuses and the OpenAI error envelope",
    "auth": "API-key authentication",
    "prompt_format": "chat templates and verbatim completion prompts",
    "limits": "the per-key concurrency limit",
    "output": "the chat output limit's name, stop lists, n, logprobs, seeds",
    "structured": "JSON mode and JSON schema outputs",
    "tools": "function calling: tool_choice named, required and none; call ids; streamed calls",
}
FEATURE_MARKER = "feature"
# Enough for a natural end of the suite's short question on any instruct model.
MAX_TOKENS = 512
# How far `created` may be from the client's clock.
CREATED_SKEW_S = 300
QUESTION = "Say 'Test'."
SYSTEM = "You are a helpful assistant."
# The earlier turns of the multi-turn check: the user's questions and the assistant's answers, as a client sends
# them back with its next question.
HISTORY = (("Name a colour.", "Blue."), ("Name a fruit.", "An apple, which is a fruit."))


@dataclass(frozen=True, slots=True)
class Settings:
    """The suite's configuration, parsed once from the command line and the environment."""

    target: Target
    extra_headers: tuple[tuple[str, str], ...] = ()
    chat_template: str | None = None  # a family name, or a path to a Jinja template
    request_timeout_s: float = 120.0
    release_timeout_s: float = 10.0  # how long a slot may take to come back after a request ends
    launched: bool = False  # the suite started the reference server itself


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


@functools.cache
def _validator(profile: Profile, obj: str) -> Draft7Validator:
    return Draft7Validator(schemas.response_schema(profile, obj))


class Contract:
    """The promises of the target's profile and the requests that test them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.profile: Profile = settings.target.profile
        self.model = settings.target.model
        self._family, self._template = self._chat_template(settings.chat_template)
        # Whether the target takes `ignore_eos`: None until found out (`Slots` does, once, under the openai profile).
        self.ignore_eos: bool | None = True if self.profile == "anyscale" else None

    def _chat_template(self, option: str | None) -> tuple[ChatFamily | None, str | None]:
        by_model = schemas.family_for_model(self.model)
        if option is None:
            return by_model, None
        if option in CHAT_FAMILIES:
            return next(f for f in CHAT_FAMILIES if f == option), None
        return by_model or "llama3", Path(option).read_text(encoding="utf-8")

    # What the profile promises.

    def errors(self, obj: str, instance: object) -> list[str]:
        """Where `instance` breaks the profile's schema of `obj` (`chat_completion`, `chat_chunk`, …)."""
        found = sorted(_validator(self.profile, obj).iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in found]

    def response_object(self, kind: Kind) -> str:
        return "chat_completion" if kind == "chat" else "completion"

    def chunk_object(self, kind: Kind) -> str:
        return "chat_chunk" if kind == "chat" else "completion_chunk"

    def id_problem(self, kind: Kind, ident: object) -> str | None:
        """Why `ident` is not an id of this profile, or None."""
        if not isinstance(ident, str):
            return f"the id is not a string: {ident!r}"
        if self.profile == "anyscale":
            prefix = f"{self.model}-"
            if not ident.startswith(prefix) or not re.fullmatch(r"[0-9a-f]{32}", ident[len(prefix) :]):
                return f"profile anyscale: the id must be `{self.model}-<32 hex digits>`: {ident!r}"
            return None
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        if not re.fullmatch(re.escape(prefix) + r"[A-Za-z0-9]+", ident):
            return f"profile openai: a {kind} id must be `{prefix}` and letters or digits: {ident!r}"
        return None

    # What the suite sends.

    @property
    def family(self) -> ChatFamily | None:
        return self._family

    def conversation(self, question: str = QUESTION) -> list[dict[str, str]]:
        """The spec's example conversation; Mistral's template has no system role, so it gets the question only."""
        user = {"role": "user", "content": question}
        return [user] if self._family == "mistral" else [{"role": "system", "content": SYSTEM}, user]

    def multi_turn(self, question: str = QUESTION) -> list[dict[str, str]]:
        """A three-turn conversation: the spec's example with two earlier exchanges, the assistant's answers in it."""
        *head, last = self.conversation(question)
        earlier = [
            {"role": role, "content": text}
            for turn in HISTORY
            for role, text in zip(("user", "assistant"), turn, strict=True)
        ]
        return [*head, *earlier, last]

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The conversation as one completion prompt, rendered with the model family's chat template."""
        assert self._family is not None, (
            f"the chat template of {self.model!r} is unknown; pass --chat-template with one of "
            f"{', '.join(CHAT_FAMILIES)} or the path of a Jinja template"
        )
        return schemas.render_chat(self._family, messages, template=self._template)

    @property
    def bos(self) -> str:
        assert self._family is not None, f"the chat template family of {self.model!r} is unknown"
        return schemas.SPECIAL_TOKENS[self._family]["bos_token"]

    def body(self, kind: Kind, question: str = QUESTION, **extra: Any) -> dict[str, Any]:
        """A question at temperature 0, as a chat request or as its templated completion prompt."""
        body: dict[str, Any] = {"model": self.model, "temperature": 0, "max_tokens": MAX_TOKENS}
        if kind == "chat":
            body["messages"] = self.conversation(question)
        else:
            body["prompt"] = self.render(self.conversation(question)) if self._family is not None else question
        return {**body, **extra}

    def hold_body(self) -> dict[str, Any]:
        """A stream that lasts: no max_tokens (the rest of the context), and no end at EOS where the target allows.

        `ignore_eos` is vLLM's: the anyscale profile's API takes it, but the openai profile does not define it and a
        strict server refuses it (422), which would fail every limit check for a field no check is about. Under
        that profile it is sent only once the target was found to take it. Found out rather than never sent:
        without it a stream ends where the model stops — on the simulator after ~100 tokens, some far sooner,
        well within a check that holds N streams — and its slot coming back mid-check would fail the check
        wrongly; one 1-token request keeps the checks as strict wherever the target allows it.
        """
        body = {"model": self.model, "prompt": "Count from one to one million.", "stream": True}
        return {**body, "ignore_eos": True} if self.ignore_eos else body

    def quick_body(self) -> dict[str, Any]:
        return {"model": self.model, "prompt": "Hi", "max_tokens": 1}
