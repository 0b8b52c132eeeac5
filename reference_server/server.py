"""Running the application: listen, report readiness, and shut down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from reference_server import stamped_socket, traces
from reference_server.app import build_app
from reference_server.auth import KeyRing
from reference_server.config import ServerConfig
from reference_server.engines.base import Engine
from reference_server.errors import APIError
from reference_server.state import STATE

log = logging.getLogger("reference_server")

# Different on purpose: aiohttp reports both overflows as the same LineTooLong, with the limit that was hit.
MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_FIELD_BYTES = 16 * 1024


def protocol_error(status: int, exc: BaseException | None) -> APIError:
    """What aiohttp's HTTP parser (or the connection handler) rejected, as an API error.

    The parser's own message is not echoed or logged: it quotes the offending bytes, which may be a header
    holding an API key.
    """
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_HEADER_FIELD_BYTES,):
            return APIError(
                431,
                f"A request header is larger than {MAX_HEADER_FIELD_BYTES} bytes.",
                code="request_header_fields_too_large",
            )
        return APIError(414, f"The request line is longer than {MAX_REQUEST_LINE_BYTES} bytes.", code="uri_too_long")
    if isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower():
        return APIError(431, "The request has too many headers.", code="request_header_fields_too_large")
    if isinstance(exc, BadStatusLine):
        return APIError(400, "The request line is not valid HTTP/1.1.", code="bad_request_line")
    if status < 500:
        return APIError(status, "The request is not valid HTTP/1.1.", code="bad_http_request")
    return APIError(status, "Internal server error.", type="server_error")


class _EnvelopeRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what never reaches the application in the OpenAI envelope.

    Requests its HTTP parser rejects (a request line or header over the limit, malformed HTTP) are answered
    from here, as plain text by default; the application's middleware never sees them. It also notes when its
    latest read reached the socket — the kernel's time when the connection is a `StampedConnection` read by asyncio's
    loop, else the time the loop read it: the moment a request arrived, for its ground-truth trace
    (`traces.arrival`), with which of the two it is (`last_read_by`).
    """

    last_read_ns = 0
    last_read_by: traces.ReceivedBy = "loop"
    _stamped: stamped_socket.StampedConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._stamped = stamped_socket.of(transport)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        stamped = self._stamped
        if stamped is not None:
            self.last_read_ns, self.last_read_by = stamped.arrived_ns, "kernel" if stamped.by_kernel else "loop"
        else:
            self.last_read_ns, self.last_read_by = time.perf_counter_ns(), "loop"
        super().data_received(data)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp does: the connection is broken, nothing can be answered
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        error = protocol_error(status, exc)
        if error.status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.info("rejected a request from %s that is not valid HTTP: %s", request.remote, error.code)
        resp = web.Response(status=error.status, body=error.body(), content_type="application/json")
        resp.force_close()
        return resp


class _EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp has no option for the connection handler's class (aio-libs/aiohttp#3287); the server it built is
        # kept whole and only learns to make our handler.
        server.__class__ = _EnvelopeServer
        return server


class RunningServer:
    """A started server: its base URL, and a way to stop it gracefully."""

    def __init__(self, runner: web.AppRunner, sites: list[web.SockSite], base_url: str) -> None:
        self.runner = runner
        self.sites = sites
        self.base_url = base_url

    @property
    def state(self) -> object:
        return self.runner.app[STATE]

    async def stop(self, grace_period_s: float) -> None:
        """Stop accepting, let in-flight responses finish within the grace period, then close everything."""
        state = self.runner.app[STATE]
        state.draining = True
        for site in self.sites:
            await site.stop()
        deadline = time.monotonic() + grace_period_s
        while sum(state.limiter.snapshot().values()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling keeps the limiter free of shutdown hooks
        await self.runner.cleanup()


async def start_server(config: ServerConfig, engine: Engine, keyring: KeyRing) -> RunningServer:
    app = build_app(config, engine, keyring)
    # handler_cancellation: a client that goes away cancels its handler, which frees the slot and aborts the
    # engine request even for non-streamed requests that have written nothing yet.
    runner = _Runner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
        max_line_size=MAX_REQUEST_LINE_BYTES,
        max_field_size=MAX_HEADER_FIELD_BYTES,
    )
    await runner.setup()
    listening = stamped_socket.listen(config.host, config.port, 4096, asyncio.get_running_loop())
    sites = [web.SockSite(runner, sock) for sock in listening]
    for site in sites:
        await site.start()
    port = runner.addresses[0][1]
    url = f"http://{config.host if ':' not in config.host else f'[{config.host}]'}:{port}"
    return RunningServer(runner, sites, url)


async def serve(
    config: ServerConfig,
    engine: Engine,
    keyring: KeyRing,
    on_ready: Callable[[RunningServer], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain."""
    server = await start_server(config, engine, keyring)
    models = ", ".join(card.id for card in engine.models)
    log.info(
        "reference server ready at %s/v1 (engine %s, profile %s, models: %s)",
        server.base_url,
        config.engine,
        config.profile,
        models,
    )
    if on_ready is not None:
        on_ready(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight requests (grace period %.0f s)", config.grace_period_s)
    await server.stop(config.grace_period_s)
    log.info("stopped")
