"""The per-key concurrency limit, the heart of the spec, through real HTTP."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from reference_server.config import ApiKey, SimOptions, digest
from reference_server.server import RunningServer
from reference_server.state import STATE
from tests.integration.conftest import KEY, KEY_2, MODEL, ServerFactory, auth

# Long enough to stay open for the whole test; every test closes what it opens.
LONG = {"model": MODEL, "prompt": "hold", "max_tokens": 4000, "ignore_eos": True, "stream": True}
SLOW = SimOptions(ttft_ms=1, itl_ms=20)


async def open_stream(http: aiohttp.ClientSession, server: RunningServer, key: str = KEY) -> aiohttp.ClientResponse:
    """A streamed request that stays in flight: read up to its first chunk, then keep it open."""
    response = await http.post(f"{server.base_url}/v1/completions", json=LONG, headers=auth(key))
    assert response.status == 200, await response.text()
    await response.content.readuntil(b"\n\n")
    return response


async def quick(http: aiohttp.ClientSession, server: RunningServer, key: str = KEY) -> aiohttp.ClientResponse:
    body: dict[str, Any] = {"model": MODEL, "prompt": "hi", "max_tokens": 1}
    async with http.post(f"{server.base_url}/v1/completions", json=body, headers=auth(key)) as r:
        await r.read()
        return r


def in_flight(server: RunningServer, key_name: str) -> int:
    return server.runner.app[STATE].limiter.in_flight(key_name)


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_request_over_the_limit_gets_429_at_once_and_a_freed_slot_admits_the_next(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with server_factory(sim=SLOW, concurrency_limit=30) as server, AsyncExitStack() as stack:
        streams = [
            stack.push_async_callback(s.release) and s
            for s in await asyncio.gather(*(open_stream(http, server) for _ in range(30)))
        ]
        rejected = await quick(http, server)
        assert rejected.status == 429
        body = await rejected.json()
        assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["type"] == "rate_limit_error"
        assert rejected.headers["Retry-After"] == "1"
        assert rejected.headers["x-concurrency-limit"] == "30"
        assert rejected.headers["x-concurrency-remaining"] == "0"
        streams[0].close()
        await wait_for(lambda: in_flight(server, "first") == 29)
        admitted = await quick(http, server)
        assert admitted.status == 200
        assert admitted.headers["x-concurrency-remaining"] == "0"  # 29 streams + this one = 30


async def test_rejected_requests_take_no_slot(server_factory: ServerFactory, http: aiohttp.ClientSession) -> None:
    async with server_factory(sim=SLOW, concurrency_limit=5) as server:
        first = await asyncio.gather(*(open_stream(http, server) for _ in range(5)))
        statuses = [(await quick(http, server)).status for _ in range(50)]
        assert statuses == [429] * 50
        for s in first:
            s.close()
        await wait_for(lambda: in_flight(server, "first") == 0)
        again = await asyncio.gather(*(open_stream(http, server) for _ in range(5)))
        assert (await quick(http, server)).status == 429
        for s in again:
            s.close()


async def test_a_client_that_disconnects_mid_stream_frees_its_slot_and_aborts_the_engine_request(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with server_factory(sim=SLOW, concurrency_limit=2) as server:
        engine = server.runner.app[STATE].engine
        streams = [await open_stream(http, server) for _ in range(2)]
        assert engine.stats().running == 2
        assert (await quick(http, server)).status == 429
        streams[0].close()
        await wait_for(lambda: in_flight(server, "first") == 1)
        await wait_for(lambda: engine.stats().running == 1)
        assert engine.stats().aborted_total == 1
        assert (await quick(http, server)).status == 200
        streams[1].close()
        await wait_for(lambda: engine.stats().running == 0 and in_flight(server, "first") == 0)


async def test_a_non_streamed_client_that_goes_away_frees_its_slot(server_factory: ServerFactory) -> None:
    async with server_factory(sim=SimOptions(ttft_ms=60_000), concurrency_limit=1) as server:
        engine = server.runner.app[STATE].engine
        async with aiohttp.ClientSession() as impatient:
            body = {"model": MODEL, "prompt": "slow", "max_tokens": 5}
            task = asyncio.create_task(impatient.post(f"{server.base_url}/v1/completions", json=body, headers=auth()))
            await wait_for(lambda: in_flight(server, "first") == 1)
            task.cancel()
        await wait_for(lambda: in_flight(server, "first") == 0)
        await wait_for(lambda: engine.stats().running == 0)
        assert engine.stats().aborted_total == 1


async def test_keys_do_not_share_slots(server_factory: ServerFactory, http: aiohttp.ClientSession) -> None:
    async with server_factory(sim=SLOW, concurrency_limit=3) as server:
        held = await asyncio.gather(*(open_stream(http, server, KEY) for _ in range(3)))
        assert (await quick(http, server, KEY)).status == 429
        assert (await quick(http, server, KEY_2)).status == 200
        assert in_flight(server, "second") == 0
        for s in held:
            s.close()


async def test_a_per_key_limit_from_the_keys_overrides_the_default(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    keys = (ApiKey("small", digest(KEY), concurrency_limit=1), ApiKey("default", digest(KEY_2)))
    async with server_factory(sim=SLOW, keys=keys, concurrency_limit=30) as server:
        held = await open_stream(http, server, KEY)
        rejected = await quick(http, server, KEY)
        assert rejected.status == 429 and rejected.headers["x-concurrency-limit"] == "1"
        held.close()


async def test_prometheus_gauges_agree_with_the_limiter(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with server_factory(sim=SLOW, concurrency_limit=4) as server:
        held = await asyncio.gather(*(open_stream(http, server) for _ in range(4)))
        for _ in range(3):
            await quick(http, server)
        async with http.get(f"{server.base_url}/metrics") as r:
            text = await r.text()
        assert 'llm_requests_in_flight{key="first"} 4.0' in text
        assert 'llm_rate_limited_total{key="first"} 3.0' in text
        assert KEY not in text
        for s in held:
            s.close()
