"""HTTP to the target as the checks need it: raw bytes, exact headers, and streams held open on purpose.

The checks are plain (synchronous) functions; `Api` runs the asynchronous client on an event loop of its own, so the
suite needs no asyncio plugin, and the limit checks run their concurrent scenarios on the same loop.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDict

from harness.conformance.contract import Settings
from harness.conformance.events import StreamReply

T = TypeVar("T")


class _Default(enum.Enum):
    KEY = "the target's first key"


DEFAULT = _Default.KEY
Authorization = str | None | _Default  # a full header value, no header at all, or `Bearer <first key>`


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole response: status, headers, body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    sent_at_s: float  # wall clock when the request was sent

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise AssertionError(f"HTTP {self.status}: the body is not JSON ({exc}): {self.body[:300]!r}") from None

    def describe(self) -> str:
        return f"HTTP {self.status}: {self.body[:300].decode('utf-8', errors='replace')}"


class Held:
    """A streamed request kept open after its first event, so that it stays in flight on the server."""

    def __init__(self, status: int, response: aiohttp.ClientResponse | None, body: bytes) -> None:
        self.status = status
        self.response = response
        self.body = body

    @property
    def admitted(self) -> bool:
        return self.response is not None

    def ended(self) -> bool:
        """The server has sent the whole stream (so it no longer holds a slot for it)."""
        return self.response is not None and self.response.content.is_eof()

    async def finish(self) -> bytes:
        assert self.response is not None
        rest = await self.response.read()
        self.response.release()
        self.response = None
        return rest

    def close(self) -> None:
        """Disconnect: the connection is closed, not returned to the pool, so the server sees the client go."""
        if self.response is not None:
            self.response.close()
            self.response = None


class Endpoint:
    """The asynchronous client. Compression is off so that the checks see the bytes the server wrote."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.target = settings.target
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.settings.request_timeout_s)
            # A fresh connection per request: servers close idle keep-alive connections on their own schedule
            # (uvicorn after 5 s), and a check must not fail because a pooled connection went stale under it.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True),
                timeout=timeout,
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def url(self, path: str) -> str:
        return self.target.base_url.rstrip("/") + path

    def bearer(self, key: str) -> str:
        return f"Bearer {key}"

    def headers(self, authorization: Authorization, content_type: str | None = None) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict(self.settings.extra_headers)
        if authorization is DEFAULT:
            authorization = self.bearer(self.target.api_key)
        if authorization is not None:
            headers["Authorization"] = authorization
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def get(self, path: str, authorization: Authorization = DEFAULT) -> Reply:
        sent = time.time()
        async with self.session.get(self.url(path), headers=self.headers(authorization)) as r:
            return Reply(r.status, r.headers, await r.read(), sent)

    async def post(
        self,
        path: str,
        body: Mapping[str, Any] | bytes,
        authorization: Authorization = DEFAULT,
        content_type: str = "application/json",
    ) -> Reply:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = time.time()
        headers = self.headers(authorization, content_type)
        async with self.session.post(self.url(path), data=data, headers=headers) as r:
            return Reply(r.status, r.headers, await r.read(), sent)

    async def stream(self, path: str, body: Mapping[str, Any], authorization: Authorization = DEFAULT) -> StreamReply:
        sent = time.time()
        headers = self.headers(authorization, "application/json")
        async with self.session.post(self.url(path), data=orjson.dumps({**body, "stream": True}), headers=headers) as r:
            return StreamReply(r.status, r.headers, await r.read(), sent)

    async def hold(self, body: Mapping[str, Any], authorization: Authorization = DEFAULT) -> Held:
        """Open a completion stream and read up to the end of its first event (a blank line)."""
        headers = self.headers(authorization, "application/json")
        response = await self.session.post(self.url("/completions"), data=orjson.dumps(body), headers=headers)
        if response.status != 200:
            try:
                return Held(response.status, None, await response.read())
            finally:
                response.release()
        try:
            while (line := await response.content.readline()).strip():
                pass
            if not line:
                raise AssertionError("a stream that should stay open ended before its first event")
        except BaseException:
            response.close()
            raise
        return Held(200, response, b"")


class Api:
    """The synchronous face of `Endpoint` for the checks, with one event loop for the whole session."""

    def __init__(self, settings: Settings) -> None:
        self._runner = asyncio.Runner()
        self.endpoint = Endpoint(settings)

    def run(self, work: Awaitable[T]) -> T:
        return self._runner.run(_awaited(work))

    def get(self, path: str, authorization: Authorization = DEFAULT) -> Reply:
        return self.run(self.endpoint.get(path, authorization))

    def post(
        self,
        path: str,
        body: Mapping[str, Any] | bytes,
        authorization: Authorization = DEFAULT,
        content_type: str = "application/json",
    ) -> Reply:
        return self.run(self.endpoint.post(path, body, authorization, content_type))

    def stream(self, path: str, body: Mapping[str, Any]) -> StreamReply:
        return self.run(self.endpoint.stream(path, body))

    def close(self) -> None:
        self.run(self.endpoint.close())
        self._runner.close()


async def _awaited(work: Awaitable[T]) -> T:
    return await work
