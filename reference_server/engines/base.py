"""The contract between the HTTP layer and an engine.

The HTTP layer owns shapes, ids, errors and SSE framing; an engine owns tokens and timing. An engine renders
chat templates, tokenizes prompts exactly as it will process them, and streams token deltas for one request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

FinishReason = Literal["stop", "length"]


class PromptError(ValueError):
    """The engine cannot turn this conversation into a prompt (e.g. the template rejects its roles)."""


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What `/v1/models` says about a served model."""

    id: str
    max_model_len: int
    owned_by: str = "reference-server"
    created: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """The sampling arguments an engine may honour; the HTTP layer has already validated their ranges.

    `max_tokens` is always set: the HTTP layer fills it with what is left of the context when the client
    did not send one.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    min_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt exactly as the engine will process it: `token_ids` is what `usage.prompt_tokens` counts."""

    text: str
    token_ids: Sequence[int]


@dataclass(slots=True)  # not frozen: built once per token, and a frozen dataclass costs 3× as much to build
class Delta:
    """New output of one request: text, how many tokens produced it, and the finish reason on the last one."""

    text: str
    token_count: int
    finish_reason: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class EngineStats:
    running: int
    waiting: int
    finished_total: int = 0
    aborted_total: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    """An inference engine serving one or more models in this process."""

    @property
    def models(self) -> Sequence[ModelCard]: ...

    async def start(self) -> None:
        """Load models and start background work; the server serves only after this returns."""

    async def stop(self) -> None:
        """Abort whatever still runs and release resources."""

    def apply_chat_template(self, model: str, messages: Sequence[Message]) -> str:
        """Render a conversation with the model's own chat template and the generation prompt appended.

        Raises `PromptError` when the template rejects the conversation.
        """

    def tokenize(self, model: str, text: str) -> Prompt:
        """Tokenize verbatim: no template and no special tokens added (a BOS must already be in `text`)."""

    def generate(self, request_id: str, model: str, prompt: Prompt, sampling: SamplingOptions) -> AsyncIterator[Delta]:
        """Stream the deltas of one request; the last delta carries the finish reason.

        If the consumer stops iterating early (client gone, error), it must call `abort(request_id)`.
        """

    async def abort(self, request_id: str) -> None:
        """Stop a request that is queued or running; a no-op for one that has finished."""

    def stats(self) -> EngineStats:
        """Sequences running and waiting now, and counters since start."""
