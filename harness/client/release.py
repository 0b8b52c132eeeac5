"""When a request handed over ahead of its scheduled time goes out: written by the load's pacer at its due time.

An open loop hands each request to the client a little before it is due (`StepPlan.send_ahead_s`); the client
builds it — connection, headers, body — and leaves its bytes here with a duplicate of the connection's socket
(`hold`). At the due time the pacer thread `open`s the release and writes them itself, so a busy event loop does
not delay the send: a callback that is running then would otherwise run to its end first, and the requests whose
responses are being handled at that moment are the ones sent just before. The write needs the GIL, which the
loop's thread gives up within the interpreter's switch interval.

Writing from another thread is safe here: the socket is a duplicate that this release owns until it is written
or cancelled (so a connection the loop closes meanwhile cannot hand its descriptor to another), nothing else
writes on a connection that carries one request at a time, and the loop only reads it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
import time
from collections.abc import Callable


def _gil_holding_write() -> Callable[[int, bytes], int] | None:
    """libc's write(2) called without giving up the GIL (`ctypes.PyDLL`), where there is a libc to call.

    `os.write` releases the GIL for the syscall and must take it back after, which can wait for the loop's thread:
    the time read after it would then say the bytes left later than they did. Holding the GIL through a write to a
    non-blocking socket costs microseconds, and the stamps read before and after it bracket the send tightly.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
    except OSError:
        return None
    write = libc.write
    write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_ssize_t

    def call(fd: int, data: bytes) -> int:
        count: int = write(fd, data, len(data))
        if count < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0  # the socket's buffer is full: the loop writes the rest
            raise OSError(code, os.strerror(code))
        return count

    return call


write: Callable[[int, bytes], int] = _gil_holding_write() or os.write  # the pacer's write (tests replace it)

Stamp = Callable[[int], None]
"""Told, on the pacer's thread, when the held bytes are written (perf_counter_ns), just before the write: the
response may come back and be handled before this thread runs again."""
Written = Callable[[int, int], None]
"""Told, on the pacer's thread, how many of the held bytes went (-1: none, the connection failed) and when the
write returned (perf_counter_ns): the bytes left between the stamp and then."""


class Release:
    __slots__ = ("_held", "_lock", "_open")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._held: tuple[int, bytes, Stamp, Written] | None = None

    @property
    def is_open(self) -> bool:
        return self._open

    def hold(self, fd: int, data: bytes, stamp: Stamp, written: Written) -> bool:
        """Leave `data` to be written to `fd` when the release opens; the release owns `fd` from now on.

        False (and `fd` is still the caller's) when the release is open already: the caller writes it itself.
        """
        with self._lock:
            if self._open:
                return False
            self._held = (fd, data, stamp, written)
            return True

    def cancel(self) -> None:
        """Drop held bytes that were not written yet (their connection is going away)."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            os.close(held[0])

    def open(self) -> None:
        """The request is due: write what is held, now, on the calling thread. Opening twice is a no-op."""
        with self._lock:
            self._open = True
            held, self._held = self._held, None
            if held is None:
                return
            fd, data, stamp, written = held
            stamp(time.perf_counter_ns())
            try:
                count = write(fd, data)
            except OSError:  # the peer went away: the loop sees it on the connection
                count = -1
            finally:
                returned = time.perf_counter_ns()
                os.close(fd)
        written(count, returned)
