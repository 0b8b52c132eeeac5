"""The client against a scripted in-process server on a random port: every outcome becomes a record."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from unittest import mock

import aiohttp
import orjson
import pytest
from aiohttp import web

from harness.analysis import bounds
from harness.client import selector
from harness.client.protocol import Outgoing, ParseQueue, Read, TimedProtocol, follow_body
from harness.client.release import Release
from harness.client.request import ApiKey, ClientConfig, request_body
from harness.client.session import Client
from harness.client.stamped_socket import StampedSocket
from harness.records.record import Record
from harness.records.sse import SSEParser
from harness.records.stream import retry_after_s

MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
ID = f"{MODEL}-" + "ab" * 16
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chunk(
    text: str | None, finish: str | None = None, usage: dict[str, int] | None = None, role: bool = False
) -> bytes:
    delta: dict[str, str] = {"role": "assistant", "content": ""} if role else {"content": text or ""}
    body: dict[str, object] = {
        "id": ID,
        "object": "text_completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


async def stream(request: web.Request, parts: list[bytes], pause_s: float = 0.0) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-request-id": ID})
    await response.prepare(request)
    for part in parts:
        await response.write(part)
        if pause_s:
            await asyncio.sleep(pause_s)
    await response.write_eof()
    return response


GOOD = [chunk(None, role=True), chunk("Hello"), chunk(" wor"), chunk("ld", "stop", USAGE), b"data: [DONE]\n\n"]


async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def send(handler: Handler, *, body: bytes | None = None, **config: object) -> Record:
    async for base_url in serve(handler):
        cfg = ClientConfig(base_url=base_url, model=MODEL, **config)  # type: ignore[arg-type]
        async with Client(cfg, [ApiKey("k1", "secret")], connections=4, origin_ns=0) as client:
            return await client.send(body or request_body(cfg, None, "hi", 3), Record(index=0))
    raise AssertionError("unreachable")


async def test_a_streamed_answer_split_across_writes_is_recorded_chunk_by_chunk() -> None:
    pieces = b"".join(GOOD)
    parts = [pieces[i : i + 7] for i in range(0, len(pieces), 7)]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, parts)

    record = await send(handler, validate_chunks=True)
    assert record.error_kind is None, record.error_detail
    assert (record.status, record.request_id, record.finish_reason) == (200, ID, "stop")
    assert (record.prompt_tokens, record.completion_tokens) == (5, 3)
    assert len(record.chunk_ns) == 3 and record.chunk_tokens == [1, 1, 1]
    assert record.first_token_ns == record.chunk_ns[0]
    assert record.sent_ns is not None and record.headers_ns is not None and record.end_ns is not None
    assert record.sent_ns <= record.headers_ns <= record.first_token_ns <= record.chunk_ns[-1] <= record.end_ns
    assert (record.chunks_validated, record.conformance_error_count) == (4, 0)


async def test_sent_is_when_the_request_was_written_not_when_the_client_took_it_up() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, GOOD)

    async for base_url in serve(handler):
        cfg = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=4, origin_ns=0) as client:
            client.origin_ns = origin = time.perf_counter_ns()  # as `harness bench` sets it, once the run begins
            # The loop is held up for 100 ms after the client took the request up and before it could write it.
            asyncio.get_running_loop().call_soon(time.sleep, 0.1)
            record = await client.send(request_body(cfg, None, "hi", 3), Record(index=0))
            done = time.perf_counter_ns() - origin
    assert record.error_kind is None, record.error_detail
    assert record.dispatched_ns is not None and record.sent_ns is not None and record.headers_ns is not None
    assert record.dispatched_ns >= 0 and record.sent_ns - record.dispatched_ns >= 100_000_000
    assert record.sent_ns <= record.headers_ns <= done


async def test_on_asyncio_s_loop_a_request_is_sent_at_the_kernel_s_send_time_inside_its_write() -> None:
    # The write's bracket [before, after] is the send's uncertainty unless the kernel says when the bytes went:
    # then the record's send is that one time, inside the bracket (a thread preempted in its write is no cause).
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, GOOD)

    writes: list[tuple[int, int]] = []
    real_write = asyncio.selector_events._SelectorSocketTransport.write

    def bracketed(transport: asyncio.Transport, data: bytes) -> None:
        before = time.perf_counter_ns()
        real_write(transport, data)
        if bytes(data[:5]) == b"POST ":  # the client's; the server's writes go through here too
            writes.append((before, time.perf_counter_ns()))

    async for base_url in serve(handler):
        cfg = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=4, origin_ns=0) as client:
            with mock.patch.object(asyncio.selector_events._SelectorSocketTransport, "write", bracketed):
                record = await client.send(request_body(cfg, None, "hi", 3), Record(index=0))
    assert record.error_kind is None and record.kernel_timed, record.error_detail
    ((before, after),) = writes
    assert record.sent_ns is not None and record.sent_ns == record.written_ns
    assert before <= record.sent_ns <= after


def answer_in_a_thread(listener: socket.socket, got: threading.Event, go: threading.Event, written: list[int]) -> None:
    """A server on its own thread: read one request, say so, wait for `go`, then stream the answer write by write."""
    conn, _ = listener.accept()
    with conn:
        request = b""
        while not request.endswith(b"}"):  # the JSON body closes the request
            request += conn.recv(65536)
        got.set()
        go.wait(5)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in GOOD:
            time.sleep(0.002)
            conn.sendall(http_chunk(part))
            written.append(time.perf_counter_ns())
        conn.sendall(b"0\r\n\r\n")
        conn.recv(1)  # until the client is done with the connection


async def test_bytes_that_arrived_while_the_loop_was_busy_are_timed_when_they_arrived() -> None:
    # The whole answer reaches the socket while the client's loop is held up; on asyncio's loop each read is
    # timed by the kernel (`StampedSocket`), so no timestamp is the end of the hold-up or later.
    got, go, written = threading.Event(), threading.Event(), list[int]()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        server = threading.Thread(target=answer_in_a_thread, args=(listener, got, go, written))
        server.start()
        cfg = ClientConfig(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1", model=MODEL)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=1, origin_ns=0) as client:
            sent = asyncio.create_task(client.send(request_body(cfg, None, "hi", 3), Record(index=0)))
            while not got.is_set():
                await asyncio.sleep(0.001)
            go.set()
            while len(written) < len(GOOD):  # the loop is held up until the server has written everything ...
                time.sleep(0.001)  # noqa: ASYNC251 (holding the loop up is the point)
            time.sleep(0.02)  # noqa: ASYNC251 ... and for a while after
            held_until = time.perf_counter_ns()
            record = await sent
        server.join(5)
    assert record.error_kind is None, record.error_detail
    assert record.headers_ns is not None and len(record.chunk_ns) == 3
    # The kernel times a segment as it takes it in, which on loopback can be just after the sender's write returned.
    assert record.headers_ns <= record.chunk_ns[0] <= record.chunk_ns[-1] <= written[-1] + 1_000_000 < held_until


class WatchedRelease(Release):
    """A release that says when the client has left a request's bytes with it."""

    def __init__(self) -> None:
        super().__init__()
        self.held = asyncio.Event()

    def hold(self, fd: int, data: bytes, stamp: Callable[[int], None], written: Callable[[int, int], None]) -> bool:
        taken = super().hold(fd, data, stamp, written)
        self.held.set()
        return taken


def answering_and_keeping(bodies: list[bytes]) -> Handler:
    """A handler that streams a good answer and keeps each request body it read."""

    async def handler(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        return await stream(request, GOOD)

    return handler


async def test_a_request_with_a_release_is_built_at_once_and_written_when_the_release_opens() -> None:
    bodies: list[bytes] = []
    async for base_url in serve(answering_and_keeping(bodies)):
        cfg = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=4, origin_ns=0) as client:
            release = WatchedRelease()
            body = request_body(cfg, None, "hi", 3)
            sending = asyncio.create_task(client.send(body, Record(index=0), release))
            await asyncio.wait_for(release.held.wait(), 10)
            await asyncio.sleep(0.05)
            assert bodies == [] and not sending.done()  # built, connected, and not sent
            opened_ns = time.perf_counter_ns()
            await asyncio.to_thread(release.open)  # as the pacer does, from its own thread
            record = await asyncio.wait_for(sending, 10)
            # The connection has its own transport back: the next request on it goes at once.
            again = await client.send(body, Record(index=1))
    assert record.error_kind is None and again.error_kind is None, (record.error_detail, again.error_detail)
    assert bodies == [body, body]
    assert record.sent_ns is not None and record.dispatched_ns is not None and record.headers_ns is not None
    assert record.dispatched_ns < opened_ns <= record.sent_ns <= record.headers_ns
    assert record.finish_reason == "stop" and len(record.chunk_ns) == 3
    # The pacer's write returned after the stamp (the send lies between), and the record waited to hear of it;
    # the answer may have been read before the pacer's thread ran again, so its headers can come first.
    assert record.written_ns is not None and record.sent_ns <= record.written_ns
    assert again.written_ns is not None and again.sent_ns is not None and again.sent_ns <= again.written_ns


async def test_a_request_whose_release_opened_before_it_was_built_goes_at_once() -> None:
    async for base_url in serve(answering_and_keeping([])):
        cfg = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=4, origin_ns=0) as client:
            release = WatchedRelease()
            release.open()
            record = await asyncio.wait_for(client.send(request_body(cfg, None, "hi", 3), Record(), release), 10)
    assert not release.held.is_set()  # written by the client itself, never left with the release
    assert record.error_kind is None and record.finish_reason == "stop", record.error_detail
    assert record.sent_ns is not None and record.dispatched_ns is not None
    assert record.dispatched_ns <= record.sent_ns


async def test_a_request_that_times_out_while_held_is_never_written() -> None:
    bodies: list[bytes] = []
    async for base_url in serve(answering_and_keeping(bodies)):
        cfg = ClientConfig(base_url=base_url, model=MODEL, request_timeout_s=0.2)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=4, origin_ns=0) as client:
            release = WatchedRelease()
            body = request_body(cfg, None, "hi", 3)
            record = await asyncio.wait_for(client.send(body, Record(index=0), release), 10)
            release.open()  # too late: the held bytes were dropped with their connection
            again = await client.send(body, Record(index=1))
            await asyncio.sleep(0.05)
    assert release.held.is_set() and record.error_kind == "timeout"
    assert again.error_kind is None, again.error_detail
    assert bodies == [body]  # only the second request ever reached the server


@pytest.mark.parametrize(("went", "rest"), [(6, b"gh"), (2, b"cdefgh"), (-1, b"abcdefgh")])
async def test_what_the_pacer_could_not_write_goes_after_it_in_order(went: int, rest: bytes) -> None:
    ours, theirs = socket.socketpair()
    transport = mock.Mock(spec=asyncio.Transport)
    transport.is_closing.return_value = False
    transport.get_extra_info.return_value = ours
    handler = TimedProtocol(asyncio.get_running_loop())
    handler.connection_made(transport)
    record, release = Record(), Release()
    try:
        handler.hold(Outgoing(record, release, 0))
        handler.transport.write(b"abcdef")  # held with the release
        handler.transport.write(b"gh")  # after it: waits for the held bytes
        transport.write.assert_not_called()
        # The pacer's write: all of it, some of it, or none (the connection failed).
        with mock.patch(
            "harness.client.release.write", side_effect=lambda fd, data: went if went >= 0 else os.close(-1)
        ):
            await asyncio.to_thread(release.open)
        await asyncio.sleep(0)  # the loop's side of it
        assert handler.transport is transport and record.sent_ns is not None
        assert record.written_ns is not None and record.written_ns >= record.sent_ns
        assert transport.write.call_args_list == ([mock.call(rest)] if rest else [])
    finally:
        ours.close()
        theirs.close()


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_the_connection_notes_each_read_of_a_response_as_it_arrives_even_before_a_task_reads_it() -> None:
    handler = TimedProtocol(asyncio.get_running_loop())
    handler.connection_made(mock.Mock(spec=asyncio.Transport))
    handler.set_response_params(auto_decompress=False)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    handler.data_received(head + http_chunk(b"data: 1\n\n"))
    first = handler.reader
    await asyncio.sleep(0.002)
    handler.data_received(http_chunk(b"data: 2\n\n"))
    handler.data_received(b"0\r\n\r\n")  # the end: no body bytes, no arrival
    assert first is not None and [fed for _, fed in handler.arrivals] == [9, 18]
    (r1, _), (r2, _) = handler.arrivals
    assert handler.headers_ns == r1.at_ns and r2.at_ns - r1.at_ns >= 2_000_000
    # Not a kernel-timed socket: each read's window starts at the read before it.
    assert not r1.kernel_timed and r2.floor_ns == r1.at_ns
    handler.data_received(head + http_chunk(b"data: 3\n\n"))  # the next response on the connection: its own reads
    assert handler.reader is not first and [fed for _, fed in handler.arrivals] == [9]


def timed_response(parses: ParseQueue | None = None) -> tuple[TimedProtocol, bytes]:
    handler = TimedProtocol(asyncio.get_running_loop(), parses)
    handler.connection_made(mock.Mock(spec=asyncio.Transport))
    handler.set_response_params(auto_decompress=False)
    return handler, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_a_followed_body_is_handed_over_read_by_read_with_the_time_each_was_read() -> None:
    handler, head = timed_response()
    handler.data_received(head + http_chunk(b"data: 1\n\n"))
    await asyncio.sleep(0.002)
    handler.data_received(http_chunk(b"data: 2\n\n"))
    read_at = [r.at_ns for r, _ in handler.arrivals]
    reads: list[tuple[bytes, int]] = []
    handler.follow(lambda data, read: reads.append((data, read.at_ns)))
    # What came before the task followed: each read with the time it was read, not the time of the hand-over.
    assert reads == [(b"data: 1\n\n", read_at[0]), (b"data: 2\n\n", read_at[1])]
    assert read_at[1] - read_at[0] >= 2_000_000
    before = time.perf_counter_ns()
    handler.data_received(http_chunk(b"data: 3\n\n"))
    after = time.perf_counter_ns()
    assert len(reads) == 2  # queued: parsed once the loop has read every socket that was ready
    await asyncio.sleep(0)
    assert reads[2][0] == b"data: 3\n\n" and before <= reads[2][1] <= after
    reader = handler.reader
    assert reader is not None and not reader.is_eof()
    handler.data_received(b"0\r\n\r\n")
    await asyncio.wait_for(reader.wait_eof(), timeout=1)
    handler.unfollow()
    assert len(reads) == 3


async def test_parsing_one_response_does_not_delay_the_timestamp_of_another_read_in_the_same_loop_turn() -> None:
    parses = ParseQueue(asyncio.get_running_loop())
    (slow, head), (other, _) = timed_response(parses), timed_response(parses)
    slow.data_received(head)
    other.data_received(head)
    parsed: dict[str, tuple[int, int]] = {}

    def slow_feed(data: bytes, read: Read) -> None:
        time.sleep(0.005)  # a long parse (validation of a large chunk, say)
        parsed["slow"] = (read.at_ns, time.perf_counter_ns())

    slow.follow(slow_feed)
    other.follow(lambda data, read: parsed.setdefault("other", (read.at_ns, time.perf_counter_ns())))
    slow.data_received(http_chunk(b"data: 1\n\n"))  # both sockets ready in the same turn of the loop
    other.data_received(http_chunk(b"data: 2\n\n"))
    await asyncio.sleep(0)
    slow_done = parsed["slow"][1]
    assert parsed["slow"][0] < parsed["other"][0] < slow_done  # read (and timed) before the slow parse ended


async def test_an_exception_in_a_followed_body_ends_the_wait_for_it_and_not_the_connection() -> None:
    handler, head = timed_response()
    handler.data_received(head)

    def feed(data: bytes, at: int) -> None:
        raise ValueError("cannot parse")

    reader = handler.reader
    assert reader is not None
    waiting = asyncio.create_task(follow_body(reader, handler, feed))
    await asyncio.sleep(0)
    handler.data_received(http_chunk(b"data: 1\n\n"))  # does not raise into aiohttp's protocol
    with pytest.raises(ValueError, match="cannot parse"):
        await asyncio.wait_for(waiting, timeout=1)
    # Raised before the task followed (the first read already broke it): the same, without waiting for the end.
    handler, head = timed_response()
    handler.data_received(head + http_chunk(b"data: 1\n\n"))
    assert handler.reader is not None
    with pytest.raises(ValueError, match="cannot parse"):
        await asyncio.wait_for(follow_body(handler.reader, handler, feed), timeout=1)


async def test_a_streamed_answer_is_read_without_waking_the_task_per_read() -> None:
    pieces = b"".join(GOOD)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, [pieces[i : i + 20] for i in range(0, len(pieces), 20)], pause_s=0.001)

    with mock.patch.object(aiohttp.StreamReader, "readany", side_effect=AssertionError("a wake-up per read")):
        record = await send(handler)
    assert record.error_kind is None, record.error_detail
    assert len(record.chunk_ns) == 3 and record.chunk_ns[0] < record.chunk_ns[1] < record.chunk_ns[2]


async def test_an_sse_line_over_the_limit_is_a_protocol_error() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, [chunk("a"), b"data: " + b"x" * 1000])

    with mock.patch("harness.client.session.SSEParser", functools.partial(SSEParser, max_line=400)):
        record = await send(handler)
    assert record.error_kind == "protocol_error"
    assert record.error_detail is not None and "longer than 400 bytes" in record.error_detail


async def test_no_connection_limit_lets_every_due_request_go_at_once() -> None:
    # An uncapped open loop asks for 0 connections: no limit. The server answers none of the five requests until
    # all five are in flight at once, which a pool of one connection (the old reading of 0) never allows.
    in_flight = 0
    all_in = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 5:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), timeout=10)
        return await stream(request, GOOD)

    async for base_url in serve(handler):
        cfg = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=0, origin_ns=0) as client:
            body = request_body(cfg, None, "hi", 3)
            records = await asyncio.gather(*(client.send(body, Record(index=i)) for i in range(5)))
    assert [r.error_kind for r in records] == [None] * 5, [r.error_detail for r in records]


async def test_usage_that_counts_more_tokens_than_chunks_is_spread_over_the_chunks() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    parts = [
        chunk("ab"),
        chunk("abcd", "length"),
        b'data: {"id": "x", "choices": [], "usage": ' + orjson.dumps(usage) + b"}\n\n",
        b"data: [DONE]\n\n",
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, parts)

    record = await send(handler)
    assert record.error_kind is None
    assert record.completion_tokens == 6
    assert record.chunk_tokens == [2, 4]


async def test_chunks_that_break_the_schema_are_counted_as_conformance_errors() -> None:
    bad = b'data: {"id": "nope", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}\n\n'

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, [bad, *GOOD])

    record = await send(handler, validate_chunks=True)
    assert record.error_kind is None
    assert record.conformance_error_count == 1
    assert record.conformance_errors[0].startswith("chunk 1:")


@pytest.mark.parametrize(
    ("parts", "kind", "detail"),
    [
        ([chunk("a"), b"data: {oops\n\n", b"data: [DONE]\n\n"], "protocol_error", "not JSON"),
        ([chunk("a"), chunk("b", "stop", USAGE)], "protocol_error", "without data: [DONE]"),
        ([chunk("a"), b'data: {"error": {"message": "engine died"}}\n\n'], "stream_error", "engine died"),
        ([chunk("a"), b'data: {"id": "x", "choi'], "disconnect", "middle of an event"),
        ([*GOOD, chunk("late")], "protocol_error", "after [DONE]"),
    ],
)
async def test_broken_streams_become_typed_errors(parts: list[bytes], kind: str, detail: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, parts)

    record = await send(handler)
    assert record.error_kind == kind
    assert record.error_detail is not None and detail in record.error_detail


@pytest.mark.parametrize(("status", "kind"), [(400, "http_4xx"), (401, "http_4xx"), (503, "http_5xx")])
async def test_http_errors_keep_the_status_and_the_envelope_message(status: int, kind: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "no luck", "type": "x", "param": None, "code": None}}, status=status
        )

    record = await send(handler)
    assert (record.status, record.error_kind, record.error_detail) == (status, kind, f"{status}: no luck")


async def test_a_429_is_recorded_with_its_retry_after_when_failing_fast() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "7"})

    record = await send(handler, on_429="fail")
    assert (record.error_kind, record.retry_after_s, record.attempts, record.throttled_ns) == (
        "rate_limited",
        7.0,
        1,
        0,
    )


async def test_retrying_429s_honours_retry_after_and_reports_the_time_lost() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return web.json_response({"error": {"message": "busy"}}, status=429, headers={"Retry-After": "0.05"})
        return await stream(request, GOOD)

    record = await send(handler, on_429="retry")
    assert record.error_kind is None
    assert (record.status, record.attempts) == (200, 3)
    # Two waits of at least Retry-After each.
    assert record.throttled_ns >= 100_000_000


async def test_retries_give_up_after_the_limit() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "busy"}}, status=429, headers={"Retry-After": "0"})

    record = await send(handler, on_429="retry", max_retries=2)
    assert (record.error_kind, record.attempts) == ("rate_limited", 3)


async def test_a_slow_server_is_a_timeout() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream(request, GOOD, pause_s=0.2)

    record = await send(handler, request_timeout_s=0.1)
    assert record.error_kind == "timeout"


async def test_a_refused_connection_is_a_connect_error() -> None:
    cfg = ClientConfig(base_url="http://127.0.0.1:9/v1", model=MODEL, connect_timeout_s=5)
    async with Client(cfg, [ApiKey("k1", "s")], connections=1, origin_ns=0) as client:
        record = await client.send(request_body(cfg, None, "hi", 1), Record())
    assert record.error_kind == "connect"


def test_the_body_asks_for_a_stream_with_usage() -> None:
    cfg = ClientConfig(base_url="http://x/v1", model=MODEL, endpoint="completion")
    body = orjson.loads(request_body(cfg, None, "hello", 4, {"ignore_eos": True}))
    assert body == {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt": "hello",
        "max_tokens": 4,
        "ignore_eos": True,
    }


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


def test_requests_are_spread_over_keys_in_turn() -> None:
    cfg = ClientConfig(base_url="http://x/v1", model=MODEL)
    client = Client(cfg, [ApiKey("a", "1"), ApiKey("b", "2")], connections=1, origin_ns=0)
    assert [client.key_for(i) for i in range(5)] == [0, 1, 0, 1, 0]


def answer_with_a_burst_at_the_end(listener: socket.socket) -> None:
    """A server thread: the first chunk, 40 ms of nothing, then the last chunk and [DONE] in one write."""
    conn, _ = listener.accept()
    with conn:
        request = b""
        while not request.endswith(b"}"):
            request += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(http_chunk(chunk("Hello")))
        time.sleep(0.04)
        conn.sendall(http_chunk(chunk(" world", "stop", USAGE)) + http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        conn.recv(1)


def burst_at_the_end(segments: int | None) -> tuple[Record, int]:
    """The record of `answer_with_a_burst_at_the_end`, with its reads counted as `segments` (None: the kernel's
    count), and the wake-up latency its loop measured."""

    async def main() -> tuple[Record, int]:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            server = threading.Thread(target=answer_with_a_burst_at_the_end, args=(listener,))
            server.start()
            cfg = ClientConfig(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1", model=MODEL)
            async with Client(cfg, [ApiKey("k1", "secret")], connections=1, origin_ns=0) as client:
                found = await client.send(request_body(cfg, None, "hi", 3), Record(index=0))
            server.join(5)
        timed = selector.of(asyncio.get_running_loop())
        assert timed is not None
        return found, timed.take_wake_max()

    with contextlib.ExitStack() as stack:
        if segments is not None:
            stack.enter_context(mock.patch.object(StampedSocket, "_count", return_value=segments))
        with asyncio.Runner(loop_factory=selector.new_event_loop) as runner:
            return runner.run(main())


def test_a_chunk_read_with_done_in_one_segment_is_exact() -> None:
    # The burst is one write of under a segment's size: the kernel counts one segment, so every event of the read
    # (the last chunk, [DONE], the body's terminator) arrived at its one timestamp.
    record, _ = burst_at_the_end(None)
    assert record.error_kind is None and record.kernel_timed, record.error_detail
    assert len(record.chunk_ns) == 2 and record.end_ns == record.chunk_ns[-1]
    assert record.chunk_early_ns == () and record.end_early_ns == ()


def test_a_chunk_read_with_done_in_several_segments_is_known_to_the_wake_up_latency_not_the_whole_gap() -> None:
    record, wake_ns = burst_at_the_end(2)
    assert record.error_kind is None and record.kernel_timed, record.error_detail
    # The last content chunk came in one read with [DONE]: it may have come as early as the read before, 40 ms
    # earlier — but that read's iteration slept and woke at the burst, so no sooner than the wake-up latency.
    ((index, sure, woke),) = record.chunk_early_ns
    assert index == 1 and sure is not None and sure >= 35_000_000 and woke is not None
    assert bounds.early_ms(sure, woke, wake_ns / 1e6) < 5.0
    # [DONE] came with the body's terminator, which may have been the later segment: [DONE] too is bounded so.
    done_sure, done_woke = record.end_early_ns
    assert done_sure == sure and done_woke == woke


async def test_a_requests_own_headers_go_with_the_clients_and_its_text_is_kept_when_asked() -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.headers.get("x-session-id"), request.headers.get("Authorization")))
        return await stream(request, GOOD)

    async for base_url in serve(handler):
        cfg = ClientConfig(base_url=base_url, model=MODEL)
        async with Client(cfg, [ApiKey("k1", "secret")], connections=4, origin_ns=0) as client:
            text: list[str] = []
            body = request_body(cfg, None, "hi", 3)
            record = await client.send(body, Record(index=0), headers={"x-session-id": "run-7"}, text=text)
            await client.send(body, Record(index=1))
    assert record.error_kind is None and text == ["Hello", " wor", "ld"]
    assert seen == [("run-7", "Bearer secret"), (None, "Bearer secret")]  # the next request goes without it
