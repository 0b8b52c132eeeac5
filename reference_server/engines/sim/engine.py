"""The simulator engine: real chat templates, a deterministic tokenizer, planned text and batch timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from reference_server.config import SimOptions
from reference_server.engines.base import (
    Delta,
    EngineStats,
    FinishReason,
    Message,
    ModelCard,
    Prompt,
    PromptError,
    SamplingOptions,
    Tool,
)
from reference_server.engines.sim import output, text
from reference_server.engines.sim.batch import BatchModel
from reference_server.engines.sim.catalog import SimModel, lookup
from reference_server.engines.sim.conversation import template_messages
from reference_server.engines.sim.prefix_cache import PrefixCache
from reference_server.engines.sim.tokenizer import SimTokenizer
from schemas import ChatTemplateError, render_chat

# A zero-latency stream yields to the loop every this many tokens rather than every token (a loop round trip per
# token was the largest cost of the API layer in benchmarks/server_capacity/).
_YIELD_EVERY = 16


class SimEngine:
    def __init__(self, model_ids: tuple[str, ...], options: SimOptions) -> None:
        self._models = {m.id: m for m in lookup(model_ids)}
        self._tokenizers = {m.id: SimTokenizer(m.special_tokens) for m in self._models.values()}
        created = int(time.time())
        cap = options.max_model_len or 0
        self._cards = tuple(
            ModelCard(m.id, min(m.max_model_len, cap) if cap else m.max_model_len, created=created)
            for m in self._models.values()
        )
        self._options = options
        self._batch = BatchModel(options)
        blocks = options.prefix_cache_blocks
        self.prefix_cache = PrefixCache(options.block_size, blocks) if blocks else None
        self._aborted: set[str] = set()
        self._active: set[str] = set()
        self._finished_total = 0
        self._aborted_total = 0

    @property
    def models(self) -> Sequence[ModelCard]:
        return self._cards

    def model(self, model: str) -> SimModel:
        return self._models[model]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for request_id in list(self._active):
            await self.abort(request_id)

    def apply_chat_template(self, model: str, messages: Sequence[Message], tools: Sequence[Tool] = ()) -> str:
        # `tools` are not rendered: the simulated models' templates (their real ones) have no place for them, as
        # Llama 3 8B Instruct's has none; `generate` learns of them from `SamplingOptions.tools`.
        try:
            return render_chat(self._models[model].family, template_messages(messages))
        except ChatTemplateError as exc:
            raise PromptError(str(exc)) from None

    def tokenize(self, model: str, text: str) -> Prompt:
        return Prompt(text, self._tokenizers[model].encode(text))

    async def generate(
        self, request_id: str, model: str, prompt: Prompt, sampling: SamplingOptions
    ) -> AsyncIterator[Delta]:
        options = self._options
        pieces: tuple[str, ...] = ()
        finish: FinishReason = "stop"
        rich: list[Delta] | None = None
        if output.is_plain(sampling, options.reasoning_tokens):
            planned = text.plan(model, prompt.text, sampling, options.output_len_mean)
            pieces, finish = planned.pieces, planned.finish_reason
        else:
            sim = self._models[model]
            request = output.Request(
                model,
                sim.family,
                prompt.text,
                self._tokenizers[model],
                options.output_len_mean,
                options.reasoning_tokens,
            )
            rich = output.plan(request, sampling)
        self._active.add(request_id)
        batch = self._batch
        loop = asyncio.get_running_loop()
        entered = completed = False
        try:
            await batch.enter()
            entered = True
            # Looked up as the request is scheduled, as vLLM does: what was cached by then is not prefilled again.
            cached = self.prefix_cache.admit(prompt.token_ids) if self.prefix_cache is not None else None
            due = loop.time() + batch.first_token_delay_s(len(prompt.token_ids) - (cached or 0))
            count = len(pieces) if rich is None else len(rich)
            last = count - 1
            for i in range(count):
                # A late loop delays the token; it never makes later tokens come in a catch-up burst.
                now = loop.time()
                if due > now:
                    await asyncio.sleep(due - now)
                elif i % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # every token already due: still let other streams in now and then
                if request_id in self._aborted:
                    return
                delta = Delta(pieces[i], 1, finish if i == last else None) if rich is None else rich[i]
                if i == 0:
                    delta.cached_tokens = cached
                yield delta
                due = max(due, loop.time()) + batch.inter_token_delay_s()
            completed = True
        finally:
            # Whatever ended the request early (abort, cancellation, a consumer that stopped) counts as an abort.
            if completed:
                self._finished_total += 1
            else:
                self._aborted_total += 1
            if entered:
                batch.leave()
            self._active.discard(request_id)
            self._aborted.discard(request_id)

    async def abort(self, request_id: str) -> None:
        if request_id in self._active:
            self._aborted.add(request_id)

    def stats(self) -> EngineStats:
        cache = self.prefix_cache
        extra = {} if cache is None else {"prefix_cache_blocks": float(len(cache))}
        return EngineStats(
            running=self._batch.running,
            waiting=self._batch.waiting,
            finished_total=self._finished_total,
            aborted_total=self._aborted_total,
            extra=extra,
        )

    def metrics_text(self) -> bytes:
        return b""  # the server's own metrics say what the simulator holds
