"""The API through real HTTP: shapes under both profiles, streaming, and the official openai SDK."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from typing import Any

import aiohttp
import jsonschema
import openai
import orjson
import pytest

import schemas
from reference_server.server import RunningServer
from tests.integration.conftest import KEY, MODEL, ServerFactory, auth

# ignore_eos (a vLLM extension the simulator honours) makes the output exactly max_tokens long.
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say 'Test'."}], "max_tokens": 12, "ignore_eos": True}
COMPLETION = {"model": MODEL, "prompt": "<|begin_of_text|>Tell me a joke.", "max_tokens": 12, "ignore_eos": True}


async def post(http: aiohttp.ClientSession, server: RunningServer, path: str, body: dict[str, Any]) -> Any:
    async with http.post(f"{server.base_url}/v1/{path}", json=body, headers=auth()) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def stream(
    http: aiohttp.ClientSession, server: RunningServer, path: str, body: dict[str, Any]
) -> tuple[aiohttp.ClientResponse, list[bytes]]:
    async with http.post(f"{server.base_url}/v1/{path}", json={**body, "stream": True}, headers=auth()) as r:
        assert r.status == 200
        raw = await r.read()
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    return r, events[:-1]


@pytest.mark.parametrize("profile", ["anyscale", "openai"])
async def test_non_streamed_shapes_follow_the_profile(
    server_factory: ServerFactory, http: aiohttp.ClientSession, profile: str
) -> None:
    async with server_factory(profile=profile) as server:
        chat = await post(http, server, "chat/completions", CHAT)
        completion = await post(http, server, "completions", COMPLETION)
    jsonschema.validate(chat, schemas.response_schema(profile, "chat_completion"))  # type: ignore[arg-type]
    jsonschema.validate(completion, schemas.response_schema(profile, "completion"))  # type: ignore[arg-type]
    if profile == "anyscale":
        assert re.fullmatch(re.escape(MODEL) + "-[0-9a-f]{32}", chat["id"])
        assert chat["object"] == completion["object"] == "text_completion"
    else:
        assert chat["id"].startswith("chatcmpl-") and completion["id"].startswith("cmpl-")
        assert (chat["object"], completion["object"]) == ("chat.completion", "text_completion")
    for body in (chat, completion):
        assert body["model"] == MODEL
        assert abs(body["created"] - time.time()) < 60
        assert body["usage"]["completion_tokens"] == 12
        assert body["choices"][0]["finish_reason"] == "length"
        u = body["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


async def test_anyscale_stream_has_role_first_one_finish_and_usage_on_the_last_chunk(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    response, events = await stream(http, server, "chat/completions", CHAT)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    schema = schemas.response_schema("anyscale", "chat_chunk")
    for chunk in chunks:
        jsonschema.validate(chunk, schema)
    assert {c["id"] for c in chunks} == {response.headers["x-request-id"]}
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert finishes == ["length"]
    assert "usage" in chunks[-1] and all("usage" not in c for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] == 12 == len(chunks) - 1


async def test_streamed_text_equals_the_non_streamed_text_at_temperature_zero(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    body = {**COMPLETION, "temperature": 0, "max_tokens": 30}
    whole = await post(http, server, "completions", body)
    _, events = await stream(http, server, "completions", body)
    parts = [orjson.loads(e.removeprefix(b"data: "))["choices"][0]["text"] for e in events[:-1]]
    assert "".join(parts) == whole["choices"][0]["text"]


async def test_openai_profile_sends_usage_only_when_asked(
    server_factory: ServerFactory, http: aiohttp.ClientSession
) -> None:
    async with server_factory(profile="openai") as server:
        _, plain = await stream(http, server, "chat/completions", CHAT)
        _, with_usage = await stream(
            http, server, "chat/completions", {**CHAT, "stream_options": {"include_usage": True}}
        )
    assert all(b'"usage"' not in e for e in plain)
    last = orjson.loads(with_usage[-2].removeprefix(b"data: "))
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 12
    assert all(orjson.loads(e.removeprefix(b"data: "))["usage"] is None for e in with_usage[:-2])


async def test_stop_string_ends_the_text_before_it(server: RunningServer, http: aiohttp.ClientSession) -> None:
    body = {**COMPLETION, "temperature": 0, "max_tokens": 40}
    text = (await post(http, server, "completions", body))["choices"][0]["text"]
    words = text.split()
    stop = " " + words[len(words) // 2]
    stopped = await post(http, server, "completions", {**body, "stop": [stop]})
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["text"] == text[: text.index(stop)]


async def test_completion_prompt_is_verbatim_and_chat_uses_the_template(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    rendered = schemas.render_chat("llama3", messages)
    chat = await post(http, server, "chat/completions", {"model": MODEL, "messages": messages, "temperature": 0})
    completion = await post(http, server, "completions", {"model": MODEL, "prompt": rendered, "temperature": 0})
    assert chat["usage"]["prompt_tokens"] == completion["usage"]["prompt_tokens"]
    assert chat["choices"][0]["message"]["content"] == completion["choices"][0]["text"]
    bare = await post(
        http, server, "completions", {"model": MODEL, "prompt": rendered.removeprefix("<|begin_of_text|>")}
    )
    assert completion["usage"]["prompt_tokens"] == bare["usage"]["prompt_tokens"] + 1  # BOS is one token, once


async def test_unsupported_and_unknown_arguments_are_ignored(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    body = {**CHAT, "logit_bias": {"50256": -100}, "tools": [], "user": "u", "no_such_argument": {"x": [1]}}
    assert (await post(http, server, "chat/completions", body))["choices"][0]["finish_reason"] == "length"


async def test_models_list_and_model_with_a_slash(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.base_url}/v1/models", headers=auth()) as r:
        listing = await r.json()
    jsonschema.validate(listing, schemas.response_schema("anyscale", "model_list"))
    assert [m["id"] for m in listing["data"]] == [MODEL]
    async with http.get(f"{server.base_url}/v1/models/{MODEL}", headers=auth()) as r:
        assert (await r.json())["id"] == MODEL


async def test_openai_sdk_works_unmodified(server: RunningServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0)
    chat = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert chat.usage is not None and chat.usage.completion_tokens == 5
    pieces = []
    async for chunk in await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, stream=True
    ):
        pieces.append(chunk.choices[0].delta.content or "")
    assert len([p for p in pieces if p]) == 5
    completion = await client.completions.create(model=MODEL, prompt="<s>[INST] Hi [/INST]", max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    await client.close()


async def test_ground_truth_trace_records_every_chunk(server: RunningServer, http: aiohttp.ClientSession) -> None:
    headers = {**auth(), "x-trace-timing": "1"}
    before = time.perf_counter_ns()
    async with http.post(f"{server.base_url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers) as r:
        await r.read()
        ident = r.headers["x-request-id"]
    async with http.get(f"{server.base_url}/debug/traces/{ident}", headers=auth()) as r:
        trace = await r.json()
    assert len(trace["chunk_ns"]) == 13  # the role chunk and 12 tokens
    assert before <= trace["received_ns"] <= trace["chunk_ns"][0] <= trace["first_token_ns"] == trace["chunk_ns"][1]
    assert trace["chunk_ns"] == sorted(trace["chunk_ns"]) and trace["end_ns"] >= trace["chunk_ns"][-1]
    # Each write is bracketed: stamped as it began, and when it returned.
    assert len(trace["chunk_written_ns"]) == len(trace["chunk_ns"])
    assert all(b <= a for b, a in zip(trace["chunk_ns"], trace["chunk_written_ns"], strict=True))
    assert trace["end_ns"] <= trace["end_written_ns"]


async def test_a_trace_starts_when_the_last_bytes_of_the_request_were_read(server: RunningServer) -> None:
    # Headers now, body 300 ms later: the request arrived when its body did, not when its handler began.
    body = orjson.dumps({**CHAT, "max_tokens": 2})
    host, port = server.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nx-trace-timing: 1\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    await asyncio.sleep(0.3)
    body_sent = time.perf_counter_ns()
    writer.write(body)
    await writer.drain()
    response = await reader.readuntil(b"\r\n\r\n")
    ident = re.search(rb"x-request-id: (\S+)", response, re.IGNORECASE)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200") and ident is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.base_url}/debug/traces/{ident.group(1).decode()}", headers=auth()) as r,
    ):
        trace = await r.json()
    assert body_sent <= trace["received_ns"] <= trace["first_token_ns"]


async def test_a_trace_starts_when_the_request_reached_the_socket_not_when_a_busy_loop_read_it(
    server: RunningServer,
) -> None:
    # The request is written from a thread while the server's loop is held up; on asyncio's loop the kernel's time
    # of the read is the request's arrival, so the trace starts before the hold-up ended.
    body = orjson.dumps({**CHAT, "max_tokens": 2})
    host, port = server.base_url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nx-trace-timing: 1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sent_by: list[int] = []
    answer: list[bytes] = []

    def client() -> None:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(request)
            sent_by.append(time.perf_counter_ns())
            answer.append(sock.recv(65536))

    thread = threading.Thread(target=client)
    thread.start()
    while not sent_by:  # the loop is held up until the request is written ...
        time.sleep(0.001)  # noqa: ASYNC251 (holding the loop up is the point)
    time.sleep(0.02)  # noqa: ASYNC251 ... and for a while after
    held_until = time.perf_counter_ns()
    await asyncio.to_thread(thread.join, 5)
    ident = re.search(rb"x-request-id: (\S+)", answer[0], re.IGNORECASE)
    assert answer[0].startswith(b"HTTP/1.1 200") and ident is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.base_url}/debug/traces/{ident.group(1).decode()}", headers=auth()) as r,
    ):
        trace = await r.json()
    assert trace["received_by"] == "kernel"
    assert trace["received_ns"] <= sent_by[0] + 1_000_000 < held_until
