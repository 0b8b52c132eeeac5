"""A tiny OpenAI-compatible server that refuses every request field OpenAI does not define (422, as servers built on
pydantic models with `extra="forbid"` answer), run on a thread of its own so that blocking commands can use it.

It serves `/v1/models`, streamed and non-streamed chat and completions with the openai profile's shapes (usage in
a last chunk when `stream_options.include_usage`), and `/junk/models`, which answers 200 with a page that is no
model list.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

KEY = "esecret_strict_key"
MODEL = "strict/model-1"
OTHER_MODEL = "strict/model-2"
KNOWN = frozenset(
    {"model", "messages", "prompt", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop"}
    | {"seed", "presence_penalty", "frequency_penalty", "user"}
)


@dataclass(frozen=True, slots=True)
class Strict:
    root_url: str
    refused: list[list[str]]  # the unknown fields of every refused request

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"


def _authorized(request: web.Request) -> bool:
    return request.headers.get("Authorization") == f"Bearer {KEY}"


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return web.json_response(body, status=status)


async def _models(request: web.Request) -> web.Response:
    if not _authorized(request):
        return _error(401, "Invalid API key.")
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in (MODEL, OTHER_MODEL)]
    return web.json_response({"object": "list", "data": data})


async def _junk(request: web.Request) -> web.Response:
    return web.Response(text="<html><body>Welcome to nginx!</body></html>", content_type="text/html")


def _chunk(kind: str, text: str | None, finish: str | None) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "delta": {} if text is None else {"content": text}}
        obj, ident = "chat.completion.chunk", "chatcmpl-strict1"
    else:
        choice, obj, ident = {"index": 0, "text": text or ""}, "text_completion", "cmpl-strict1"
    choice["finish_reason"] = finish
    return {"id": ident, "object": obj, "created": int(time.time()), "model": MODEL, "choices": [choice]}


def _handler(kind: str, refused: list[list[str]]) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not _authorized(request):
            return _error(401, "Invalid API key.")
        body = orjson.loads(await request.read())
        if unknown := sorted(set(body) - KNOWN):
            refused.append(unknown)
            detail = [
                {"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted"}
                for name in unknown
            ]
            return web.json_response({"detail": detail}, status=422)
        tokens = int(body.get("max_tokens") or 4)
        prompt_tokens = len(orjson.dumps(body.get("messages") or body.get("prompt")).split())  # words, roughly
        if not body.get("stream"):
            return web.json_response({"id": "x", "object": "chat.completion", "choices": [], "model": MODEL})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if kind == "chat":
            await response.write(b"data: " + orjson.dumps(_role_chunk()) + b"\n\n")
        for i in range(tokens):
            last = "length" if i == tokens - 1 else None
            await response.write(b"data: " + orjson.dumps(_chunk(kind, "tok ", last)) + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            }
            final = {**_chunk(kind, None, None), "choices": [], "usage": usage}
            await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    return handle


def _role_chunk() -> dict[str, Any]:
    choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    return {"id": "chatcmpl-strict1", "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL,
            "choices": [choice]}  # fmt: skip


@contextlib.contextmanager
def strict_server() -> Iterator[Strict]:
    """Start the server on a free port of 127.0.0.1 on its own thread; stop it after."""
    refused: list[list[str]] = []
    app = web.Application()
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/junk/models", _junk)
    app.router.add_post("/v1/chat/completions", _handler("chat", refused))
    app.router.add_post("/v1/completions", _handler("completion", refused))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    ready = threading.Event()
    ports: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(runner.addresses[0][1])
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="strict-server", daemon=True)
    thread.start()
    assert ready.wait(10), "the strict server did not start"
    try:
        yield Strict(f"http://127.0.0.1:{ports[0]}", refused)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
