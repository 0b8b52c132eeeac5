"""The reference server's ground-truth traces of a run's requests, fetched from `GET /debug/traces/{id}`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp
import orjson

from harness.records.record import Record
from harness.records.truth import Truth, from_trace


async def fetch(root_url: str, api_key: str, records: Iterable[Record], parallel: int = 16) -> list[Truth]:
    """The traces of the given requests that the server still holds (requests without an id are passed over)."""
    ids = sorted({r.request_id for r in records if r.request_id})
    found: list[Truth] = []
    gate = asyncio.Semaphore(parallel)
    headers = {"Authorization": f"Bearer {api_key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def one(request_id: str) -> None:
            async with gate, session.get(f"{root_url}/debug/traces/{request_id}") as response:
                if response.status != 200:
                    return
                body = orjson.loads(await response.read())
            if isinstance(body, dict) and (truth := from_trace(request_id, body)) is not None:
                found.append(truth)

        await asyncio.gather(*(one(i) for i in ids))
    found.sort(key=lambda t: t.request_id)
    return found
