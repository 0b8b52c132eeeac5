"""The physical bound for `benchmarks.server_capacity`: a bare aiohttp handler with nothing but HTTP in it.

`POST /v1/chat/completions` reads the body and answers a constant JSON body, or, when the body asks for
`"stream":true`, 64 constant SSE chunks (one `write` each, as a real server does) and `data: [DONE]`.
No auth, no validation, no metrics, no JSON parsing: whatever this serves per core is what any aiohttp
server can serve on it. Runs on uvloop under the same interpreter as the reference server.

    python -m benchmarks.server_capacity.bare_server --port 0 [--chunks 64]

Prints `bare server ready at http://127.0.0.1:PORT` on stderr once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
_ID = f"{_MODEL}-00000000000000000000000000000000"
# Sized like the reference server's chunks so that the bound is about the same bytes on the wire.
_CHUNK = (
    b'data: {"id":"'
    + _ID.encode()
    + b'","object":"text_completion","created":1700000000,"model":"'
    + _MODEL.encode()
    + b'","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}\n\n'
)
_DONE = b"data: [DONE]\n\n"
_BODY = (
    b'{"id":"'
    + _ID.encode()
    + b'","object":"text_completion","created":1700000000,"model":"'
    + _MODEL.encode()
    + b'","choices":[{"index":0,"message":{"role":"assistant","content":"'
    + b" word" * 64
    + b'"},"finish_reason":"length"}],"usage":{"prompt_tokens":20,"completion_tokens":64,"total_tokens":84}}'
)


def build_app(chunks: int) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b'"stream":true' not in body:
            return web.Response(body=_BODY, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for _ in range(chunks):
            await resp.write(_CHUNK)
        await resp.write(_DONE)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", _health)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _serve(host: str, port: int, chunks: int) -> None:
    runner = web.AppRunner(build_app(chunks), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    print(f"bare server ready at http://{host}:{runner.addresses[0][1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--chunks", type=int, default=64)
    args = p.parse_args()
    import uvloop

    uvloop.run(_serve(args.host, args.port, args.chunks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
