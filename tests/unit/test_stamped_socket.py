"""The client's stamped sockets: a read carries the kernel's time of arrival, not the time it was read."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import time
from collections.abc import Iterator

import pytest
import uvloop

from harness.client import stamped_socket
from harness.client.stamped_socket import StampedSocket

SLACK_NS = 1_000_000  # the wall clock may be slewed between the arrival and the read: µs; this is generous


@pytest.fixture
def pair() -> Iterator[tuple[StampedSocket, socket.socket]]:
    """A stamped socket connected over loopback TCP to a plain one."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = StampedSocket(socket.AF_INET, socket.SOCK_STREAM)
        ours.connect(listener.getsockname())
        peer, _ = listener.accept()
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each `sendall` is its own segment, sent at once
    with ours, peer:
        yield ours, peer


def held(sock: socket.socket, size: int) -> None:
    """Wait until `size` bytes wait in `sock` (a peek by the plain socket's `recv`: no stamp, no count)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            if len(socket.socket.recv(sock, size, socket.MSG_PEEK | socket.MSG_DONTWAIT)) >= size:
                return
        except BlockingIOError:
            pass
        assert time.monotonic() < deadline, f"{size} bytes did not arrive"
        time.sleep(0.001)


def test_a_read_is_timed_when_its_bytes_arrived_not_when_they_were_read(
    pair: tuple[StampedSocket, socket.socket],
) -> None:
    ours, peer = pair
    before = time.perf_counter_ns()
    peer.sendall(b"first")
    after = time.perf_counter_ns()
    time.sleep(0.05)
    read_at = time.perf_counter_ns()
    assert ours.recv(100) == b"first"
    assert before - SLACK_NS <= ours.arrived_ns <= after + SLACK_NS
    assert ours.arrived_ns < read_at


def test_a_read_of_several_sends_is_timed_by_the_last(pair: tuple[StampedSocket, socket.socket]) -> None:
    ours, peer = pair
    peer.sendall(b"a")
    time.sleep(0.02)
    before_last = time.perf_counter_ns()
    peer.sendall(b"b")
    time.sleep(0.02)
    assert ours.recv(100) == b"ab"
    assert ours.arrived_ns >= before_last - SLACK_NS


def test_a_read_the_kernel_did_not_time_is_timed_now_and_never_before_the_read_before_it(
    pair: tuple[StampedSocket, socket.socket],
) -> None:
    ours, peer = pair
    peer.sendall(b"x")
    time.sleep(0.01)
    ours.recv(100)
    later = ours.arrived_ns + 10**12  # as if the previous read had been timed long after
    ours.arrived_ns = later
    peer.sendall(b"y")
    assert ours.recv(100) == b"y"
    assert ours.arrived_ns == later
    peer.shutdown(socket.SHUT_WR)
    before = time.perf_counter_ns()
    ours.arrived_ns = 0
    assert ours.recv(100) == b""  # the end of the stream brings no time: it is read now
    assert before <= ours.arrived_ns <= time.perf_counter_ns()


def test_a_read_of_one_send_is_one_segment_and_of_two_sends_two(pair: tuple[StampedSocket, socket.socket]) -> None:
    ours, peer = pair
    peer.sendall(b"chunk and [DONE] in one write")
    held(ours, 29)
    assert ours.recv(100) == b"chunk and [DONE] in one write"
    assert ours.segments == 1
    peer.sendall(b"chunk")
    peer.sendall(b"[DONE]")
    held(ours, 11)
    assert ours.recv(100) == b"chunk[DONE]"
    assert ours.segments == 2


def test_a_read_that_left_bytes_behind_makes_the_next_count_unknown(pair: tuple[StampedSocket, socket.socket]) -> None:
    ours, peer = pair
    peer.sendall(b"first")
    held(ours, 5)
    assert ours.recv(2) == b"fi"  # the segment is counted; its other bytes are left for the next read
    assert ours.segments == 1
    peer.sendall(b"second")
    held(ours, 9)
    # "rst" came in the segment counted before: the count since then (1) would say one segment for two.
    assert ours.recv(100) == b"rstsecond"
    assert ours.segments is None
    peer.sendall(b"third")
    held(ours, 5)
    assert ours.recv(100) == b"third"
    assert ours.segments == 1  # that read took every byte: counting is sure again


def test_a_send_carries_the_kernel_s_send_time_and_a_plain_write_queues_none(
    pair: tuple[StampedSocket, socket.socket],
) -> None:
    ours, peer = pair
    before = time.perf_counter_ns()
    assert ours.send(b"request") == 7
    after = time.perf_counter_ns()
    assert ours.sent_ns is not None and before - SLACK_NS <= ours.sent_ns <= after + SLACK_NS
    # A write that does not go through `send` (the pacer's, on a duplicate descriptor) asks for no time: nothing
    # waits on the error queue, which would wake the loop (POLLERR) until read.
    os.write(ours.fileno(), b"more")
    poller = select.poll()
    poller.register(ours, select.POLLIN)
    assert poller.poll(0) == []
    assert peer.recv(100) == b"requestmore"


async def test_asyncio_s_loop_gets_stamped_sockets_and_finds_them_from_the_transport() -> None:
    loop = asyncio.get_running_loop()
    make = stamped_socket.factory(loop)
    assert make is not None
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()
        sock = make((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port)))
        assert isinstance(sock, StampedSocket)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=sock)
        plain, _ = await loop.create_connection(asyncio.Protocol, host, port)
        try:
            assert stamped_socket.of(transport) is sock
            assert stamped_socket.of(plain) is None
        finally:
            transport.close()
            plain.close()


def test_uvloop_reads_in_c_so_it_gets_no_stamped_sockets() -> None:
    loop = uvloop.new_event_loop()
    try:
        assert stamped_socket.factory(loop) is None
    finally:
        loop.close()
