"""Ground-truth timings: when the server received a request and wrote each of its chunks.

Kept only for requests that ask (`x-trace-timing: 1`), in a bounded store, so the hot path pays nothing
otherwise. Timestamps are `time.perf_counter_ns()`, which on Linux reads CLOCK_MONOTONIC: the same clock in
every process of the machine, so a client on the same host can subtract them from its own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

HEADER = "x-trace-timing"

# Whose clock reading a trace's arrival is: the kernel's time the bytes reached the socket, or the time the event
# loop read them (later by however long the loop was busy). A reader of the trace needs to know which, or the
# server's own lateness would pass for the client's timing error.
ReceivedBy = Literal["kernel", "loop"]


def arrival(protocol: object) -> tuple[int, ReceivedBy]:
    """When the request being handled arrived (its last read), or now when the connection did not say; and by whom.

    Called once the body is read: the last read of the connection is then the one that completed the request.
    Taken in the connection's `data_received`, before the request waits for the event loop to run its handler —
    and on asyncio's loop it is the kernel's time of the read (`stamped_socket`), before the request waited for the
    loop to read it — so a busy server's queueing is inside the ground-truth TTFT, as it is inside the TTFT its
    client measures.
    """
    read_ns = getattr(protocol, "last_read_ns", 0)
    if not isinstance(read_ns, int) or read_ns <= 0:
        return time.perf_counter_ns(), "loop"
    return read_ns, "kernel" if getattr(protocol, "last_read_by", "loop") == "kernel" else "loop"


@dataclass(slots=True)
class Trace:
    received_ns: int
    received_by: ReceivedBy = "loop"
    chunk_ns: list[int] = field(default_factory=list)
    chunk_written_ns: list[int] = field(default_factory=list)
    first_token_ns: int | None = None
    end_ns: int | None = None
    end_written_ns: int | None = None

    def mark_chunk(self, has_token: bool) -> None:
        """A chunk is about to be written: its bytes leave no sooner than now."""
        now = time.perf_counter_ns()
        self.chunk_ns.append(now)
        if has_token and self.first_token_ns is None:
            self.first_token_ns = now

    def wrote_chunk(self) -> None:
        """Its write returned: the bytes left between the mark and now (a server preempted in between says so)."""
        self.chunk_written_ns.append(time.perf_counter_ns())

    def as_dict(self) -> dict[str, Any]:
        return {
            "received_ns": self.received_ns,
            "received_by": self.received_by,
            "first_token_ns": self.first_token_ns,
            "chunk_ns": self.chunk_ns,
            "chunk_written_ns": self.chunk_written_ns,
            "end_ns": self.end_ns,
            "end_written_ns": self.end_written_ns,
            "clock": "CLOCK_MONOTONIC",
        }


class TraceStore:
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._traces: OrderedDict[str, Trace] = OrderedDict()

    def start(self, request_id: str, received_ns: int, received_by: ReceivedBy = "loop") -> Trace:
        trace = Trace(received_ns, received_by)
        self._traces[request_id] = trace
        while len(self._traces) > self._capacity:
            self._traces.popitem(last=False)
        return trace

    def alias(self, client_id: str, trace: Trace) -> None:
        """Also find `trace` under the id the client sent (`x-request-id`), for tools that keep only their own."""
        self._traces[client_id] = trace
        while len(self._traces) > self._capacity:
            self._traces.popitem(last=False)

    def get(self, request_id: str) -> Trace | None:
        return self._traces.get(request_id)
