"""Listening sockets whose connections know when each read reached them, for the ground-truth traces.

A request's ground-truth TTFT starts when the request reached the server. A busy event loop comes round to a socket
late, and the time it reads the bytes would leave that wait out of the truth while the client's TTFT includes it.
The kernel can say (`SO_TIMESTAMPNS`, set on the listening socket and so on every connection it accepts): asyncio's
selector event loop reads a connection by calling its socket object's `recv`, which a `StampedConnection` answers
with `recvmsg`, keeping the kernel's time of the read's last segment as `arrived_ns`, on `time.perf_counter_ns()`'s
clock (CLOCK_MONOTONIC, shared with clients on the host), for the protocol the bytes go to next.

uvloop accepts and reads in C, so there `of` finds no stamped connection and the server reads the clock itself
(`--event-loop asyncio` trades some speed for kernel times), and `listen` makes plain sockets. Linux only.
"""

from __future__ import annotations

import asyncio
import socket
import time
import weakref

import kerneltime

_OPEN: weakref.WeakValueDictionary[int, StampedConnection] = weakref.WeakValueDictionary()


class StampedConnection(socket.socket):
    """An accepted connection whose `recv` keeps the kernel's time of the read in `arrived_ns`.

    `by_kernel` says whether the latest read's time came from the kernel: a read that brought no stamp (the end of
    the stream) is timed when it was made, and a trace must not claim the kernel's time for it.
    """

    __slots__ = ("arrived_ns", "by_kernel")

    def __init__(self, family: int, kind: int, proto: int, fileno: int) -> None:
        super().__init__(family, kind, proto, fileno)
        self.arrived_ns = 0
        self.by_kernel = False
        _OPEN[fileno] = self

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        data, ancillary, _, _ = self.recvmsg(bufsize, kerneltime.ANCILLARY_SIZE, flags)
        kernel = kerneltime.arrival_ns(ancillary)
        self.by_kernel = kernel is not None
        self.arrived_ns = kernel if kernel is not None else time.perf_counter_ns()
        return data


class _StampedListener(socket.socket):
    __slots__ = ()

    def accept(self) -> tuple[socket.socket, object]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        return StampedConnection(self.family, self.type, self.proto, fd), address


def listen(host: str, port: int, backlog: int, loop: asyncio.AbstractEventLoop) -> list[socket.socket]:
    """Non-blocking sockets listening on every address of `host` (as asyncio binds them), all on one port.

    Stamped when `loop` reads with `recv` (asyncio's selector loop, on Linux); plain sockets for any other loop.
    """
    stamped = kerneltime.SUPPORTED and isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = (_StampedListener if stamped else socket.socket)(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if stamped:
                kerneltime.enable(sock)
            if port == 0 and len(sockets) > 1:  # the first one's free port, for every address
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def of(transport: asyncio.BaseTransport) -> StampedConnection | None:
    """The stamped connection a transport reads from, or None (uvloop's, or a socket accepted elsewhere)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    stamped = _OPEN.get(sock.fileno())
    return stamped if stamped is not None and stamped.fileno() == sock.fileno() else None
