"""The aiohttp application: routes, the error envelope, authentication and draining."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from reference_server import completions, faults
from reference_server.auth import KeyRing
from reference_server.config import ServerConfig
from reference_server.engines.base import Engine
from reference_server.errors import APIError, not_found
from reference_server.limiter import ConcurrencyLimiter
from reference_server.metrics import ServerMetrics
from reference_server.openapi import openapi_document
from reference_server.protocol import RequestParser
from reference_server.state import API_KEY, FAULT_PLAN, STATE, ServerState, fault_plan, request_key
from reference_server.traces import TraceStore

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_AUTHENTICATED = ("/v1/", "/debug/")


def _error_response(error: APIError, plain: bool = False) -> web.Response:
    if plain:  # the `not_envelope` fault
        resp = web.Response(status=error.status, text=error.message, headers=error.headers)
    else:
        resp = web.Response(
            status=error.status, body=error.body(), content_type="application/json", headers=error.headers
        )
    if error.headers.get("Connection") == "close":
        resp.force_close()  # the header alone does not make aiohttp close the connection
    return resp


def _from_http_exception(exc: web.HTTPException) -> APIError:
    status = exc.status
    if status == 404:
        return not_found("Not found: no such endpoint.", code="not_found")
    if status == 405:
        return APIError(
            405,
            "Method not allowed.",
            code="method_not_allowed",
            headers={"Allow": exc.headers.get("Allow", "")},
        )
    if status == 413:
        return APIError(413, "The request body is too large.", code="request_too_large")
    return APIError(
        status,
        exc.reason or "Request failed.",
        type="invalid_request_error" if status < 500 else "server_error",
    )


@web.middleware
async def _fault_plan(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's fault plan, parsed once from its header; every later step reads it from the request."""
    enabled = request.app[STATE].config.enable_faults
    request[FAULT_PLAN] = faults.plan_of(request.headers.get(faults.HEADER)) if enabled else faults.NO_FAULT
    return await handler(request)


@web.middleware
async def _envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        if request.path.startswith(_AUTHENTICATED):
            if state.draining:
                raise APIError(
                    503,
                    "The server is shutting down.",
                    type="server_error",
                    code="shutting_down",
                    headers={"Connection": "close", "Retry-After": "1"},
                )
            authorization = request.headers.get("Authorization")
            request[API_KEY] = fault_plan(request).authenticate(state.keyring, authorization)
        response = await handler(request)
        status = response.status
        return response
    except APIError as error:
        status = error.status
        return _error_response(error, fault_plan(request).plain_errors)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        converted = _from_http_exception(exc)
        status = converted.status
        return _error_response(converted)
    except (asyncio.CancelledError, ConnectionResetError):
        status = 499  # the client went away; nothing can be answered
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(APIError(500, "Internal server error.", type="server_error"))
    finally:
        state.metrics.requests.labels(endpoint, str(status)).inc()


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


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
    app = web.Application(middlewares=[_fault_plan, _envelope], client_max_size=config.max_body_bytes)
    limiter = ConcurrencyLimiter(config.concurrency_limit)
    metrics = ServerMetrics(engine.stats, limiter.snapshot)
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
