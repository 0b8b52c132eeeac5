"""The connection level of the client: when each read of a response arrived, and when each request left.

The moment bytes arrive is taken in the connection's `data_received` callback, from the read that brings the
response's headers on, whether or not the task that parses them has started reading — so the time spent parsing and
validating other responses does not leak into this one's timestamps. On asyncio's own event loop the time is the
kernel's, of when the bytes reached the socket (`StampedSocket`), so not even the loop's lag in coming round to the
socket counts; on uvloop it is read from the clock when the loop reads them. Each read gets one timestamp, applied
to every event it completes. Once the task has the response's headers, the reads of its body are parsed as they
come, once the loop has read (and timed) every socket that was ready: the task sleeps until the body ends instead
of waking per chunk.

The moment a request is sent is taken the same way, when its bytes are handed to the socket — not when the
coroutine starts building it — so that aiohttp's own work on a burst of requests counts as the client's, not as the
server's TTFT. A request handed over ahead of its scheduled time comes with a `Release`: aiohttp builds it at once,
and `HeldTransport` leaves its bytes with the release, which the pacing thread writes when the request is due — so
neither building one request nor handling another's response holds up a send. When the connection is not one of
ours, or has moved on to its next response before the task looked at this one, the time the read is handed to the
task is used instead. aiohttp's private attributes that this needs are read through `harness.client.internals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection

from harness.client import internals, selector, stamped_socket
from harness.client.release import Release
from harness.records.record import Record


@dataclass(slots=True)  # not frozen: one is made per read, and a frozen dataclass takes four times as long to build
class Read:
    """When one read's bytes arrived: `at_ns` its stamp (the kernel's receive time of its last segment when
    `kernel_timed`, else when the loop read them); `floor_ns`, before which none of them had arrived (the
    connection's previous read, which emptied the socket, the send of the request they answer, or what the loop's
    selector knows: `harness.client.selector`); and `woke_ns`, when not None, the wake-up that none of them arrived
    sooner than, less the wake-up latency. `exact`: the read was one TCP segment, so all its bytes arrived at
    `at_ns` (`floor_ns` is then `at_ns`). `ended`: the kernel timed a read of several segments that also brought
    the body's end (a chunked body's terminator) after its last event, which then did not necessarily come in the
    last segment. (A read the loop timed is late for all its bytes by the loop's lag alike.)"""

    at_ns: int
    floor_ns: int
    kernel_timed: bool
    woke_ns: int | None = None
    exact: bool = False
    ended: bool = False


Feed = Callable[[bytes, Read], None]


class ParseQueue:
    """Body reads waiting to be parsed, handed to their responses once per event-loop iteration.

    Each read is timed as the loop reads it; parsing waits until the loop has read — and timed — every socket that
    was ready, so that parsing one response never delays the timestamp of another. One per session.
    """

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[tuple[TimedProtocol, bytes, Read]] = []
        self._scheduled = False

    def add(self, handler: TimedProtocol, data: bytes, read: Read) -> None:
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


@dataclass(slots=True)
class Outgoing:
    """The request that the current task is about to write: its record, and when it may leave (None: at once).

    `writing` is set while the pacer's thread holds the request's bytes: done once that thread has said when its
    write returned (or the bytes were dropped), so the record is not finished before it holds `written_ns`.
    """

    record: Record
    release: Release | None
    origin_ns: int
    writing: asyncio.Future[None] | None = None


OUTGOING: contextvars.ContextVar[Outgoing | None] = contextvars.ContextVar("harness_outgoing", default=None)


class HeldTransport:
    """A connection's transport while a request is written on it: stamps the send, and holds it for its release.

    The request's bytes (aiohttp writes them in one go, headers with the body) go to the socket at once when there
    is no release or it is open already; otherwise they are left with the release, which writes them from the
    pacer's thread when the request is due, and the loop then gives the connection its own transport back. A
    write that comes after the held one waits for that. Anything else is the real transport's; closing the
    connection first drops whatever is still held.
    """

    __slots__ = ("_data", "_later", "_outgoing", "_protocol", "real")

    def __init__(self, protocol: TimedProtocol, real: asyncio.Transport, outgoing: Outgoing) -> None:
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
        sent = time.perf_counter_ns()
        self._stamp(sent)
        self.real.write(data)
        written = time.perf_counter_ns()
        left = self._protocol.sent_ns() if not self.real.get_write_buffer_size() else None
        record, origin = self._outgoing.record, self._outgoing.origin_ns
        if left is not None and sent <= left <= written:  # the kernel said when the last byte went: exactly then
            sent = written = left
            record.sent_ns = sent - origin
        record.written_ns = written - origin

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


class TimedProtocol(ResponseHandler):
    """aiohttp's connection protocol, plus when each read of the latest response on the connection arrived.

    `reader` is aiohttp's body reader of that response (`ResponseHandler._payload`, set as its headers are
    parsed), `headers_ns` when those headers were read, and `arrivals` holds (its `Read`, body bytes so far) for
    every read that brought body bytes — noted from the first read, whether or not a task reads the response yet.
    `floor_ns` is when the connection's last read emptied its socket (or its request was sent, if later): the next
    read's bytes arrived after it.
    Once a task `follow`s the response, each read is taken out of aiohttp's buffer as it is read and queued, with
    its time, on the session's `ParseQueue`, which hands it to the task's parser without waking the task. While a
    request is being written, the connection's transport is a `HeldTransport` (`hold`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, parses: ParseQueue | None = None) -> None:
        super().__init__(loop)
        self.reader: aiohttp.StreamReader | None = None
        self.headers_ns = 0
        self.arrivals: deque[tuple[Read, int]] = deque()
        self.floor_ns = 0
        self._fed = 0
        self._parses = parses if parses is not None else ParseQueue(loop)
        self._feed: Feed | None = None
        self._stamped: stamped_socket.StampedSocket | None = None  # the socket the kernel times reads of
        self._selector = selector.of(loop)
        self._unwatched = False  # reading was paused: the next read's bytes may have waited unwatched

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._stamped = stamped_socket.of(transport)

    def data_received(self, data: bytes) -> None:
        read = self._read()
        watch = read.kernel_timed and not read.exact  # a stamp of the last segment, which may be the terminator's
        before = internals.payload(self) if watch else None
        open_before = before is not None and not before.is_eof()
        super().data_received(data)
        if watch:
            after = internals.payload(self)
            read.ended = after is not None and after.is_eof() and (open_before or after is not before)
        if self._feed is not None:  # followed: out of aiohttp's buffer, into the queue, with this read's time
            if body := self._buffered():
                self._parses.add(self, body, read)
            return
        reader = internals.payload(self)
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
        self._unwatched = internals.reading_paused(self)
        if stamped.drained:  # else bytes that arrived before this read may still wait in the socket
            self.floor_ns = stamped.read_ns
        if stamped.kernel_timed and stamped.segments == 1:  # one segment: every byte arrived at its one stamp
            return Read(stamped.arrived_ns, stamped.arrived_ns, True, None, exact=True)
        return Read(stamped.arrived_ns, floor, stamped.kernel_timed, woke)

    def sent_ns(self) -> int | None:
        """When the kernel sent the last byte of the connection's latest `send`, if it said (asyncio's loop)."""
        return None if self._stamped is None else self._stamped.sent_ns

    def resume_reading(self, resume_parser: bool = True) -> None:
        # aiohttp's body reader calls this after every read it hands out (3.14: whether or not anything was
        # paused), and the call feeds the parser an empty read; with nothing paused there is nothing to resume.
        if internals.reading_paused(self):
            super().resume_reading(resume_parser)

    def follow(self, feed: Feed) -> None:
        """Hand the body of the latest response to `feed(data, read)` read by read, as the loop reads it.

        The reads that came before are handed over now, each with its own time; later ones once per loop
        iteration (`ParseQueue`), with no task woken per read — the task waits for the body's end
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

    def hold(self, outgoing: Outgoing) -> None:
        """The next request written on this connection waits for `outgoing.release` and stamps its send."""
        self.unhold()
        if self.transport is not None:
            self.transport = cast("asyncio.Transport", HeldTransport(self, self.transport, outgoing))

    def unhold(self) -> None:
        """Give the connection its own transport back, dropping whatever a request that failed left held."""
        if isinstance(held := self.transport, HeldTransport):
            held.drop()
            self.transport = held.real

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return internals.protocol_loop(self)

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
    def of(response: aiohttp.ClientResponse) -> TimedProtocol | None:
        """The protocol that timed this response's reads: ours, and not yet on to the connection's next response."""
        protocol = internals.reader_protocol(response.content)
        if isinstance(protocol, TimedProtocol) and protocol.reader is response.content:
            return protocol
        return None


class TimedConnector(aiohttp.TCPConnector):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(socket_factory=stamped_socket.factory(asyncio.get_running_loop()), **kwargs)
        loop = internals.connector_loop(self)
        internals.use_protocols(self, functools.partial(TimedProtocol, loop=loop, parses=ParseQueue(loop)))


class HeldRequest(aiohttp.ClientRequest):
    """aiohttp's request, written through `HeldTransport` on the connection it is given (one of ours)."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        outgoing = OUTGOING.get()
        protocol = conn.protocol
        if outgoing is None or not isinstance(protocol, TimedProtocol):
            return await super().send(conn)
        protocol.hold(outgoing)
        try:
            return await super().send(conn)
        except BaseException:
            protocol.unhold()
            raise


async def follow_body(content: aiohttp.StreamReader, timed: TimedProtocol, feed: Feed) -> None:
    """Until the body's end, its reads go to `feed` as the connection reads them (see `TimedProtocol.follow`)."""
    timed.follow(feed)
    try:
        if content.exception() is None:
            await content.wait_eof()
    finally:
        timed.unfollow()
    if (exc := content.exception()) is not None:  # from aiohttp, or from `feed` on a read parsed after the end
        raise exc
