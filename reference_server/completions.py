"""`POST /v1/chat/completions` and `POST /v1/completions`: one request, from slot to last byte.

A slot is taken right after authentication and released when the last byte is written, when the request fails,
or when the client goes away; in the last two cases the engine request is aborted first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from reference_server import tools, traces
from reference_server.choices import Choice
from reference_server.engines.base import Delta, Engine, Prompt, PromptError, SamplingOptions
from reference_server.errors import APIError, bad_request, not_found
from reference_server.faults import FaultPlan
from reference_server.limiter import Outcome, Slot
from reference_server.profile import ChunkStream, Usage, new_id, response_body, sse
from reference_server.protocol import CompletionRequest, Kind
from reference_server.state import STATE, ServerState, fault_plan, request_key

log = logging.getLogger(__name__)

_JSON = "application/json"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "completion")


async def _complete(request: web.Request, kind: Kind) -> web.StreamResponse:
    plan = fault_plan(request)
    try:
        return await _serve(request, kind, plan)
    except APIError as error:
        plan.error(error)  # answered wrongly, where the fault says so
        raise


async def _serve(request: web.Request, kind: Kind, plan: FaultPlan) -> web.StreamResponse:
    state = request.app[STATE]
    key = request_key(request)
    limiter = plan.limiter(state.limiter, state.slot_ledger)
    slot = limiter.try_acquire(key.name, key.concurrency_limit)
    if slot is None:
        state.metrics.rate_limited.labels(key.name).inc()
        limit = key.concurrency_limit or state.limiter.default_limit
        raise APIError(
            429,
            f"Too many concurrent requests for this API key: the limit is {limit} in flight. "
            "Retry when one of them has finished.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": "1", "x-concurrency-limit": str(limit), "x-concurrency-remaining": "0"},
        )
    outcome: Outcome = "failed"
    streamed = False
    try:
        body = await _read_body(request, state.config.body_timeout_s)
        received_ns, received_by = traces.arrival(request.protocol)
        req = state.parser.parse(kind, plan.request_body(kind, body))
        plan = plan.for_request(req)
        streamed = req.stream
        prompt = _prompt(state, req, plan)
        sampling = _sampling(state, req, prompt, plan)
        plan.before_response()
        ident = plan.ident(new_id(state.config.profile, kind, req.model))
        trace = state.traces.start(ident, received_ns, received_by) if traces.HEADER in request.headers else None
        if trace is not None and (client_id := request.headers.get("x-request-id")):
            state.traces.alias(client_id, trace)
        run = _Run(state, request, req, slot, ident, prompt, sampling, plan, trace)
        try:
            response = await (run.stream() if req.stream else run.respond())
        except PromptError as exc:  # the engine refused the request before anything was sent
            raise bad_request(str(exc), param="messages" if kind == "chat" else "prompt") from None
        outcome = "finished" if run.completed else "abandoned"
        return response
    except asyncio.CancelledError:
        outcome = "abandoned"
        raise
    finally:
        limiter.release(slot, outcome, streamed=streamed)


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    ctype = request.headers.get("Content-Type", _JSON).split(";", 1)[0].strip().lower()
    if ctype != _JSON and not ctype.endswith("+json"):
        raise APIError(415, f"Unsupported Content-Type {ctype!r}; send {_JSON}.", param="Content-Type")
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        # The rest of the body may still come: close the connection rather than read on.
        raise APIError(
            408,
            f"The request body did not arrive within {timeout_s:g} s.",
            code="timeout",
            headers={"Connection": "close"},
        ) from None


def _prompt(state: ServerState, req: CompletionRequest, plan: FaultPlan) -> Prompt:
    if req.model not in state.cards:
        raise not_found(f"The model `{req.model}` does not exist.", param="model", code="model_not_found")
    engine = state.engine
    if req.messages is not None:
        # Only `auto` shows the tools to the model; a required or named call is made by guided decoding.
        offered = req.tools if req.tool_choice.mode == "auto" else ()
        try:
            text = engine.apply_chat_template(req.model, req.messages, offered)
        except PromptError as exc:
            raise bad_request(str(exc), param="messages") from None
    else:
        assert req.prompt is not None
        text = plan.completion_prompt(req.model, req.prompt)
    return engine.tokenize(req.model, text)


def _sampling(state: ServerState, req: CompletionRequest, prompt: Prompt, plan: FaultPlan) -> SamplingOptions:
    context = state.cards[req.model].max_model_len
    prompt_tokens = len(prompt.token_ids)
    param = "messages" if req.kind == "chat" else "prompt"
    if req.max_tokens is None:
        if prompt_tokens >= context:
            raise bad_request(
                f"This model's maximum context length is {context} tokens. However, your prompt has "
                f"{prompt_tokens} tokens. Please reduce the length of the {param}.",
                param=param,
                code="context_length_exceeded",
            )
        max_tokens = context - prompt_tokens
    else:
        max_tokens = req.max_tokens
        if prompt_tokens + max_tokens > context:
            raise bad_request(
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {param}, {max_tokens} in the "
                f"completion). Please reduce the length of the {param} or completion.",
                param=param,
                code="context_length_exceeded",
            )
    structured = plan.structured(req, tools.guided(req.tool_choice, req.tools) or req.structured)
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        ignore_eos=req.ignore_eos,
        min_tokens=min(req.min_tokens, max_tokens),
        logprobs=req.logprobs,
        structured=structured,
        tools=req.tools if req.tool_choice.mode == "auto" else (),
    )


def _choice_sampling(sampling: SamplingOptions, index: int) -> SamplingOptions:
    """Choice `index` of n: its own seed when the request has one, so that the choices differ reproducibly."""
    if index == 0 or sampling.seed is None:
        return sampling
    seed = sampling.seed + index
    return dataclasses.replace(sampling, seed=seed if seed < 2**63 else sampling.seed - index)


class _Run:
    """One admitted request on its way through the engine to the client."""

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

    def _headers(self, content_type: str) -> dict[str, str]:
        return {
            "Content-Type": content_type,
            "x-request-id": self.ident,
            "x-concurrency-limit": str(self.slot.limit),
            "x-concurrency-remaining": str(self.slot.remaining),
        }

    async def _deltas(self, index: int = 0) -> AsyncIterator[Delta]:
        """Choice `index`'s deltas; if iteration stops early for any reason, its engine request is aborted."""
        engine: Engine = self.state.engine
        request_id = self.ident if index == 0 else f"{self.ident}-{index}"
        sampling = _choice_sampling(self.sampling, index)
        generator = engine.generate(request_id, self.req.model, self.prompt, sampling)
        finished = False
        try:
            async for delta in generator:
                yield self.plan.delta(delta, self.req)
                if delta.finish_reason is not None:
                    finished = True
        finally:
            if not finished:
                await engine.abort(request_id)
            await generator.aclose()  # type: ignore[attr-defined]

    async def _merged(self) -> AsyncIterator[tuple[int, Delta]]:
        """The deltas of all n choices, as they come; a failure of one ends them all."""
        queue: asyncio.Queue[tuple[int, Delta] | Exception | None] = asyncio.Queue()

        async def pump(index: int) -> None:
            try:
                async for delta in self._deltas(index):
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

    def _choices(self) -> list[Choice]:
        ids = self.plan.call_ids()
        return [Choice(i, self.req, ids) for i in range(self.req.n)]

    def _account(self, usage: Usage, first_token_s: float | None) -> None:
        m = self.state.metrics
        m.prompt_tokens.inc(usage.prompt_tokens)
        m.completion_tokens.inc(usage.completion_tokens)
        if first_token_s is not None:
            m.ttft.labels(self.endpoint).observe(first_token_s - self.started_s)
        m.latency.labels(self.endpoint).observe(time.perf_counter() - self.started_s)

    async def respond(self) -> web.StreamResponse:
        choices = self._choices()
        first_token_s: float | None = None
        deltas = self._deltas() if self.req.n == 1 else self._merged()
        async for item in deltas:
            index, delta = (0, item) if isinstance(item, Delta) else item
            if first_token_s is None and delta.token_count:
                first_token_s = time.perf_counter()
            choices[index].gather(delta)
        usage = Usage(len(self.prompt.token_ids), sum(c.tokens for c in choices))
        body: dict[str, Any] = response_body(
            self.state.config.profile,
            self.req.kind,
            self.ident,
            self.created,
            self.req.model,
            [c.body() for c in choices],
            usage,
        )
        resp = web.Response(body=orjson.dumps(self.plan.body(body)), headers=self._headers(_JSON))
        await resp.prepare(self.request)
        await resp.write_eof()
        self.completed = True
        if self.trace is not None:
            self.trace.first_token_ns = self.trace.end_ns = time.perf_counter_ns()
        self._account(usage, first_token_s)
        return resp

    async def stream(self) -> web.StreamResponse:
        plan = self.plan
        resp = web.StreamResponse(headers={**self._headers(plan.stream_content_type()), "Cache-Control": "no-cache"})
        await resp.prepare(self.request)
        chunks = ChunkStream(
            self.state.config.profile,
            self.req.kind,
            self.ident,
            self.created,
            self.req.model,
            self.req.include_usage,
        )
        index = 0
        trace = self.trace
        choices = self._choices()
        prompt_tokens = len(self.prompt.token_ids)
        unfinished = len(choices)

        async def emit(chunk: dict[str, Any], has_token: bool) -> None:
            nonlocal index
            for event in plan.events(index, chunk):
                if trace is not None:
                    trace.mark_chunk(has_token)
                await resp.write(event)
                if trace is not None:
                    trace.wrote_chunk()
            if stall := plan.stall_ms(index):
                await asyncio.sleep(stall / 1000)
            if plan.reset_after(index):
                raise _InjectedReset
            index += 1

        async def send(choice: Choice, delta: Delta) -> None:
            """A delta off the template path: its chunks, usage on the response's last finish reason."""
            nonlocal unfinished
            parts = choice.add(plan.stream_delta(delta, tokens, self.req))
            if delta.finish_reason is not None:
                unfinished -= 1
            has_token = delta.token_count > 0
            for n, part in enumerate(parts):
                last = unfinished == 0 and n == len(parts) - 1 and part.get("finish_reason") is not None
                usage = Usage(prompt_tokens, tokens) if last else None
                await emit(chunks.chunk([part], usage), has_token and n == 0)

        tokens = 0
        first_token_s: float | None = None
        template = not plan.rewrites_chunks and self.req.plain  # the fast path: a pre-serialised event per token
        try:
            if self.req.kind == "chat" and plan.sends_role():
                for choice in choices:
                    await emit(chunks.role_chunk(choice.index), False)
            if self.req.n == 1:
                only = choices[0]
                async for delta in self._deltas():
                    tokens += delta.token_count
                    if first_token_s is None and delta.token_count:
                        first_token_s = time.perf_counter()
                    if template and delta.finish_reason is None and not delta.reasoning:
                        if trace is not None:
                            trace.mark_chunk(delta.token_count > 0)
                        await resp.write(chunks.delta_event(delta.text))
                        if trace is not None:
                            trace.wrote_chunk()
                        continue
                    await send(only, delta)
            else:
                async for i, delta in self._merged():
                    tokens += delta.token_count
                    if first_token_s is None and delta.token_count:
                        first_token_s = time.perf_counter()
                    await send(choices[i], delta)
            final = Usage(prompt_tokens, tokens)
            if (usage_chunk := chunks.usage_chunk(final)) is not None:
                await emit(usage_chunk, False)
            if trace is not None:  # stamped as it is written, as the chunks are: not after the write yields
                trace.end_ns = time.perf_counter_ns()
            await resp.write(plan.done())
            if trace is not None:
                trace.end_written_ns = time.perf_counter_ns()
            await resp.write_eof()
            self.completed = True
        except _InjectedReset:
            if (transport := self.request.transport) is not None:
                transport.abort()
            return resp
        except ConnectionResetError:
            log.debug("client went away during %s", self.ident)
            return resp
        except Exception:
            # The status line is gone already: say what happened in the stream and end it without [DONE].
            log.exception("engine failed during %s", self.ident)
            error = APIError(500, "The engine failed while generating.", type="server_error", code="engine_error")
            with contextlib.suppress(ConnectionResetError):
                await resp.write(sse(error.envelope()))
            return resp
        self._account(Usage(prompt_tokens, tokens), first_token_s)
        return resp


class _InjectedReset(Exception):
    """Raised inside a stream to reset its connection (the `reset` fault)."""
