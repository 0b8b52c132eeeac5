"""Ground truth: when the reference server received each request and wrote each of its token chunks.

A request sent with `x-trace-timing: 1` leaves a trace on the reference server (`GET /debug/traces/{id}`, the id
being the response's `x-request-id`). After a run the traces of its measured requests are fetched
(`harness.target.traces`) and kept beside the records as `ground_truth.jsonl`, one line per request;
`harness.analysis.accuracy.timing_errors` then says how far the harness's own TTFT and ITL are from the server's. Only a
reference server keeps traces; other endpoints have none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

TRUTH_FILE = "ground_truth.jsonl"
# Whose clock took a request's arrival on the server: the kernel's when the bytes reached its socket, or its event
# loop's when it read them — later by however long the server was busy, which a TTFT error then includes.
ReceivedBy = Literal["kernel", "loop"]


@dataclass(frozen=True, slots=True)
class Truth:
    """One request as the server saw it: `received_ns` and the write of every chunk from the first token on.

    Both are CLOCK_MONOTONIC readings of the server's host, comparable with differences of the client's own
    timestamps (the absolute values are on another origin). `received_by` is None when the server did not say
    (servers and ground-truth files from before it did). A chunk's time is taken as its write begins; when the server
    also says when each write returned (`token_written_ns`, `end_written_ns`), its bytes left in between — a server
    preempted mid-write is then not taken for a client's error.
    """

    request_id: str
    received_ns: int
    token_chunk_ns: tuple[int, ...]
    received_by: ReceivedBy | None = None
    end_ns: int | None = None  # when the server began to write the end of the response ([DONE])
    token_written_ns: tuple[int, ...] = ()
    end_written_ns: int | None = None


def _received_by(value: object) -> ReceivedBy | None:
    return "kernel" if value == "kernel" else "loop" if value == "loop" else None


def from_trace(request_id: str, trace: Mapping[str, object]) -> Truth | None:
    """A trace from `/debug/traces/{id}`; None when no token was ever written."""
    chunks = trace.get("chunk_ns")
    first = trace.get("first_token_ns")
    received = trace.get("received_ns")
    if not isinstance(chunks, list) or not isinstance(first, int) or not isinstance(received, int):
        return None
    if first not in chunks:
        return None
    # The chat role chunk that precedes the first token carries no content; the client does not count it either.
    start = chunks.index(first)
    token_chunks = tuple(int(c) for c in chunks[start:])
    written = trace.get("chunk_written_ns")
    token_written = tuple(int(c) for c in written[start:]) if isinstance(written, list) else ()
    end, end_written = trace.get("end_ns"), trace.get("end_written_ns")
    by = _received_by(trace.get("received_by"))
    return Truth(
        request_id,
        received,
        token_chunks,
        by,
        end if isinstance(end, int) else None,
        token_written if len(token_written) == len(token_chunks) else (),
        end_written if isinstance(end_written, int) else None,
    )


def write(path: Path, truths: Iterable[Truth]) -> int:
    count = 0
    with path.open("wb") as f:
        for t in truths:
            f.write(orjson.dumps(t) + b"\n")
            count += 1
    return count


def read(path: Path) -> dict[str, Truth]:
    """The ground truth kept beside a run, by request id (empty when there is none)."""
    if not path.exists():
        return {}
    out: dict[str, Truth] = {}
    for line in path.read_bytes().splitlines():
        if line.strip():
            obj = orjson.loads(line)
            ident = obj["request_id"]
            by = _received_by(obj.get("received_by"))
            out[ident] = Truth(
                ident,
                obj["received_ns"],
                tuple(obj["token_chunk_ns"]),
                by,
                obj.get("end_ns"),
                tuple(obj.get("token_written_ns") or ()),
                obj.get("end_written_ns"),
            )
    return out
