"""The limiter under races: 1,000 simultaneous requests, one or two keys, limit 30 (the hardening issue)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import aiohttp

from reference_server.config import SimOptions
from reference_server.server import RunningServer
from reference_server.state import STATE
from tests.integration.conftest import KEY, KEY_2, MODEL, ServerFactory, auth

# Admitted streams stay open until the test lets them go, so the peak is observable.
HOLD = {"model": MODEL, "prompt": "race", "max_tokens": 4000, "ignore_eos": True, "stream": True}


async def fire(http: aiohttp.ClientSession, server: RunningServer, key: str, release: asyncio.Event) -> int:
    async with http.post(f"{server.base_url}/v1/completions", json=HOLD, headers=auth(key)) as r:
        if r.status == 200:
            await r.content.readuntil(b"\n\n")
            await release.wait()
        else:
            await r.read()
        return r.status


async def metric(http: aiohttp.ClientSession, server: RunningServer, name: str, key_name: str) -> float:
    async with http.get(f"{server.base_url}/metrics") as r:
        text = await r.text()
    match = re.search(rf'^{name}{{key="{key_name}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def race(server: RunningServer, per_key: dict[str, int]) -> dict[str, Counter[int]]:
    release = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = {
            key: [asyncio.create_task(fire(http, server, key, release)) for _ in range(n)] for key, n in per_key.items()
        }
        limiter = server.runner.app[STATE].limiter
        names = {KEY: "first", KEY_2: "second"}
        # Wait until every request has been answered: all rejections done, the admitted ones holding slots.
        async with asyncio.timeout(120):
            while not all(
                sum(t.done() for t in ts) + limiter.in_flight(names[key]) == len(ts) for key, ts in tasks.items()
            ):
                await asyncio.sleep(0.05)
        for key in per_key:
            assert limiter.in_flight(names[key]) == 30
            assert await metric(http, server, "llm_requests_in_flight", names[key]) == 30
            assert await metric(http, server, "llm_rate_limited_total", names[key]) == per_key[key] - 30
        release.set()
        results = {key: Counter(await asyncio.gather(*ts)) for key, ts in tasks.items()}
        async with asyncio.timeout(30):
            while any(limiter.in_flight(names[key]) for key in per_key):
                await asyncio.sleep(0.05)
        for key in per_key:
            assert await metric(http, server, "llm_requests_in_flight", names[key]) == 0
    return results


async def test_a_thousand_simultaneous_requests_on_one_key(server_factory: ServerFactory) -> None:
    async with server_factory(sim=SimOptions(ttft_ms=1, itl_ms=50), concurrency_limit=30) as server:
        results = await race(server, {KEY: 1000})
        engine = server.runner.app[STATE].engine
        async with asyncio.timeout(30):
            while engine.stats().running:
                await asyncio.sleep(0.05)
    assert results[KEY] == Counter({200: 30, 429: 970})


async def test_two_keys_racing_at_once_each_get_their_own_thirty(server_factory: ServerFactory) -> None:
    async with server_factory(sim=SimOptions(ttft_ms=1, itl_ms=50), concurrency_limit=30) as server:
        results = await race(server, {KEY: 500, KEY_2: 500})
    assert results[KEY] == results[KEY_2] == Counter({200: 30, 429: 470})
