"""The load generator's HTTP client: aiohttp, one session, streaming responses read as they arrive.

Timing: the moment bytes arrive is taken in the connection's `data_received` callback, from the read that brings
the response's headers on, whether or not the task that parses them has started reading — so the time spent parsing
and validating other responses does not leak into this one's timestamps. On asyncio's own event loop the time is
the kernel's, of when the bytes reached the socket (`StampedSocket`), so not even the loop's lag in coming round to
the socket counts; on uvloop it is read from the clock when the loop reads them. Each read gets one timestamp,
applied to every event it completes. Once the task has the response's headers, the reads of its body are parsed as
they come, once the loop has read (and timed) every socket that was ready: the task sleeps until the body ends
instead of waking per chunk.
The moment a request is sent is taken the same way, when its bytes are handed to the socket — not when the
coroutine starts building it — so that aiohttp's own work on a burst of requests (and its writing the body from a
task of its own, a loop iteration later) counts as the client's, not as the server's TTFT. A request handed over
ahead of its scheduled time comes with a `Release`: aiohttp builds it at once, and `_HeldTransport` leaves its
bytes with the release, which the pacing thread writes when the request is due — so neither building one request
nor handling another's response holds up a send. When the connection is not one of ours (another aiohttp), or has
moved on to its next response before the task looked at this one, the time the read is handed to the task is used
instead.

The client reports what happened to each request in its `Record`; it never computes statistics. Failures are
data: every outcome, including exceptions from aiohttp, ends up as the record's error kind and detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import aiohttp
import fastjsonschema
import orjson
import yarl
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection
from multidict import CIMultiDict

import schemas
from harness.client import selector, stamped_socket
from harness.client.release import Release
from harness.records.outputs import OutputSpec
from harness.records.record import Record
from harness.records.sse import SSEError, SSEParser
from harness.records.stream import StreamState, refused
from harness.records.stream import (
    retry_after_s as retry_after_s,  # part of this module's interface before the move
)
from schemas import Profile

Endpoint = Literal["chat", "completion"]
On429 = Literal["fail", "retry"]
_PATHS: Mapping[Endpoint, str] = {"chat": "/chat/completions", "completion": "/completions"}
_CHUNK_SCHEMAS: Mapping[Endpoint, str] = {"chat": "chat_chunk", "completion": "completion_chunk"}


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    secret: str


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    model: str
    endpoint: Endpoint = "chat"
    profile: Profile = "anyscale"
    on_429: On429 = "fail"
    max_retries: int = 8
    max_retry_wait_s: float = 30.0
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 30.0
    validate_chunks: bool = False
    trace_timing: bool = False
    read_bufsize: int = 1 << 20
    extra_body: Mapping[str, Any] | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()  # sent with every request, after (and over) the defaults
    output: OutputSpec | None = None  # structured outputs or tools every request asks for, checked in each answer


class _Parses:
    """Body reads waiting to be parsed, handed to their responses once per event-loop iteration.

    Each read is timed as the loop reads it; parsing waits until the loop has read — and timed — every socket that
    was ready, so that parsing one response never delays the timestamp of another. One per session.
    """

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[tuple[_TimedHandler, bytes, Read]] = []
        self._scheduled = False

    def add(self, handler: _TimedHandler, data: bytes, read: Read) -> None:
        self._pending.append((handler, data, read))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.run)

    def run(self) -> None:
        """Parse every read waiting, in the order they were read (also called by a task that must not wait)."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        for handler, data, read in pending:
            handler.parse(data, read)


@dataclass(slots=True)  # not frozen: one is made per read, and a frozen dataclass takes four times as long to build
class Read:
    """When one read's bytes arrived: `at_ns` its stamp (the kernel's receive time of its last segment when
    `kernel_timed`, else when the loop read them); `floor_ns`, before which none of them had arrived (the
    connection's previous read, which emptied the socket, the send of the request they answer, or what the loop's
    selector knows: `harness.client.selector`); and `woke_ns`, when not None, the wake-up that none of them arrived
    sooner than, less the wake-up latency."""

    at_ns: int
    floor_ns: int
    kernel_timed: bool
    woke_ns: int | None = None


Feed = Callable[[bytes, Read], None]


@dataclass(slots=True)
class _Outgoing:
    """The request that the current task is about to write: its record, and when it may leave (None: at once).

    `writing` is set while the pacer's thread holds the request's bytes: done once that thread has said when its
    write returned (or the bytes were dropped), so the record is not finished before it holds `written_ns`.
    """

    record: Record
    release: Release | None
    origin_ns: int
    writing: asyncio.Future[None] | None = None


_OUTGOING: contextvars.ContextVar[_Outgoing | None] = contextvars.ContextVar("harness_outgoing", default=None)


class _HeldTransport:
    """A connection's transport while a request is written on it: stamps the send, and holds it for its release.

    The request's bytes (aiohttp writes them in one go, headers with the body) go to the socket at once when there
    is no release or it is open already; otherwise they are left with the release, which writes them from the
    pacer's thread when the request is due, and the loop then gives the connection its own transport back. A
    write that comes after the held one waits for that. Anything else is the real transport's; closing the
    connection first drops whatever is still held.
    """

    __slots__ = ("_data", "_later", "_outgoing", "_protocol", "real")

    def __init__(self, protocol: _TimedHandler, real: asyncio.Transport, outgoing: _Outgoing) -> None:
        self._protocol = protocol
        self.real = real
        self._outgoing = outgoing
        self._data: bytes | None = None  # left with the release
        self._later: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._data is not None:
            self._later.append(bytes(data))
            return
        release = self._outgoing.release
        if release is not None and not release.is_open:
            fd = os.dup(self.real.get_extra_info("socket").fileno())
            held = bytes(data)
            writing = self._protocol.loop.create_future()
            if release.hold(fd, held, self._stamp, self._written):
                self._data = held
                self._outgoing.writing = writing
                return
            os.close(fd)
        if not self._restore():
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        self._stamp(time.perf_counter_ns())
        self.real.write(data)
        self._outgoing.record.written_ns = time.perf_counter_ns() - self._outgoing.origin_ns

    def writelines(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.drop()
        self.real.close()

    def abort(self) -> None:
        self.drop()
        self.real.abort()

    def drop(self) -> None:
        if self._data is not None and (release := self._outgoing.release) is not None:
            release.cancel()
        if (writing := self._outgoing.writing) is not None and not writing.done():
            writing.set_result(None)

    def _written(self, written: int, at_ns: int) -> None:
        """On the pacer's thread: `written` of the held bytes went (-1: none), and the write returned at `at_ns`."""
        self._outgoing.record.written_ns = at_ns - self._outgoing.origin_ns
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
            self._protocol.loop.call_soon_threadsafe(self._finish, written)

    def _finish(self, written: int) -> None:
        assert self._data is not None
        rest = [self._data[max(written, 0) :], *self._later] if written < len(self._data) else self._later
        if self._restore() and rest:
            self.real.write(b"".join(rest))
        if (writing := self._outgoing.writing) is not None and not writing.done():
            writing.set_result(None)

    def _stamp(self, at_ns: int) -> None:
        """The request's bytes go to the socket now (`at_ns`); on the pacer's thread when it writes them.

        No byte of the answer can arrive before it: the connection's next read starts its window here.
        """
        self._outgoing.record.sent_ns = at_ns - self._outgoing.origin_ns
        self._protocol.floor_ns = max(self._protocol.floor_ns, at_ns)

    def _restore(self) -> bool:
        """Give the connection its own transport back; False if it is closing or was given another meanwhile."""
        if self._protocol.transport is not cast(object, self) or self.real.is_closing():
            return False
        self._protocol.transport = self.real
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _TimedHandler(ResponseHandler):
    """aiohttp's connection protocol, plus when each read of the latest response on the connection arrived.

    `reader` is aiohttp's body reader of that response (`ResponseHandler._payload`, set as its headers are
    parsed), `headers_ns` when those headers were read, and `arrivals` holds (its `Read`, body bytes so far) for
    every read that brought body bytes — noted from the first read, whether or not a task reads the response yet.
    `floor_ns` is when the connection's last read emptied its socket (or its request was sent, if later): the next
    read's bytes arrived after it.
    Once a task `follow`s the response, each read is taken out of aiohttp's buffer as it is read and queued, with
    its time, on the session's `_Parses`, which hands it to the task's parser without waking the task. While a
    request is being written, the connection's transport is a `_HeldTransport` (`hold`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, parses: _Parses | None = None) -> None:
        super().__init__(loop)
        self.reader: aiohttp.StreamReader | None = None
        self.headers_ns = 0
        self.arrivals: deque[tuple[Read, int]] = deque()
        self.floor_ns = 0
        self._fed = 0
        self._parses = parses if parses is not None else _Parses(loop)
        self._feed: Feed | None = None
        self._stamped: stamped_socket.StampedSocket | None = None  # the socket the kernel times reads of
        self._selector = selector.of(loop)
        self._unwatched = False  # reading was paused: the next read's bytes may have waited unwatched

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._stamped = stamped_socket.of(transport)

    def data_received(self, data: bytes) -> None:
        read = self._read()
        super().data_received(data)
        if self._feed is not None:  # followed: out of aiohttp's buffer, into the queue, with this read's time
            if body := self._buffered():
                self._parses.add(self, body, read)
            return
        reader = self._payload
        if reader is None:
            return
        if reader is not self.reader:  # a new response on this connection: its own record of reads
            self.reader, self.headers_ns, self.arrivals, self._fed = reader, read.at_ns, deque(), 0
        if (fed := reader.total_bytes) != self._fed:
            self._fed = fed
            self.arrivals.append((read, fed))

    def _read(self) -> Read:
        """The timing of the read being handed over now, and where the next one's window starts."""
        floor = self.floor_ns
        stamped = self._stamped
        if stamped is None:
            now = time.perf_counter_ns()
            self.floor_ns = now
            return Read(now, floor, False)
        woke: int | None = None
        timed = self._selector
        if timed is not None and not self._unwatched:
            if timed.after_ns > floor:
                floor = timed.after_ns
            woke = timed.woke_ns
            if stamped.kernel_timed:
                timed.arrived(stamped.arrived_ns)
        self._unwatched = self._reading_paused or getattr(self, "_buffer_paused", False)
        if stamped.drained:  # else bytes that arrived before this read may still wait in the socket
            self.floor_ns = stamped.read_ns
        return Read(stamped.arrived_ns, floor, stamped.kernel_timed, woke)

    def resume_reading(self, resume_parser: bool = True) -> None:
        # aiohttp's body reader calls this after every read it hands out (3.14: whether or not anything was
        # paused), and the call feeds the parser an empty read; with nothing paused there is nothing to resume.
        if self._reading_paused or getattr(self, "_buffer_paused", False):  # the second flag is new in 3.14
            super().resume_reading(resume_parser)

    def follow(self, feed: Feed) -> None:
        """Hand the body of the latest response to `feed(data, read)` read by read, as the loop reads it.

        The reads that came before are handed over now, each with its own time; later ones once per loop
        iteration (`_Parses`), with no task woken per read — the task waits for the body's end
        (`reader.wait_eof()`). An exception from `feed` is set on the reader, which ends that wait with it.
        `unfollow` when the body has ended, or the wait was given up.
        """
        assert self.reader is not None
        self._feed = feed
        if data := self._buffered():  # the whole body so far: none of it was read
            pos = 0
            for read, upto in self.arrivals:
                if (cut := min(upto, len(data))) > pos:
                    self.parse(data[pos:cut], read)  # the whole of `data` when one read brought it: no copy
                    pos = cut
            if pos < len(data):
                self.parse(data[pos:], self._untimed())
        self.arrivals.clear()

    def unfollow(self) -> None:
        """Parse what is queued, then any body bytes still buffered (the connection's end can bring some); stop."""
        if self._feed is None:
            return
        self._parses.run()
        if data := self._buffered():
            self.parse(data, self._untimed())
        self._feed = None

    def hold(self, outgoing: _Outgoing) -> None:
        """The next request written on this connection waits for `outgoing.release` and stamps its send."""
        self.unhold()
        if self.transport is not None:
            self.transport = cast("asyncio.Transport", _HeldTransport(self, self.transport, outgoing))

    def unhold(self) -> None:
        """Give the connection its own transport back, dropping whatever a request that failed left held."""
        if isinstance(held := self.transport, _HeldTransport):
            held.drop()
            self.transport = held.real

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _buffered(self) -> bytes:
        """The body bytes aiohttp's reader holds, taken out of it; none once the reader has failed."""
        reader = self.reader
        return reader.read_nowait() if reader is not None and reader.exception() is None else b""

    def _untimed(self) -> Read:
        """Bytes found buffered with no read to say when they came: now, as early as the last drained read."""
        now = time.perf_counter_ns()
        return Read(now, min(self.floor_ns, now), False)

    def parse(self, data: bytes, read: Read) -> None:
        if (feed := self._feed) is None:  # no longer followed, or its parser failed already
            return
        try:
            feed(data, read)
        except Exception as exc:  # raised in the task that waits for the body, not in aiohttp's protocol
            assert self.reader is not None
            self.reader.set_exception(exc)
            self._feed = None

    @staticmethod
    def of(response: aiohttp.ClientResponse) -> _TimedHandler | None:
        """The protocol that timed this response's reads: ours, and not yet on to the connection's next response."""
        protocol = getattr(response.content, "_protocol", None)  # aiohttp's reader keeps its connection's protocol
        if isinstance(protocol, _TimedHandler) and protocol.reader is response.content:
            return protocol
        return None


class _TimedConnector(aiohttp.TCPConnector):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(socket_factory=stamped_socket.factory(asyncio.get_running_loop()), **kwargs)
        # aiohttp builds connection protocols from this factory (stable since aiohttp 3.0).
        parses = _Parses(self._loop)
        self._factory = cast(
            "functools.partial[ResponseHandler]", functools.partial(_TimedHandler, loop=self._loop, parses=parses)
        )


class _HeldRequest(aiohttp.ClientRequest):
    """aiohttp's request, written through `_HeldTransport` on the connection it is given (one of ours)."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        outgoing = _OUTGOING.get()
        protocol = conn.protocol
        if outgoing is None or not isinstance(protocol, _TimedHandler):
            return await super().send(conn)
        protocol.hold(outgoing)
        try:
            return await super().send(conn)
        except BaseException:
            protocol.unhold()
            raise


def request_body(
    config: ClientConfig,
    messages: Sequence[Mapping[str, str]] | None,
    prompt: str | None,
    max_tokens: int | None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The JSON body of one streamed request; built once per prompt and reused."""
    body: dict[str, Any] = {"model": config.model, "stream": True, "stream_options": {"include_usage": True}}
    if config.endpoint == "chat":
        body["messages"] = list(messages) if messages is not None else [{"role": "user", "content": prompt or ""}]
    else:
        body["prompt"] = prompt or ""
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if config.output is not None:
        body.update(config.output.body())
    if config.extra_body:
        body.update(config.extra_body)
    if extra:
        body.update(extra)
    return orjson.dumps(body)


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
        self._url = yarl.URL(config.base_url.rstrip("/") + _PATHS[config.endpoint])
        self._headers = [self._key_headers(k) for k in self.keys]
        self._validate: Callable[[Any], Any] | None = None
        if config.validate_chunks:
            schema = schemas.response_schema(config.profile, _CHUNK_SCHEMAS[config.endpoint])
            self._validate = fastjsonschema.compile(schema)
        self._jitter = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None

    def _key_headers(self, key: ApiKey) -> CIMultiDict[str]:
        headers = {
            "Authorization": f"Bearer {key.secret}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
        }
        if self.config.trace_timing:
            headers["x-trace-timing"] = "1"
        headers.update(self.config.extra_headers)
        return CIMultiDict(headers)

    async def __aenter__(self) -> Client:
        connector = _TimedConnector(
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
            request_class=_HeldRequest,  # stamps `sent_ns` at the write (no trace hooks: they cost per request)
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

    async def send(self, body: bytes, record: Record, release: Release | None = None) -> Record:
        """Send one request (retrying 429s when configured) and complete its record.

        With a `release`, the request is built now and written when the release opens; retries go at once.
        """
        key = self.key_for(record.index)
        record.key = self.keys[key].name
        headers = self._headers[key]
        first_sent: int | None = None
        try:
            while True:
                record.attempts += 1
                await self._attempt(body, headers, record, release if record.attempts == 1 else None)
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

    async def _attempt(self, body: bytes, headers: Mapping[str, str], record: Record, release: Release | None) -> None:
        origin = self.origin_ns
        attempted = time.perf_counter_ns() - origin
        if record.dispatched_ns is None:
            record.dispatched_ns = attempted
        record.sent_ns = attempted  # until the write says when the request really left (`_HeldTransport`)
        record.written_ns = None
        out = _Outgoing(record, release, origin)
        outgoing = _OUTGOING.set(out)
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                async with self.session.post(self._url, data=body, headers=headers) as response:
                    record.status = response.status
                    record.request_id = response.headers.get("x-request-id")
                    timed = _TimedHandler.of(response)
                    record.headers_ns = (timed.headers_ns if timed is not None else time.perf_counter_ns()) - origin
                    if response.status != 200:
                        await self._failed(response, record)
                        return
                    ctype = response.headers.get("Content-Type", "")
                    if not ctype.startswith("text/event-stream"):
                        record.nonconformant(f"Content-Type is {ctype!r}, not text/event-stream")
                    await self._stream(response, timed, record)
        except TimeoutError:
            record.fail("timeout", f"no complete response within {self.config.request_timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            record.fail("connect", str(exc))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            record.fail("disconnect", f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            record.fail("client_error", f"{type(exc).__name__}: {exc}")
        finally:
            _OUTGOING.reset(outgoing)
        if (writing := out.writing) is not None and not writing.done():
            await writing  # the pacer's thread is about to say when its write returned
        if record.end_ns is None:
            record.end_ns = time.perf_counter_ns() - origin

    async def _failed(self, response: aiohttp.ClientResponse, record: Record) -> None:
        raw = await response.read()
        record.end_ns = time.perf_counter_ns() - self.origin_ns
        refused(record, response.status, raw, response.headers.get("Retry-After"))

    async def _stream(self, response: aiohttp.ClientResponse, timed: _TimedHandler | None, record: Record) -> None:
        parser = SSEParser()
        state = StreamState(record, self.origin_ns, self._validate, self.config.endpoint == "chat", self.config.output)

        def feed(data: bytes, read: Read) -> None:
            events = parser.feed(data)
            at = read.at_ns
            if len(events) == 1 and not parser.midway:  # the usual read: one event, ending it, exactly timed
                state.events(events, at, 0, None, True, read.kernel_timed)
                return
            woke = None if read.woke_ns is None else at - read.woke_ns
            state.events(events, at, max(0, at - read.floor_ns), woke, not parser.midway, read.kernel_timed)

        try:
            if timed is not None:
                await _followed(response.content, timed, feed)
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


async def _followed(content: aiohttp.StreamReader, timed: _TimedHandler, feed: Feed) -> None:
    """Until the body's end, its reads go to `feed` as the connection reads them (see `_TimedHandler.follow`)."""
    timed.follow(feed)
    try:
        if content.exception() is None:
            await content.wait_eof()
    finally:
        timed.unfollow()
    if (exc := content.exception()) is not None:  # from aiohttp, or from `feed` on a read parsed after the end
        raise exc


def _reset_for_retry(record: Record) -> None:
    record.status = None
    record.error_kind = None
    record.error_detail = None
    record.headers_ns = None
    record.end_ns = None
    record.written_ns = None
