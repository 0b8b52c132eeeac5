"""The application's middlewares, one concern each, outermost first (`MIDDLEWARES`).

`count` counts every answer by endpoint and status; `parse_faults` gives each request its fault plan; `envelope`
answers every error in the OpenAI envelope; `drain` refuses new API requests while the server shuts down;
`authenticate` finds the key of an API request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from reference_server import faults
from reference_server.errors import APIError, not_found
from reference_server.state import API_KEY, FAULT_PLAN, STATE, fault_plan

log = logging.getLogger(__name__)

AUTHENTICATED = ("/v1/", "/debug/")  # the paths that take a key (and that a draining server refuses)
CLIENT_GONE = 499  # the status counted for a request whose client went away: nothing could be answered


# aiohttp's own HTTP errors (routing, body size) as API errors, by status; any other keeps its status and reason.
HTTP_ERRORS: Mapping[int, Callable[[web.HTTPException], APIError]] = {
    404: lambda exc: not_found("Not found: no such endpoint.", code="not_found"),
    405: lambda exc: APIError(
        405, "Method not allowed.", code="method_not_allowed", headers={"Allow": exc.headers.get("Allow", "")}
    ),
    413: lambda exc: APIError(413, "The request body is too large.", code="request_too_large"),
}


def api_error(exc: web.HTTPException) -> APIError:
    """An HTTP error aiohttp raised, as the API answers it."""
    factory = HTTP_ERRORS.get(exc.status)
    if factory is not None:
        return factory(exc)
    error_type = "invalid_request_error" if exc.status < 500 else "server_error"
    return APIError(exc.status, exc.reason or "Request failed.", type=error_type)


def error_response(error: APIError, plain: bool = False) -> web.Response:
    """The response of an error: its envelope, or its bare message where a fault says so (`plain`)."""
    if plain:
        resp = web.Response(status=error.status, text=error.message, headers=error.headers)
    else:
        resp = web.Response(
            status=error.status, body=error.body(), content_type="application/json", headers=error.headers
        )
    if error.headers.get("Connection") == "close":
        resp.force_close()  # the header alone does not make aiohttp close the connection
    return resp


@web.middleware
async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    status = 500  # unless a response comes back: an error that escaped the envelope
    try:
        response = await handler(request)
        status = response.status
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        status = CLIENT_GONE
        raise
    finally:
        request.app[STATE].metrics.requests.labels(endpoint, str(status)).inc()


@web.middleware
async def parse_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's fault plan, parsed once from its header; every later step reads it from the request."""
    enabled = request.app[STATE].config.enable_faults
    request[FAULT_PLAN] = faults.plan_of(request.headers.get(faults.HEADER)) if enabled else faults.NO_FAULT
    return await handler(request)


@web.middleware
async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as error:
        return error_response(error, fault_plan(request).plain_errors)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(api_error(exc))
    except ConnectionResetError:
        raise  # the client went away; nothing can be answered
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(APIError(500, "Internal server error.", type="server_error"))


@web.middleware
async def drain(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.app[STATE].draining and request.path.startswith(AUTHENTICATED):
        raise APIError(
            503,
            "The server is shutting down.",
            type="server_error",
            code="shutting_down",
            headers={"Connection": "close", "Retry-After": "1"},
        )
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(AUTHENTICATED):
        keyring = request.app[STATE].keyring
        request[API_KEY] = fault_plan(request).authenticate(keyring, request.headers.get("Authorization"))
    return await handler(request)


MIDDLEWARES: tuple[Middleware, ...] = (count, parse_faults, envelope, drain, authenticate)
