"""The load generator's HTTP client: aiohttp, one session, streaming responses read as they arrive.

How each request's send and each read of its answer are timed is the connection's business
(`harness.client.protocol`); the client opens the session on those connections, sends, retries 429s as configured,
and parses each stream into the request's `Record` as its reads come. It reports what happened to each request in
its record and never computes statistics. Failures are data: every outcome, including exceptions from aiohttp, ends
up as the record's error kind and detail.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDict

from harness.client.protocol import OUTGOING, HeldRequest, Outgoing, Read, TimedConnector, TimedProtocol, follow_body
from harness.client.release import Release
from harness.client.request import ApiKey, ClientConfig, chunk_validator, request_headers
from harness.records.record import Record
from harness.records.sse import SSEError, SSEParser
from harness.records.stream import StreamState, record_refusal


class Client:
    """Sends streamed requests and fills their records. Use as an async context manager."""

    def __init__(
        self, config: ClientConfig, keys: Sequence[ApiKey], *, connections: int, origin_ns: int, seed: int = 0
    ) -> None:
        if not keys:
            raise ValueError("at least one API key is needed")
        self.config = config
        self.keys = tuple(keys)
        self.origin_ns = origin_ns
        if connections < 0:
            raise ValueError("connections must be 0 (no limit) or more")
        self._connections = connections  # 0: no limit, for an open loop without --max-concurrency
        # Built once: aiohttp would parse a string URL and copy a plain dict of headers on every request.
        self._url = yarl.URL(config.url)
        self._headers = [self._key_headers(k) for k in self.keys]
        self._validate: Callable[[Any], Any] | None = None
        if config.validate_chunks:
            self._validate = chunk_validator(config.profile, config.endpoint)
        self._jitter = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None

    def _key_headers(self, key: ApiKey) -> CIMultiDict[str]:
        extra = self.config.extra_headers
        return CIMultiDict(request_headers(key.secret, trace_timing=self.config.trace_timing, extra=extra))

    async def __aenter__(self) -> Client:
        connector = TimedConnector(
            limit=self._connections, limit_per_host=self._connections, ttl_dns_cache=None, enable_cleanup_closed=False
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            read_bufsize=self.config.read_bufsize,
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies; filtering them costs per request
            request_class=HeldRequest,  # stamps `sent_ns` at the write (no trace hooks: they cost per request)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the client is not open (use `async with Client(...)`)")
        return self._session

    def key_for(self, index: int) -> int:
        """Requests are spread over the keys in turn."""
        return index % len(self.keys)

    async def send(
        self,
        body: bytes,
        record: Record,
        release: Release | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        text: list[str] | None = None,
    ) -> Record:
        """Send one request (retrying 429s when configured) and complete its record.

        With a `release`, the request is built now and written when the release opens; retries go at once.
        `headers` are this request's own, over the client's (a session's affinity header); `text`, when given,
        receives the answer's text as it streams in.
        """
        key = self.key_for(record.index)
        record.key = self.keys[key].name
        sent_with: CIMultiDict[str] = self._headers[key]
        if headers:
            sent_with = sent_with.copy()
            sent_with.update(headers)
        first_sent: int | None = None
        try:
            while True:
                record.attempts += 1
                await self._attempt(body, sent_with, record, release if record.attempts == 1 else None, text)
                if first_sent is None:
                    first_sent = record.sent_ns
                if record.status != 429 or self.config.on_429 == "fail" or record.attempts > self.config.max_retries:
                    break
                base = record.retry_after_s if record.retry_after_s is not None else 0.5 * 2 ** (record.attempts - 1)
                base = min(base, self.config.max_retry_wait_s)
                # Never sooner than the server asked; the jitter keeps throttled clients from returning in step.
                await asyncio.sleep(base + self._jitter.uniform(0.0, 0.25 * base + 0.05))
                _reset_for_retry(record)
        except asyncio.CancelledError:
            record.fail("cancelled", "the run was stopped while this request was in flight")
            raise
        finally:
            if first_sent is not None and record.sent_ns is not None:
                record.throttled_ns = record.sent_ns - first_sent
        return record

    async def _attempt(
        self, body: bytes, headers: Mapping[str, str], record: Record, release: Release | None, text: list[str] | None
    ) -> None:
        origin = self.origin_ns
        attempted = time.perf_counter_ns() - origin
        if record.dispatched_ns is None:
            record.dispatched_ns = attempted
        record.sent_ns = attempted  # until the write says when the request really left (`HeldTransport`)
        record.written_ns = None
        out = Outgoing(record, release, origin)
        outgoing = OUTGOING.set(out)
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                async with self.session.post(self._url, data=body, headers=headers) as response:
                    record.status = response.status
                    record.request_id = response.headers.get("x-request-id")
                    timed = TimedProtocol.of(response)
                    record.headers_ns = (timed.headers_ns if timed is not None else time.perf_counter_ns()) - origin
                    if response.status != 200:
                        await self._failed(response, record)
                        return
                    ctype = response.headers.get("Content-Type", "")
                    if not ctype.startswith("text/event-stream"):
                        record.nonconformant(f"Content-Type is {ctype!r}, not text/event-stream")
                    await self._stream(response, timed, record, text)
        except TimeoutError:
            record.fail("timeout", f"no complete response within {self.config.request_timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            record.fail("connect", str(exc))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            record.fail("disconnect", f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            record.fail("client_error", f"{type(exc).__name__}: {exc}")
        finally:
            OUTGOING.reset(outgoing)
        if (writing := out.writing) is not None and not writing.done():
            await writing  # the pacer's thread is about to say when its write returned
        if record.end_ns is None:
            record.end_ns = time.perf_counter_ns() - origin

    async def _failed(self, response: aiohttp.ClientResponse, record: Record) -> None:
        raw = await response.read()
        record.end_ns = time.perf_counter_ns() - self.origin_ns
        record_refusal(record, response.status, raw, response.headers.get("Retry-After"))

    async def _stream(
        self, response: aiohttp.ClientResponse, timed: TimedProtocol | None, record: Record, text: list[str] | None
    ) -> None:
        parser = SSEParser()
        chat = self.config.endpoint == "chat"
        state = StreamState(record, self.origin_ns, self._validate, chat, self.config.output, text)

        def feed(data: bytes, read: Read) -> None:
            events = parser.feed(data)
            at = read.at_ns
            ends = not parser.midway and not read.ended  # its last event ended the read
            if read.exact or (len(events) == 1 and ends):  # the usual read: one event, or one segment; exact
                state.events(events, at, 0, None, True, read.kernel_timed)
                return
            woke = None if read.woke_ns is None else at - read.woke_ns
            state.events(events, at, max(0, at - read.floor_ns), woke, ends, read.kernel_timed)

        try:
            if timed is not None:
                await follow_body(response.content, timed, feed)
            else:
                floor = self.origin_ns + (record.sent_ns or 0)
                while data := await response.content.readany():
                    now = time.perf_counter_ns()
                    feed(data, Read(now, floor, False))
                    floor = now
        except SSEError as exc:
            record.fail("protocol_error", str(exc))
        truncated = parser.close()
        state.finish(truncated, time.perf_counter_ns())


def _reset_for_retry(record: Record) -> None:
    record.status = None
    record.error_kind = None
    record.error_detail = None
    record.headers_ns = None
    record.end_ns = None
    record.written_ns = None
