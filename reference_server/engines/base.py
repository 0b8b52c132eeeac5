"""The contract between the HTTP layer and an engine.

The HTTP layer owns shapes, ids, errors and SSE framing; an engine owns tokens and timing. An engine renders
chat templates, tokenizes prompts exactly as it will process them, and streams token deltas for one request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
    """One message of a conversation, as the chat template sees it.

    `tool_calls` (an assistant's earlier calls, OpenAI's shape) and `tool_call_id` (a `tool` message's answer to one)
    are passed to the template as they came; `content` is "" when the request had `null`.
    """

    role: str
    content: str
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the client offers (`tools[].function`): its name, description and JSON Schema of arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class StructuredOutput:
    """Output constrained by guided decoding: text that is one JSON value matching `schema`.

    `schema=None` is JSON mode: any JSON object. The HTTP layer builds one for `response_format` and for tool calls
    that must happen (`tool_choice` `required` or a named function); an engine only has to honour it.
    """

    schema: Mapping[str, Any] | None = None


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
    logprobs: int | None = None  # None: no logprobs; k >= 0: each token's logprob and the k most likely at its place
    structured: StructuredOutput | None = None
    # Tools offered with `tool_choice: auto`. Real models see them only through the chat template; the simulator,
    # which has no model, reads them here to decide whether to call one.
    tools: tuple[Tool, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token with its log probability and the `top` most likely tokens at its place, best first."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt exactly as the engine will process it: `token_ids` is what `usage.prompt_tokens` counts."""

    text: str
    token_ids: Sequence[int]


@dataclass(slots=True)  # not frozen: built once per token, and a frozen dataclass costs 3× as much to build
class Delta:
    """New output of one request: text, how many tokens produced it, and the finish reason on the last one.

    A reasoning model's thinking comes in `reasoning`, apart from the answer in `text` (an engine with a reasoning
    parser splits them); `logprobs` has one entry per token when the request asked for them. `cached_tokens`, on a
    delta of an engine with a prefix cache (the first one at least), is how many prompt tokens it found cached.
    """

    text: str
    token_count: int
    finish_reason: FinishReason | None = None
    reasoning: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    cached_tokens: int | None = None


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

    def apply_chat_template(self, model: str, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> str:
        """Render a conversation with the model's own chat template and the generation prompt appended.

        `tools` are offered to the template as Hugging Face templates take them (`tools=[{"type": "function",
        "function": {...}}]`); a template without tool support ignores them. Raises `PromptError` when the
        template rejects the conversation.
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

    def metrics_text(self) -> bytes:
        """The engine's own Prometheus metrics, as exposition text that `/metrics` serves beside the server's (vLLM's
        `vllm:*` families, under vLLM's names); empty when the engine keeps none of its own."""
