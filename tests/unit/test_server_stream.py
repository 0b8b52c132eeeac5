"""The reference server's streamed responses (`reference_server/stream.py`): events, their trace stamps, the fast
path, and a fault's reset, against an in-process server on a random port."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from unittest import mock

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from reference_server.app import build_app
from reference_server.auth import KeyRing
from reference_server.config import ApiKey, ServerConfig, SimOptions, digest
from reference_server.engines.sim import SimEngine
from schemas import Profile

KEY = "esecret_stream_key_1234"
LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"
Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def serving(profile: Profile = "anyscale") -> AsyncIterator[Client]:
    config = ServerConfig(
        keys=(ApiKey("k", digest(KEY)),),
        enable_faults=True,
        profile=profile,
        sim=SimOptions(ttft_ms=0, itl_ms=0),
    )
    app = build_app(config, SimEngine((LLAMA3,), config.sim), KeyRing(config.keys))
    async with TestClient(TestServer(app)) as client:
        yield client


async def post(client: Client, headers: dict[str, str] | None = None, **body: Any) -> aiohttp.ClientResponse:
    payload = {"model": LLAMA3, "messages": [{"role": "user", "content": "Hi"}], "stream": True, **body}
    return await client.post(
        "/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {KEY}", **(headers or {})}
    )


async def read_until_cut(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """What arrived, and whether the connection was cut before the response ended."""
    received = b""
    try:
        while chunk := await resp.content.readany():
            received += chunk
    except aiohttp.ClientPayloadError:
        return received, True
    return received, False


def events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n")
    return [e.removeprefix(b"data: ") for e in raw[:-2].split(b"\n\n")]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    found = events(raw)
    assert found[-1] == b"[DONE]"
    return [orjson.loads(e) for e in found[:-1]]


async def test_the_fast_path_writes_the_bytes_the_chunk_builder_would() -> None:
    async with serving() as client:
        fast = await (await post(client, temperature=0, max_tokens=12)).read()
        # Any fault turns the fast path off; `not_envelope` changes nothing in a stream.
        built = await (await post(client, {"x-fault": "not_envelope"}, temperature=0, max_tokens=12)).read()

    def normalised(raw: bytes) -> bytes:
        first = chunks(raw)[0]
        raw = raw.replace(first["id"].encode(), b"ID")
        return re.sub(rb'"created":\d+', b'"created":0', raw)

    sent = chunks(fast)  # the role, then 12 tokens, the last with the finish reason and the usage
    assert len(sent) == 13 and sent[-1]["usage"]["completion_tokens"] == 12
    assert normalised(fast) == normalised(built)


async def test_every_event_is_stamped_as_it_is_written() -> None:
    async with serving() as client:
        resp = await post(client, {"x-trace-timing": "1"}, max_tokens=6, ignore_eos=True)
        sent = chunks(await resp.read())
        trace = await (
            await client.get(
                f"/debug/traces/{resp.headers['x-request-id']}", headers={"Authorization": f"Bearer {KEY}"}
            )
        ).json()
    assert len(sent) == 7 and len(trace["chunk_ns"]) == len(trace["chunk_written_ns"]) == 7
    assert trace["first_token_ns"] == trace["chunk_ns"][1]  # the role chunk carries no token
    assert trace["chunk_ns"] == sorted(trace["chunk_ns"])
    assert trace["chunk_ns"][-1] <= trace["end_ns"] <= trace["end_written_ns"]


async def test_a_reset_cuts_the_connection_after_n_chunks() -> None:
    async with serving() as client:
        resp = await post(client, {"x-fault": "reset:3"}, max_tokens=20, ignore_eos=True)
        received, cut = await read_until_cut(resp)
    assert cut and len(events(received)) == 3 and b"[DONE]" not in received


async def test_n_choices_each_get_one_role_and_one_finish_and_usage_comes_last() -> None:
    async with serving() as client:
        sent = chunks(await (await post(client, n=2, max_tokens=3, ignore_eos=True)).read())
    for index in (0, 1):
        mine = [c["choices"][0] for c in sent if c["choices"][0]["index"] == index]
        assert [c["delta"].get("role") for c in mine].count("assistant") == 1
        assert [c["finish_reason"] for c in mine].count("length") == 1
    assert [("usage" in c) for c in sent] == [False] * (len(sent) - 1) + [True]
    usage = sent[-1]["usage"]
    assert usage["completion_tokens"] == 6 and usage["total_tokens"] == usage["prompt_tokens"] + 6


async def test_the_openai_profile_sends_usage_in_a_chunk_of_its_own_when_asked() -> None:
    async with serving("openai") as client:
        asked = chunks(await (await post(client, max_tokens=2, stream_options={"include_usage": True})).read())
        unasked = chunks(await (await post(client, max_tokens=2)).read())
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] == 2
    assert all(c["usage"] is None for c in asked[:-1])
    assert all("usage" not in c for c in unasked)


async def writes_of(profile: Profile, headers: dict[str, str] | None = None, **body: Any) -> list[tuple[str, bytes]]:
    """Every write of a streamed response's body, as (the method, its bytes)."""
    calls: list[tuple[str, bytes]] = []
    write, write_eof = web.StreamResponse.write, web.StreamResponse.write_eof

    async def noted_write(self: web.StreamResponse, data: bytes) -> None:
        calls.append(("write", bytes(data)))
        await write(self, data)

    async def noted_write_eof(self: web.StreamResponse, data: bytes = b"") -> None:
        calls.append(("write_eof", bytes(data)))
        await write_eof(self, data)

    with (
        mock.patch.object(web.StreamResponse, "write", noted_write),
        mock.patch.object(web.StreamResponse, "write_eof", noted_write_eof),
    ):
        async with serving(profile) as client:
            await (await post(client, headers, **body)).read()
    return [(method, data) for method, data in calls if data]  # aiohttp ends every response again, with nothing


@pytest.mark.parametrize(
    ("profile", "body", "last_events"),
    [
        ("anyscale", {}, 2),  # the finish reason with the usage, then [DONE]
        ("openai", {"stream_options": {"include_usage": True}}, 3),  # the finish reason, the usage, [DONE]
        ("anyscale", {"n": 2}, 2),
    ],
)
async def test_the_stream_s_end_goes_out_in_one_write(profile: Profile, body: dict[str, Any], last_events: int) -> None:
    # One write is one segment on the wire: a client that counts one segment knows all of it arrived at one time.
    calls = await writes_of(profile, max_tokens=3, ignore_eos=True, **body)
    method, data = calls[-1]
    assert method == "write_eof" and data.endswith(b"data: [DONE]\n\n")
    ended = events(data)
    assert len(ended) == last_events and b'"finish_reason":"length"' in ended[0]
    earlier = b"".join(data for _, data in calls[:-1])
    assert b"[DONE]" not in earlier
    # With n = 2 the first choice to finish is written as it comes: only the stream's last finish is held.
    assert earlier.count(b'"finish_reason":"length"') == body.get("n", 1) - 1


async def test_a_stall_after_the_last_chunk_writes_it_before_stalling() -> None:
    # `stall:N` stalls after chunk 1; with one token, chunk 1 (after the role) is the last: it must not wait.
    async with serving() as client:
        resp = await post(client, {"x-fault": "stall:150", "x-trace-timing": "1"}, max_tokens=1, ignore_eos=True)
        sent = chunks(await resp.read())
        trace = await (
            await client.get(
                f"/debug/traces/{resp.headers['x-request-id']}", headers={"Authorization": f"Bearer {KEY}"}
            )
        ).json()
    assert sent[-1]["choices"][0]["finish_reason"] == "length"
    assert trace["end_ns"] - trace["chunk_written_ns"][-1] >= 150_000_000


async def test_a_reset_after_the_last_chunk_writes_it_before_the_reset() -> None:
    async with serving() as client:
        received, cut = await read_until_cut(await post(client, {"x-fault": "reset:2"}, max_tokens=1, ignore_eos=True))
    assert cut and len(events(received)) == 2 and b'"finish_reason":"length"' in received
