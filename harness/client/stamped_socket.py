"""Sockets whose reads carry the kernel's receive time, so no event-loop lag can delay an arrival timestamp.

asyncio's selector event loop reads a connection by calling its socket object's `recv`, then hands the bytes to the
protocol's `data_received` at once. A `StampedSocket` answers that call with `recvmsg` and `SO_TIMESTAMPNS`: the
kernel says when the last segment of the read reached the socket (on loopback, during the sender's write), and the
socket keeps it as `arrived_ns` on `time.perf_counter_ns()`'s clock. The protocol takes that time instead of reading
the clock itself, which would add however long the bytes waited for a busy loop to come round to them.

uvloop reads its sockets in C and never calls `recv`: a connection on uvloop has no stamped socket (`of` says None)
and its protocol reads the clock as before. Linux only (`SO_TIMESTAMPNS`); elsewhere `factory` returns None and
aiohttp makes its own sockets.
"""

from __future__ import annotations

import asyncio
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any

import kerneltime

_OPEN: weakref.WeakValueDictionary[int, StampedSocket] = weakref.WeakValueDictionary()


class StampedSocket(socket.socket):
    """A TCP socket that asks the kernel to time every read.

    After each read: `arrived_ns` is when its last segment reached the socket (0: no read yet), `kernel_timed`
    whether the kernel said so (else it is the time of the read), `read_ns` when the read was made, and `drained`
    whether it emptied the socket (a read that filled the buffer may have left bytes that arrived before it).
    """

    __slots__ = ("arrived_ns", "drained", "kernel_timed", "read_ns")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self.arrived_ns = 0
        self.read_ns = 0
        self.kernel_timed = False
        self.drained = True
        kerneltime.enable(self)
        _OPEN[self.fileno()] = self

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        data, ancillary, _, _ = self.recvmsg(bufsize, kerneltime.ANCILLARY_SIZE, flags)
        self.read_ns = time.perf_counter_ns()
        kernel = kerneltime.arrival_ns(ancillary)
        self.kernel_timed = kernel is not None
        # Never before the read before it: a read the kernel did not time (until a first timestamping socket of the
        # machine has switched timing on, it may not) is given the time it was read, which can be later than when
        # the next read's bytes arrived.
        self.arrived_ns = max(kernel if kernel is not None else self.read_ns, self.arrived_ns)
        self.drained = len(data) < bufsize
        return data


def factory(loop: asyncio.AbstractEventLoop) -> Callable[[Any], socket.socket] | None:
    """aiohttp's `socket_factory` making `StampedSocket`s, for a loop that reads with `recv`; None for any other."""
    if not kerneltime.SUPPORTED or not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return None

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto = addr_info[:3]
        return StampedSocket(family, kind, proto)

    return make


def of(transport: asyncio.BaseTransport) -> StampedSocket | None:
    """The stamped socket a transport reads from, or None (uvloop's, or a socket made elsewhere)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    stamped = _OPEN.get(sock.fileno())
    return stamped if stamped is not None and stamped.fileno() == sock.fileno() else None
