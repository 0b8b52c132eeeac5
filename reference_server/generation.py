"""One admitted request on its way through the engine: its choices' deltas, its non-streamed response, its metrics.

The streamed response is written by `stream`, from the same deltas and choices.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from reference_server import traces
from reference_server.choices import Choice
from reference_server.engines.base import Delta, Engine, Prompt, SamplingOptions
from reference_server.faults import FaultPlan
from reference_server.limiter import Slot
from reference_server.profile import Usage, response_body
from reference_server.protocol import CompletionRequest
from reference_server.sampling import choice_sampling
from reference_server.state import ServerState

JSON = "application/json"


class Generation:
    """One admitted request, from its engine requests to the metrics of its answer."""

    def __init__(
        self,
        state: ServerState,
        request: web.Request,
        req: CompletionRequest,
        slot: Slot,
        ident: str,
        prompt: Prompt,
        sampling: SamplingOptions,
        plan: FaultPlan,
        trace: traces.Trace | None,
    ) -> None:
        self.state = state
        self.request = request
        self.req = req
        self.slot = slot
        self.ident = ident
        self.prompt = prompt
        self.sampling = sampling
        self.plan = plan
        self.trace = trace
        self.created = int(time.time())
        self.endpoint = "chat" if req.kind == "chat" else "completion"
        self.started_s = time.perf_counter()
        self.completed = False  # the last byte was written

    def headers(self, content_type: str) -> dict[str, str]:
        return {
            "Content-Type": content_type,
            "x-request-id": self.ident,
            "x-concurrency-limit": str(self.slot.limit),
            "x-concurrency-remaining": str(self.slot.remaining),
        }

    async def deltas(self, index: int = 0) -> AsyncIterator[Delta]:
        """Choice `index`'s deltas; if iteration stops early for any reason, its engine request is aborted."""
        engine: Engine = self.state.engine
        request_id = self.ident if index == 0 else f"{self.ident}-{index}"
        sampling = choice_sampling(self.sampling, index)
        generator = engine.generate(request_id, self.req.model, self.prompt, sampling)
        finished = False
        through, req = self.plan.delta, self.req
        try:
            async for delta in generator:
                yield through(delta, req)
                if delta.finish_reason is not None:
                    finished = True
        finally:
            if not finished:
                await engine.abort(request_id)
            await generator.aclose()  # type: ignore[attr-defined]

    async def merged(self) -> AsyncIterator[tuple[int, Delta]]:
        """The deltas of all n choices, as they come; a failure of one ends them all."""
        queue: asyncio.Queue[tuple[int, Delta] | Exception | None] = asyncio.Queue()

        async def pump(index: int) -> None:
            try:
                async for delta in self.deltas(index):
                    queue.put_nowait((index, delta))
            except Exception as exc:  # handed to the consumer, which raises it
                queue.put_nowait(exc)
            finally:
                queue.put_nowait(None)

        pumps = [asyncio.create_task(pump(i)) for i in range(self.req.n)]
        running = len(pumps)
        try:
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield item
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    def choices(self) -> list[Choice]:
        ids = self.plan.call_ids()
        return [Choice(i, self.req, ids) for i in range(self.req.n)]

    def account(self, usage: Usage, first_token_s: float | None) -> None:
        """The metrics of an answer written to its last byte."""
        m = self.state.metrics
        m.prompt_tokens.inc(usage.prompt_tokens)
        if usage.cached_tokens:
            m.prompt_tokens_cached.inc(usage.cached_tokens)
        m.completion_tokens.inc(usage.completion_tokens)
        if first_token_s is not None:
            m.ttft.labels(self.endpoint).observe(first_token_s - self.started_s)
        m.latency.labels(self.endpoint).observe(time.perf_counter() - self.started_s)

    async def respond(self) -> web.StreamResponse:
        """The non-streamed response: every delta gathered, then one body."""
        choices = self.choices()
        first_token_s: float | None = None
        cached: int | None = None
        deltas = self.deltas() if self.req.n == 1 else self.merged()
        async for item in deltas:
            index, delta = (0, item) if isinstance(item, Delta) else item
            if first_token_s is None and delta.token_count:
                first_token_s = time.perf_counter()
            if delta.cached_tokens is not None and index == 0:  # the prompt is counted once, as choice 0 saw it
                cached = delta.cached_tokens
            choices[index].gather(delta)
        usage = Usage(len(self.prompt.token_ids), sum(c.tokens for c in choices), cached)
        body: dict[str, Any] = response_body(
            self.state.config.profile,
            self.req.kind,
            self.ident,
            self.created,
            self.req.model,
            [c.body() for c in choices],
            usage,
        )
        resp = web.Response(body=orjson.dumps(self.plan.body(body)), headers=self.headers(JSON))
        await resp.prepare(self.request)
        await resp.write_eof()
        self.completed = True
        if self.trace is not None:
            self.trace.first_token_ns = self.trace.end_ns = time.perf_counter_ns()
        self.account(usage, first_token_s)
        return resp
