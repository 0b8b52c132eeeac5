"""The kernel's receive time of a socket read (`SO_TIMESTAMPNS`), on `time.perf_counter_ns()`'s clock.

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


def enable(sock: socket.socket) -> None:
    """Ask the kernel to time every read of `sock` (a listening socket passes it on to what it accepts)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def arrival_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The receive time in a read's ancillary data, moved from CLOCK_REALTIME to `perf_counter_ns`'s clock (None:
    the read carries none — the end of the stream, or timing not yet switched on machine-wide)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            # Both clocks are read now, so a step or slew of the wall clock since the arrival (µs, at most) is all
            # the conversion can be off by.
            return int(seconds * _NS + nanoseconds - time.time_ns() + time.perf_counter_ns())
    return None
