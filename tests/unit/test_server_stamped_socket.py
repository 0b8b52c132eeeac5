"""The reference server's listening sockets: each accepted connection's reads carry the kernel's time of arrival."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import uvloop

from reference_server import stamped_socket
from reference_server.stamped_socket import StampedConnection

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; not in Python 3.11's socket module
SLACK_NS = 1_000_000  # the wall clock may be slewed between the arrival and the read: µs; this is generous


@pytest.fixture
def selector_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """asyncio's own loop, which reads a connection with its socket's `recv`."""
    loop = asyncio.SelectorEventLoop()
    yield loop
    loop.close()


def test_a_connection_s_bytes_are_timed_when_they_arrived_even_before_it_was_accepted(
    selector_loop: asyncio.AbstractEventLoop,
) -> None:
    (listener,) = stamped_socket.listen("127.0.0.1", 0, 8, selector_loop)
    with listener, socket.create_connection(listener.getsockname()) as client:
        before = time.perf_counter_ns()
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        after = time.perf_counter_ns()
        time.sleep(0.05)
        listener.setblocking(True)
        conn, _ = listener.accept()
        with conn:
            assert isinstance(conn, StampedConnection)
            read_at = time.perf_counter_ns()
            assert conn.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
            assert before - SLACK_NS <= conn.arrived_ns <= after + SLACK_NS
            assert conn.arrived_ns < read_at and conn.by_kernel
            client.close()
            before = time.perf_counter_ns()
            assert conn.recv(100) == b""  # the end of the stream brings no time: it is read now
            assert before <= conn.arrived_ns <= time.perf_counter_ns()
            assert not conn.by_kernel


def test_every_address_of_the_host_listens_on_one_port(selector_loop: asyncio.AbstractEventLoop) -> None:
    sockets = stamped_socket.listen("localhost", 0, 8, selector_loop)
    try:
        assert sockets and len({sock.getsockname()[1] for sock in sockets}) == 1
        assert all(not sock.getblocking() for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


async def test_the_transport_of_an_accepted_connection_finds_its_stamped_socket() -> None:
    loop = asyncio.get_running_loop()
    accepted: list[asyncio.BaseTransport] = []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)

    (listener,) = stamped_socket.listen("127.0.0.1", 0, 8, loop)
    server = await loop.create_server(Keep, sock=listener)
    try:
        ours, _ = await loop.create_connection(asyncio.Protocol, *listener.getsockname())
        while not accepted:
            await asyncio.sleep(0.001)
        assert isinstance(stamped_socket.of(accepted[0]), StampedConnection)
        assert stamped_socket.of(ours) is None  # the client's end is a plain socket
        ours.close()
        accepted[0].close()
    finally:
        server.close()
        await server.wait_closed()


def test_a_loop_that_reads_in_c_gets_plain_listening_sockets() -> None:
    loop = uvloop.new_event_loop()
    try:
        (listener,) = stamped_socket.listen("127.0.0.1", 0, 8, loop)
        with listener:
            assert type(listener) is socket.socket
            assert not listener.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS)
    finally:
        loop.close()
