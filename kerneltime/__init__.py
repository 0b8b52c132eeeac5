"""The kernel's receive time of a socket read (`SO_TIMESTAMPNS`), and its send time of a write that asks for it
(`SO_TIMESTAMPING`), on `time.perf_counter_ns()`'s clock.

Both sides time arrivals with it: the harness's client (when a response's bytes reached its socket) and the
reference server (when a request reached it, for the ground-truth traces). Neither may import the other, so the
decoding lives here, in a package of its own that both may import. Linux only: elsewhere `SO_TIMESTAMPNS` is
absent and no read carries a time.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux: SCM_TIMESTAMPNS is the same number
SUPPORTED = sys.platform.startswith("linux")
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux: tv_sec, tv_nsec
ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)  # the ancillary buffer `recvmsg` needs for the time
_NS = 1_000_000_000

SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
_TX_SOFTWARE, _SOFTWARE, _OPT_TSONLY, _OPT_RX_FILTER = 1 << 1, 1 << 4, 1 << 11, 1 << 17
SEND_ANCILLARY = [(socket.SOL_SOCKET, SO_TIMESTAMPING, struct.pack("@i", _TX_SOFTWARE))]
"""`sendmsg`'s ancillary data that asks the kernel to report when it sent that write's last byte."""
_ERRQUEUE_ANCILLARY = 512  # the send time comes with the error queue's other control messages


def enable(sock: socket.socket) -> None:
    """Ask the kernel to time every read of `sock` (a listening socket passes it on to what it accepts)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def enable_sends(sock: socket.socket) -> bool:
    """Let `sock` report the send time of a write that asks (`SEND_ANCILLARY`), and of no other: writes made
    without asking queue nothing, and reads keep only `SO_TIMESTAMPNS`'s time (`OPT_RX_FILTER`). False where the
    kernel has no `OPT_RX_FILTER`: its writes then carry no send time."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _SOFTWARE | _OPT_TSONLY | _OPT_RX_FILTER)
    except OSError:
        return False
    return True


def sent_ns(sock: socket.socket) -> int | None:
    """The latest send time on `sock`'s error queue, which this empties (None: none there yet)."""
    found: int | None = None
    while True:
        try:
            _, ancillary, _, _ = sock.recvmsg(1, _ERRQUEUE_ANCILLARY, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except OSError:  # EAGAIN: the queue is empty
            return found
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= _TIMESPEC.size:
                found = _monotonic(*_TIMESPEC.unpack_from(data))


def _monotonic(seconds: int, nanoseconds: int) -> int:
    """A CLOCK_REALTIME time moved to `perf_counter_ns`'s clock. Both clocks are read now, so a step or slew of
    the wall clock since that time (µs, at most) is all the conversion can be off by."""
    return int(seconds * _NS + nanoseconds - time.time_ns() + time.perf_counter_ns())


def arrival_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The receive time in a read's ancillary data, moved from CLOCK_REALTIME to `perf_counter_ns`'s clock (None:
    the read carries none — the end of the stream, or timing not yet switched on machine-wide)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            return _monotonic(*_TIMESPEC.unpack_from(data))
    return None
