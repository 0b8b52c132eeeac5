"""`POST /v1/chat/completions` and `POST /v1/completions`: one request, from slot to last byte.

A slot is taken right after authentication and released when the last byte is written, when the request fails,
or when the client goes away; in the last two cases the engine request is aborted first. The request's fault plan
is consulted where a fault could act (`faults.FaultPlan`); without a fault it changes nothing.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from reference_server import traces
from reference_server.engines.base import PromptError
from reference_server.errors import APIError, bad_request
from reference_server.faults import FaultPlan
from reference_server.generation import JSON, Generation
from reference_server.limiter import Outcome, Slot
from reference_server.profile import new_id
from reference_server.protocol import Kind
from reference_server.sampling import engine_prompt, sampling_options
from reference_server.state import STATE, ServerState, fault_plan, request_key
from reference_server.stream import stream


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
    """The request's slot, held from before its body is read until its answer is over."""
    state = request.app[STATE]
    key = request_key(request)
    limiter = plan.limiter(state.limiter, state.slot_ledger)
    slot = limiter.try_acquire(key.name, key.concurrency_limit)
    if slot is None:
        state.metrics.rate_limited.labels(key.name).inc()
        raise _rate_limited(key.concurrency_limit or state.limiter.default_limit)
    outcome: Outcome = "failed"
    streamed = False
    try:
        gen = await _admit(request, state, kind, plan, slot)
        streamed = gen.req.stream
        try:
            response = await (stream(gen) if streamed else gen.respond())
        except PromptError as exc:  # the engine refused the request before anything was sent
            raise bad_request(str(exc), param="messages" if kind == "chat" else "prompt") from None
        outcome = "finished" if gen.completed else "abandoned"
        return response
    except asyncio.CancelledError:
        outcome = "abandoned"
        raise
    finally:
        limiter.release(slot, outcome, streamed=streamed)


async def _admit(request: web.Request, state: ServerState, kind: Kind, plan: FaultPlan, slot: Slot) -> Generation:
    """The request read, validated and put to the engine's terms: everything short of generating."""
    body = await _read_body(request, state.config.body_timeout_s)
    received_ns, received_by = traces.arrival(request.protocol)
    req = state.parser.parse(kind, plan.request_body(kind, body))
    plan = plan.for_request(req)
    prompt = engine_prompt(state.engine, state.cards, req, plan)
    sampling = sampling_options(state.cards[req.model].max_model_len, req, prompt, plan)
    plan.before_response()
    ident = plan.ident(new_id(state.config.profile, kind, req.model))
    trace = state.traces.start(ident, received_ns, received_by) if traces.HEADER in request.headers else None
    if trace is not None and (client_id := request.headers.get("x-request-id")):
        state.traces.alias(client_id, trace)
    return Generation(state, request, req, slot, ident, prompt, sampling, plan, trace)


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    ctype = request.headers.get("Content-Type", JSON).split(";", 1)[0].strip().lower()
    if ctype != JSON and not ctype.endswith("+json"):
        raise APIError(415, f"Unsupported Content-Type {ctype!r}; send {JSON}.", param="Content-Type")
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


def _rate_limited(limit: int) -> APIError:
    return APIError(
        429,
        f"Too many concurrent requests for this API key: the limit is {limit} in flight. "
        "Retry when one of them has finished.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": "1", "x-concurrency-limit": str(limit), "x-concurrency-remaining": "0"},
    )
