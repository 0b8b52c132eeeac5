"""A streamed response: SSE events of chunks, from the engine's deltas to `data: [DONE]`.

Each chunk is stamped for the request's trace as it is written. Plain requests (one choice of plain text) stream
every chunk but the last through a pre-serialised template; the others build each chunk from their `Choice`s.

The stream's end — the chunk of its last finish reason, any usage chunk, `data: [DONE]` and the chunked body's
terminator — goes out in one write, as one TCP segment: they are ready together, and a client that sees one segment
knows that they all arrived at its one receive time (`harness.client.stamped_socket`), where separate writes would
leave it unable to tell how long before the last of them the first one came. A fault that stalls or resets the
stream after one of them writes what is held first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

from aiohttp import web

from reference_server.choices import Choice
from reference_server.engines.base import Delta
from reference_server.errors import APIError
from reference_server.generation import Generation
from reference_server.profile import ChunkStream, Usage, sse

log = logging.getLogger(__name__)


class _InjectedReset(Exception):
    """Raised inside a stream to reset its connection (the `reset` fault)."""


class _Stream:
    """One streamed response as it is written: its chunks numbered for the fault plan, stamped for the trace."""

    def __init__(self, gen: Generation, resp: web.StreamResponse) -> None:
        req = gen.req
        self.gen = gen
        self.resp = resp
        self.plan = gen.plan
        self.trace = gen.trace
        self.chunks = ChunkStream(
            gen.state.config.profile, req.kind, gen.ident, gen.created, req.model, req.include_usage
        )
        self.choices = gen.choices()
        self.prompt_tokens = len(gen.prompt.token_ids)
        self.unfinished = len(self.choices)  # choices with no finish reason yet
        self.index = 0  # the number of the next chunk
        self.tokens = 0
        self.cached_tokens: int | None = None
        self.first_token_s: float | None = None
        self.held: list[bytes] = []  # written once every choice has finished: kept for the end's one write

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.tokens, self.cached_tokens)

    async def write_all(self) -> None:
        """Role chunks, the choices' chunks, the usage chunk where the profile has one, and the end."""
        if self.gen.req.kind == "chat" and self.plan.sends_role():
            for choice in self.choices:
                await self.emit(self.chunks.role_chunk(choice.index), False)
        if self.gen.req.n == 1:
            await self.write_one()
        else:
            await self.write_many()
        if (usage_chunk := self.chunks.usage_chunk(self.usage)) is not None:
            await self.emit(usage_chunk, False)
        trace = self.trace
        if trace is not None:  # stamped as it is written, as the chunks are: not after the write yields
            trace.end_ns = time.perf_counter_ns()
        await self.flush(self.plan.done(), end=True)
        if trace is not None:
            trace.end_written_ns = time.perf_counter_ns()

    async def write_one(self) -> None:
        only = self.choices[0]
        template = not self.plan.rewrites_chunks and self.gen.req.plain  # the fast path
        trace, resp, chunks = self.trace, self.resp, self.chunks
        async for delta in self.gen.deltas():
            self.count(delta)
            if template and delta.finish_reason is None and not delta.reasoning:
                # `write`, inlined: this runs once per token of most streams.
                if trace is not None:
                    trace.mark_chunk(delta.token_count > 0)
                await resp.write(chunks.delta_event(delta.text))
                if trace is not None:
                    trace.wrote_chunk()
            else:
                await self.send(only, delta)

    async def write_many(self) -> None:
        async for i, delta in self.gen.merged():
            if i and delta.cached_tokens is not None:  # the prompt is counted once, as choice 0 saw it
                delta = dataclasses.replace(delta, cached_tokens=None)
            self.count(delta)
            await self.send(self.choices[i], delta)

    def count(self, delta: Delta) -> None:
        self.tokens += delta.token_count
        if delta.cached_tokens is not None:
            self.cached_tokens = delta.cached_tokens
        if self.first_token_s is None and delta.token_count:
            self.first_token_s = time.perf_counter()

    async def send(self, choice: Choice, delta: Delta) -> None:
        """A delta off the template path: its chunks, usage on the response's last finish reason."""
        parts = choice.add(self.plan.stream_delta(delta, self.tokens, self.gen.req))
        if delta.finish_reason is not None:
            self.unfinished -= 1
        has_token = delta.token_count > 0
        for n, part in enumerate(parts):
            last = self.unfinished == 0 and n == len(parts) - 1 and part.get("finish_reason") is not None
            await self.emit(self.chunks.chunk([part], self.usage if last else None), has_token and n == 0)

    async def emit(self, chunk: dict[str, Any], has_token: bool) -> None:
        """Chunk number `index`, as the events the fault plan makes of it, then any stall or reset after it."""
        for event in self.plan.events(self.index, chunk):
            await self.write(event, has_token)
        stall, reset = self.plan.stall_ms(self.index), self.plan.reset_after(self.index)
        if stall or reset:
            await self.flush()
        if stall:
            await asyncio.sleep(stall / 1000)
        if reset:
            raise _InjectedReset
        self.index += 1

    async def write(self, event: bytes, has_token: bool) -> None:
        trace = self.trace
        if trace is not None:
            trace.mark_chunk(has_token)
        if not self.unfinished:  # the stream's end: held for its one write
            self.held.append(event)
            return
        await self.resp.write(event)
        if trace is not None:
            trace.wrote_chunk()

    async def flush(self, last: bytes = b"", end: bool = False) -> None:
        """Write what is held, then `last`, in one write; with `end`, the body's terminator in the same write."""
        data = b"".join([*self.held, last])
        if end:
            await self.resp.write_eof(data)
        elif data:
            await self.resp.write(data)
        if (trace := self.trace) is not None:
            for _ in self.held:
                trace.wrote_chunk()
        self.held.clear()


async def stream(gen: Generation) -> web.StreamResponse:
    """The streamed response of `gen`; once its status line is sent, a failure ends the stream, never raises."""
    resp = web.StreamResponse(headers={**gen.headers(gen.plan.stream_content_type()), "Cache-Control": "no-cache"})
    await resp.prepare(gen.request)
    out = _Stream(gen, resp)
    try:
        await out.write_all()
        gen.completed = True
    except _InjectedReset:
        if (transport := gen.request.transport) is not None:
            transport.abort()
        return resp
    except ConnectionResetError:
        log.debug("client went away during %s", gen.ident)
        return resp
    except Exception:
        # The status line is gone already: say what happened in the stream and end it without [DONE].
        log.exception("engine failed during %s", gen.ident)
        error = APIError(500, "The engine failed while generating.", type="server_error", code="engine_error")
        with contextlib.suppress(ConnectionResetError):
            await out.flush(sse(error.envelope()))
        return resp
    gen.account(out.usage, out.first_token_s)
    return resp
