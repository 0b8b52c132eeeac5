"""Running the application: listen, report readiness, and shut down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from reference_server.app import build_app
from reference_server.auth import KeyRing
from reference_server.config import ServerConfig
from reference_server.engines.base import Engine
from reference_server.state import STATE

log = logging.getLogger("reference_server")


class RunningServer:
    """A started server: its base URL, and a way to stop it gracefully."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite, base_url: str) -> None:
        self.runner = runner
        self.site = site
        self.base_url = base_url

    @property
    def state(self) -> object:
        return self.runner.app[STATE]

    async def stop(self, grace_period_s: float) -> None:
        """Stop accepting, let in-flight responses finish within the grace period, then close everything."""
        state = self.runner.app[STATE]
        state.draining = True
        await self.site.stop()
        deadline = time.monotonic() + grace_period_s
        while sum(state.limiter.snapshot().values()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling keeps the limiter free of shutdown hooks
        await self.runner.cleanup()


async def start_server(config: ServerConfig, engine: Engine, keyring: KeyRing) -> RunningServer:
    app = build_app(config, engine, keyring)
    # handler_cancellation: a client that goes away cancels its handler, which frees the slot and aborts the
    # engine request even for non-streamed requests that have written nothing yet.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=4096, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://{config.host if ':' not in config.host else f'[{config.host}]'}:{port}"
    return RunningServer(runner, site, url)


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
