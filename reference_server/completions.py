"""`POST /v1/chat/completions` and `POST /v1/completions`: one request, from slot to last byte.

A slot is taken right after authentication and released when the last byte is written, when the request fails,
or when the client goes away; in the last two cases the engine request is aborted first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from reference_server import faults, traces
from reference_server.engines.base import Delta, Engine, FinishReason, Prompt, PromptError, SamplingOptions
from reference_server.errors import APIError, bad_request, not_found
from reference_server.faults import Fault, FaultPlan
from reference_server.limiter import Slot
from reference_server.profile import DONE, ChunkStream, Usage, new_id, response_body, sse
from reference_server.protocol import CompletionRequest, Kind
from reference_server.state import STATE, ServerState, request_key

log = logging.getLogger(__name__)

_JSON = "application/json"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "completion")


async def _complete(request: web.Request, kind: Kind) -> web.StreamResponse:
    state = request.app[STATE]
    key = request_key(request)
    fault = faults.parse(request.headers.get(faults.HEADER)) if state.config.enable_faults else None
    limit = key.concurrency_limit or state.limiter.default_limit
    slots = faults.SlotFaults(fault, state.limiter, state.slot_ledger) if fault is not None else None
    slot = (
        slots.acquire(slots.key_name(key.name), limit)
        if slots is not None
        else state.limiter.try_acquire(key.name, key.concurrency_limit)
    )
    if slot is None:
        state.metrics.rate_limited.labels(key.name).inc()
        error = APIError(
            429,
            f"Too many concurrent requests for this API key: the limit is {limit} in flight. "
            "Retry when one of them has finished.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": "1", "x-concurrency-limit": str(limit), "x-concurrency-remaining": "0"},
        )
        raise fault.error(error) if fault is not None else error
    outcome: faults.Outcome = "failed"
    streamed = False
    try:
        body = await _read_body(request, state.config.body_timeout_s)
        received_ns, received_by = traces.arrival(request.protocol)
        if fault is not None:
            fault.check_request(kind, body)
        req = state.parser.parse(kind, body)
        streamed = req.stream
        prompt = _prompt(state, req, fault)
        sampling = _sampling(state, req, prompt, fault)
        if fault is not None:
            fault.before_response()
        ident = new_id(state.config.profile, kind, req.model)
        ident = fault.ident(ident) if fault is not None else ident
        trace = state.traces.start(ident, received_ns, received_by) if traces.HEADER in request.headers else None
        if trace is not None and (client_id := request.headers.get("x-request-id")):
            state.traces.alias(client_id, trace)
        run = _Run(state, request, req, slot, ident, prompt, sampling, fault, trace)
        try:
            response = await (run.stream() if req.stream else run.respond())
        except PromptError as exc:  # the engine refused the request before anything was sent
            raise bad_request(str(exc), param="messages" if kind == "chat" else "prompt") from None
        outcome = "finished" if run.completed else "abandoned"
        return response
    except asyncio.CancelledError:
        outcome = "abandoned"
        raise
    except APIError as error:
        if fault is not None:
            fault.error(error)  # answered wrongly, as the fault says
        raise
    finally:
        if slots is not None:
            slots.release(slot, outcome, streamed)
        else:
            state.limiter.release(slot)


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


def _prompt(state: ServerState, req: CompletionRequest, fault: FaultPlan | None) -> Prompt:
    if req.model not in state.cards:
        raise not_found(f"The model `{req.model}` does not exist.", param="model", code="model_not_found")
    engine = state.engine
    if req.messages is not None:
        try:
            text = engine.apply_chat_template(req.model, req.messages)
        except PromptError as exc:
            raise bad_request(str(exc), param="messages") from None
    else:
        assert req.prompt is not None
        text = req.prompt if fault is None else fault.completion_prompt(req.model, req.prompt)
    return engine.tokenize(req.model, text)


def _sampling(state: ServerState, req: CompletionRequest, prompt: Prompt, fault: FaultPlan | None) -> SamplingOptions:
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
    kind = fault.fault if fault is not None else None
    return SamplingOptions(
        max_tokens=max_tokens + 1 if kind is Fault.IGNORE_MAX_TOKENS else max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=() if kind is Fault.IGNORE_STOP else req.stop,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        ignore_eos=req.ignore_eos,
        min_tokens=min(req.min_tokens, max_tokens),
    )


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
        fault: FaultPlan | None,
        trace: traces.Trace | None,
    ) -> None:
        self.state = state
        self.request = request
        self.req = req
        self.slot = slot
        self.ident = ident
        self.prompt = prompt
        self.sampling = sampling
        self.fault = fault
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

    async def _deltas(self) -> AsyncIterator[Delta]:
        """The engine's deltas; if iteration stops early for any reason, the engine request is aborted."""
        engine: Engine = self.state.engine
        generator = engine.generate(self.ident, self.req.model, self.prompt, self.sampling)
        finished = False
        try:
            async for delta in generator:
                yield delta if self.fault is None else self.fault.delta(delta, bool(self.req.stop))
                if delta.finish_reason is not None:
                    finished = True
        finally:
            if not finished:
                await engine.abort(self.ident)
            await generator.aclose()  # type: ignore[attr-defined]

    def _account(self, usage: Usage, first_token_s: float | None) -> None:
        m = self.state.metrics
        m.prompt_tokens.inc(usage.prompt_tokens)
        m.completion_tokens.inc(usage.completion_tokens)
        if first_token_s is not None:
            m.ttft.labels(self.endpoint).observe(first_token_s - self.started_s)
        m.latency.labels(self.endpoint).observe(time.perf_counter() - self.started_s)

    async def respond(self) -> web.StreamResponse:
        parts: list[str] = []
        tokens = 0
        finish: FinishReason = "stop"
        first_token_s: float | None = None
        async for delta in self._deltas():
            if first_token_s is None and delta.token_count:
                first_token_s = time.perf_counter()
            parts.append(delta.text)
            tokens += delta.token_count
            if delta.finish_reason is not None:
                finish = delta.finish_reason
        usage = Usage(len(self.prompt.token_ids), tokens)
        body: dict[str, Any] = response_body(
            self.state.config.profile,
            self.req.kind,
            self.ident,
            self.created,
            self.req.model,
            "".join(parts),
            finish,
            usage,
        )
        if self.fault is not None:
            body = self.fault.body(body)
        resp = web.Response(body=orjson.dumps(body), headers=self._headers(_JSON))
        await resp.prepare(self.request)
        await resp.write_eof()
        self.completed = True
        if self.trace is not None:
            self.trace.first_token_ns = self.trace.end_ns = time.perf_counter_ns()
        self._account(usage, first_token_s)
        return resp

    async def stream(self) -> web.StreamResponse:
        fault = self.fault
        kind = fault.fault if fault is not None else None
        content_type = _JSON if kind is Fault.WRONG_CONTENT_TYPE else "text/event-stream"
        resp = web.StreamResponse(headers={**self._headers(content_type), "Cache-Control": "no-cache"})
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

        async def emit(chunk: dict[str, Any], has_token: bool) -> None:
            nonlocal index
            events = fault.events(index, chunk) if fault is not None else (sse(chunk),)
            for event in events:
                if trace is not None:
                    trace.mark_chunk(has_token)
                await resp.write(event)
                if trace is not None:
                    trace.wrote_chunk()
            if fault is not None:
                if stall := fault.stall_ms(index):
                    await asyncio.sleep(stall / 1000)
                if fault.reset_after(index):
                    raise _InjectedReset
            index += 1

        tokens = 0
        first_token_s: float | None = None
        try:
            if self.req.kind == "chat" and kind is not Fault.MISSING_ROLE:
                await emit(chunks.role_chunk(), False)
            async for delta in self._deltas():
                tokens += delta.token_count
                if first_token_s is None and delta.token_count:
                    first_token_s = time.perf_counter()
                if fault is None and delta.finish_reason is None:  # most chunks: an event from the template
                    if trace is not None:
                        trace.mark_chunk(delta.token_count > 0)
                    await resp.write(chunks.delta_event(delta.text))
                    if trace is not None:
                        trace.wrote_chunk()
                    continue
                usage = Usage(len(self.prompt.token_ids), tokens) if delta.finish_reason else None
                text = delta.text + "~" if kind is Fault.TEXT_DRIFT and tokens == 1 else delta.text
                await emit(chunks.delta_chunk(text, delta.finish_reason, usage), delta.token_count > 0)
            final = Usage(len(self.prompt.token_ids), tokens)
            if (usage_chunk := chunks.usage_chunk(final)) is not None:
                await emit(usage_chunk, False)
            if trace is not None:  # stamped as it is written, as the chunks are: not after the write yields
                trace.end_ns = time.perf_counter_ns()
            await resp.write(fault.done() if fault is not None else DONE)
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
        self._account(Usage(len(self.prompt.token_ids), tokens), first_token_s)
        return resp


class _InjectedReset(Exception):
    """Raised inside a stream to reset its connection (the `reset` fault)."""
