"""In-process reference servers on random ports, for integration tests of the HTTP layer."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from reference_server.auth import KeyRing
from reference_server.config import ApiKey, ServerConfig, SimOptions, digest
from reference_server.engines.sim import SimEngine
from reference_server.server import RunningServer, start_server

KEY = "esecret_integration_key_one"
KEY_2 = "esecret_integration_key_two"
MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def running_server(**overrides: Any) -> AsyncIterator[RunningServer]:
    sim = overrides.pop("sim", SimOptions(ttft_ms=1, itl_ms=1))
    keys = overrides.pop("keys", (ApiKey("first", digest(KEY)), ApiKey("second", digest(KEY_2))))
    config = dataclasses.replace(ServerConfig(port=0, sim=sim, keys=keys), **overrides)
    engine = SimEngine(config.models, config.sim)
    server = await start_server(config, engine, KeyRing(config.keys))
    try:
        yield server
    finally:
        await server.stop(grace_period_s=0)


@pytest.fixture
def server_factory() -> ServerFactory:
    return running_server


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    async with running_server() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
