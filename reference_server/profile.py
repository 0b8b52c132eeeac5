"""Response shapes under the two profiles: `anyscale` (the spec page) and `openai`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import orjson

from reference_server.engines.base import FinishReason
from reference_server.protocol import Kind
from schemas import Profile

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Usage:
    """A response's token counts. `cached_tokens`, when the engine has a prefix cache, is reported under the
    `openai` profile as `prompt_tokens_details.cached_tokens`, as OpenAI and vLLM report it; the `anyscale` profile
    keeps the spec page's three counts (its usage object has no place for it, and clients validating that shape
    would reject one)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None

    def as_dict(self, profile: Profile = "anyscale") -> dict[str, Any]:
        counts: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if profile == "openai" and self.cached_tokens is not None:
            counts["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return counts


def new_id(profile: Profile, kind: Kind, model: str) -> str:
    suffix = os.urandom(16).hex()
    if profile == "anyscale":
        return f"{model}-{suffix}"
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{suffix}"


def response_object(profile: Profile, kind: Kind) -> str:
    return "chat.completion" if profile == "openai" and kind == "chat" else "text_completion"


def chunk_object(profile: Profile, kind: Kind) -> str:
    return "chat.completion.chunk" if profile == "openai" and kind == "chat" else "text_completion"


def response_body(
    profile: Profile,
    kind: Kind,
    ident: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: Usage,
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": response_object(profile, kind),
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage.as_dict(profile),
    }


_MARK = "\x00mark\x00"  # stands for a chunk's text in its template; no id, model or object name contains it


class ChunkStream:
    """Builds the SSE events of one streamed response: every chunk shares `id` and `created`.

    `anyscale` puts `usage` on the chunk that carries the finish reason; `openai` sends it only when asked
    (`stream_options.include_usage`), in a last chunk with `choices: []`, and `usage: null` on the others.
    """

    def __init__(self, profile: Profile, kind: Kind, ident: str, created: int, model: str, include_usage: bool) -> None:
        self.kind = kind
        self.profile = profile
        self.include_usage = include_usage
        self.head: dict[str, Any] = {
            "id": ident,
            "object": chunk_object(profile, kind),
            "created": created,
            "model": model,
        }
        self._usage_null = profile == "openai" and include_usage
        # Every chunk between the first and the last differs from the others only in its text: its event is built
        # from the two halves around the text rather than by serialising a new dict per token.
        event = sse(self.delta_chunk(_MARK, None, None))
        self._delta_head, self._delta_tail = event.split(orjson.dumps(_MARK))

    def role_chunk(self, index: int = 0) -> dict[str, Any]:
        return self.chunk([{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])

    def delta_chunk(self, text: str, finish: FinishReason | None, usage: Usage | None) -> dict[str, Any]:
        choice: dict[str, Any] = (
            {"index": 0, "delta": {"content": text}, "finish_reason": finish}
            if self.kind == "chat"
            else {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        )
        return self.chunk([choice], usage if finish is not None else None)

    def chunk(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, Any]:
        """A chunk of these choices; `usage` is given with the response's last finish reason."""
        chunk = {**self.head, "choices": choices}
        if self.profile == "anyscale" and usage is not None:
            chunk["usage"] = usage.as_dict(self.profile)
        elif self._usage_null:
            chunk["usage"] = None
        return chunk

    def delta_event(self, text: str) -> bytes:
        """The SSE event of `delta_chunk(text, None, None)`, byte for byte."""
        return self._delta_head + orjson.dumps(text) + self._delta_tail

    def usage_chunk(self, usage: Usage) -> dict[str, Any] | None:
        """The trailing usage-only chunk, where the profile has one."""
        if not self._usage_null:
            return None
        return {**self.head, "choices": [], "usage": usage.as_dict(self.profile)}


def sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"
