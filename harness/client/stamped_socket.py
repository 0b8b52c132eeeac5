"""Sockets whose reads carry the kernel's receive time, so no event-loop lag can delay an arrival timestamp.

asyncio's selector event loop reads a connection by calling its socket object's `recv`, then hands the bytes to the
protocol's `data_received` at once. A `StampedSocket` answers that call with `recvmsg` and `SO_TIMESTAMPNS`: the
kernel says when the last segment of the read reached the socket (on loopback, during the sender's write), and the
socket keeps it as `arrived_ns` on `time.perf_counter_ns()`'s clock. The protocol takes that time instead of reading
the clock itself, which would add however long the bytes waited for a busy loop to come round to them.

A read that brought several events (two chunks of a stream) times only its last segment: how long before it the others
came is unknown, unless the read was one segment. After each read the socket asks the kernel (`TCP_INFO`) how many
data segments the connection has received and how many bytes: `segments` is then how many segments at most brought
this read's bytes — the count since the previous read, when that read had taken every byte received by then (so no
segment counted before belongs to this read) and nothing came out of order. A count of 1 means every byte of the
read arrived at its one timestamp. Any doubt gives None, which the protocol treats as several.

Writes are timed too: asyncio's transport writes with the socket's `send`, which this socket makes a `sendmsg`
asking the kernel for the time it sent the write's last byte (`SO_TIMESTAMPING`), read back from the socket's error
queue at once (on loopback the kernel stamps within the write). `sent_ns` is that time, or None when the kernel
gave none in time; one that comes later is taken off the queue by the next read, so that it never wakes the loop.

uvloop reads its sockets in C and never calls `recv`: a connection on uvloop has no stamped socket (`of` says None)
and its protocol reads the clock as before. Linux only (`SO_TIMESTAMPNS`); elsewhere `factory` returns None and
aiohttp makes its own sockets.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import weakref
from collections.abc import Callable
from typing import Any

import kerneltime

_OPEN: weakref.WeakValueDictionary[int, StampedSocket] = weakref.WeakValueDictionary()

# `struct tcp_info` (linux/tcp.h): tcpi_bytes_received at 128 (Linux 4.1), tcpi_data_segs_in at 152 (4.6),
# tcpi_rcv_ooopack at 224 (5.4). A shorter answer (an older kernel) leaves every count unknown.
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_INFO_SIZE = 228
_RECEIVED = struct.Struct("@Q")
_COUNT = struct.Struct("@I")


class StampedSocket(socket.socket):
    """A TCP socket that asks the kernel to time every read.

    After each read: `arrived_ns` is when its last segment reached the socket (0: no read yet), `kernel_timed`
    whether the kernel said so (else it is the time of the read), `read_ns` when the read was made, and `drained`
    whether it emptied the socket (a read that filled the buffer may have left bytes that arrived before it), and
    `segments` how many TCP segments at most brought its bytes (None: unknown). After each `send`: `sent_ns`, when
    the kernel sent its last byte (None: not known).
    """

    __slots__ = (
        "_clean",
        "_consumed",
        "_owed",
        "_segs_in",
        "_sends_timed",
        "arrived_ns",
        "drained",
        "kernel_timed",
        "read_ns",
        "segments",
        "sent_ns",
    )

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self.arrived_ns = 0
        self.read_ns = 0
        self.kernel_timed = False
        self.drained = True
        self.segments: int | None = None
        self._consumed = 0  # bytes read so far
        self._segs_in = 0  # data segments received by the previous read's count
        self._clean = True  # that count covered no byte that the previous read left behind
        self.sent_ns: int | None = None
        self._owed = False  # a send's time is still to come on the error queue
        kerneltime.enable(self)
        self._sends_timed = kerneltime.enable_sends(self)
        _OPEN[self.fileno()] = self

    def send(self, data: Any, flags: int = 0, /) -> int:
        if not self._sends_timed:
            return super().send(data, flags)
        count = self.sendmsg([data], kerneltime.SEND_ANCILLARY, flags)
        self.sent_ns = kerneltime.sent_ns(self)
        self._owed = self.sent_ns is None
        return count

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        if self._owed:  # a send's time that came late: off the queue, or it would wake the loop again and again
            self._owed = kerneltime.sent_ns(self) is None
        data, ancillary, _, _ = self.recvmsg(bufsize, kerneltime.ANCILLARY_SIZE, flags)
        self.read_ns = time.perf_counter_ns()
        kernel = kerneltime.arrival_ns(ancillary)
        self.kernel_timed = kernel is not None
        # Never before the read before it: a read the kernel did not time (until a first timestamping socket of the
        # machine has switched timing on, it may not) is given the time it was read, which can be later than when
        # the next read's bytes arrived.
        self.arrived_ns = max(kernel if kernel is not None else self.read_ns, self.arrived_ns)
        self.drained = len(data) < bufsize
        self.segments = self._count(len(data))
        return data

    def _count(self, size: int) -> int | None:
        """How many data segments at most brought the `size` bytes just read (None: unknown)."""
        self._consumed += size
        try:
            info = self.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_SIZE)
        except OSError:
            info = b""
        if len(info) < _INFO_SIZE:
            self._clean = False
            return None
        (received,) = _RECEIVED.unpack_from(info, 128)
        (segs_in,) = _COUNT.unpack_from(info, 152)
        (out_of_order,) = _COUNT.unpack_from(info, 224)
        # Segments counted since the previous read brought this read's bytes and any that came after it (the count
        # is taken after the read): an upper bound, when the previous count was of no byte this read took.
        count = segs_in - self._segs_in if self._clean and not out_of_order else None
        self._segs_in = segs_in
        self._clean = received == self._consumed
        return count


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
