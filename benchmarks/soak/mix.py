"""The client side of the soak: a seeded mix of requests from concurrent clients on two keys, one outcome each."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from harness.target.launch import DEFAULT_MODEL, LaunchedServer

CLIENTS_ON_KEY = (36, 12)  # the first key is over its limit of 30 part of the time
KINDS: dict[str, float] = {  # share of the mix
    "stream": 0.30,
    "complete": 0.10,
    "disconnect": 0.15,
    "timeout": 0.10,
    "fault": 0.30,
    "abandoned_body": 0.03,
    "not_json": 0.02,
}
FAULTS = (
    "no_done",
    "malformed_chunk:2",
    "reset:1",
    "reset:3",
    "error_500",
    "double_done",
    "wrong_usage",
    "changing_id",
    "stall:2000",
)
COMPLETION_ENDPOINTS = ("/v1/chat/completions", "/v1/completions")


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)  # by kind
    status: Counter[int] = field(default_factory=Counter)  # statuses the client saw
    outcome: Counter[str] = field(default_factory=Counter)  # what the client did or met
    token_seen: int = 0  # the engine certainly started these
    answer_whole: int = 0  # [DONE] or a whole JSON answer: the engine certainly finished these

    def merge(self, other: Tally) -> None:
        self.sent.update(other.sent)
        self.status.update(other.status)
        self.outcome.update(other.outcome)
        self.token_seen += other.token_seen
        self.answer_whole += other.answer_whole


def _body(rng: random.Random, stream: bool, max_tokens: int, chat: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": DEFAULT_MODEL, "max_tokens": max_tokens, "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": f"soak {rng.randrange(10**6)}"}]
    else:
        body["prompt"] = f"soak {rng.randrange(10**6)}"
    return body


def _has_token(data: bytes) -> bool:
    try:
        chunk = orjson.loads(data)
        choice = chunk["choices"][0]
        text = choice["delta"].get("content") if "delta" in choice else choice.get("text")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return False
    return bool(text)


class Soak:
    def __init__(self, server: LaunchedServer, seed: int) -> None:
        self.server = server
        self.url = server.target.root_url
        self.keys = (server.target.api_key, server.target.api_key_2 or server.target.api_key)
        self.rng = random.Random(seed)
        self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    async def run(self, requests: int, deadline: float, session: aiohttp.ClientSession) -> tuple[Tally, bool]:
        queue = iter(range(requests))
        tallies = []
        workers = []
        for key_index, clients in enumerate(CLIENTS_ON_KEY):
            for _ in range(clients):
                tally = Tally()
                tallies.append(tally)
                workers.append(self._worker(queue, deadline, session, self.keys[key_index], tally))
        finished = await asyncio.gather(*workers)
        total = Tally()
        for t in tallies:
            total.merge(t)
        return total, all(finished)

    async def _worker(
        self, queue: Iterator[int], deadline: float, session: aiohttp.ClientSession, key: str, tally: Tally
    ) -> bool:
        for _ in queue:
            if time.monotonic() > deadline:
                return False
            kind = self.rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            tally.sent[kind] += 1
            seed = self.rng.randrange(2**32)
            try:
                await self._one(kind, random.Random(seed), session, key, tally)
            except TimeoutError:
                tally.outcome["client timeout"] += 1
            except (aiohttp.ClientError, ConnectionError) as exc:
                tally.outcome[f"connection: {type(exc).__name__}"] += 1
        return True

    async def _one(self, kind: str, rng: random.Random, session: aiohttp.ClientSession, key: str, t: Tally) -> None:
        chat = rng.random() < 0.5
        path = COMPLETION_ENDPOINTS[0 if chat else 1]
        headers = {"Authorization": f"Bearer {key}"}
        if kind == "abandoned_body":
            await self._abandon_body(path, key)
            t.outcome["body abandoned"] += 1
            return
        if kind == "not_json":
            async with session.post(
                f"{self.url}{path}", data=b"{not json", headers={**headers, "Content-Type": "application/json"}
            ) as r:
                t.status[r.status] += 1
                await r.read()
            return
        stream = kind in ("stream", "disconnect") or (kind in ("timeout", "fault") and rng.random() < 0.8)
        max_tokens = rng.randrange(4, 25)
        timeout_s = 30.0
        if kind == "fault":
            fault = rng.choice(FAULTS)
            headers["x-fault"] = fault
            if fault.startswith("stall"):
                timeout_s = 0.1
        elif kind == "disconnect":
            max_tokens = 64
        elif kind == "timeout":
            max_tokens, timeout_s = 200, rng.uniform(0.01, 0.08)
        body = {**_body(rng, stream, max_tokens, chat), "ignore_eos": kind in ("disconnect", "timeout")}
        async with asyncio.timeout(timeout_s), session.post(f"{self.url}{path}", json=body, headers=headers) as r:
            t.status[r.status] += 1
            if r.status != 200:
                await r.read()
                return
            if not stream:
                answer = orjson.loads(await r.read())
                if answer.get("choices"):
                    t.token_seen += 1
                    t.answer_whole += 1
                return
            if kind == "disconnect":
                for _ in range(rng.randint(1, 3)):
                    await r.content.readuntil(b"\n\n")
                r.close()  # gone, mid-stream
                t.outcome["disconnected mid-stream"] += 1
                return
            raw = await r.read()
        events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
        if any(_has_token(e) for e in events):
            t.token_seen += 1
        if b"[DONE]" in events:
            t.answer_whole += 1
            t.outcome["stream to [DONE]"] += 1
        else:
            t.outcome["stream without [DONE]"] += 1

    async def _abandon_body(self, path: str, key: str) -> None:
        _, writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
        )
        writer.write(head.encode() + b'{"model": "')
        await writer.drain()
        await asyncio.sleep(0.005)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
