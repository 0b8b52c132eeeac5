"""Ground truth: a server's trace as kept beside a run, and read back, with whose clock took its arrival."""

from __future__ import annotations

from pathlib import Path

import orjson

from harness.records import truth

TRACE = {
    "received_ns": 1_000,
    "received_by": "kernel",
    "first_token_ns": 3_000,
    "chunk_ns": [2_000, 3_000, 4_500],  # the chat role chunk, then two tokens
    "end_ns": 5_000,
    "clock": "CLOCK_MONOTONIC",
}


def test_a_trace_keeps_its_arrival_its_token_chunks_and_whose_clock_took_the_arrival() -> None:
    assert truth.from_trace("r1", TRACE) == truth.Truth("r1", 1_000, (3_000, 4_500), "kernel", 5_000)
    loop = truth.Truth("r2", 1_000, (3_000, 4_500), "loop", 5_000)
    assert truth.from_trace("r2", {**TRACE, "received_by": "loop"}) == loop


def test_a_trace_that_does_not_say_or_says_something_else_is_attributed_to_no_one() -> None:
    older = {k: v for k, v in TRACE.items() if k != "received_by"}
    assert truth.from_trace("r1", older) == truth.Truth("r1", 1_000, (3_000, 4_500), None, 5_000)
    nic = truth.Truth("r1", 1_000, (3_000, 4_500), None, 5_000)
    assert truth.from_trace("r1", {**TRACE, "received_by": "nic"}) == nic


def test_written_ground_truth_reads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / truth.TRUTH_FILE
    kept = [truth.Truth("a", 1, (2, 3), "kernel", 9), truth.Truth("b", 4, (5,), "loop"), truth.Truth("c", 6, (7,))]
    assert truth.write(path, kept) == 3
    assert orjson.loads(path.read_bytes().splitlines()[0])["received_by"] == "kernel"
    assert truth.read(path) == {t.request_id: t for t in kept}


def test_ground_truth_written_before_arrivals_were_attributed_still_reads(tmp_path: Path) -> None:
    path = tmp_path / truth.TRUTH_FILE
    path.write_bytes(b'{"request_id":"a","received_ns":1,"token_chunk_ns":[2,3]}\n')
    assert truth.read(path) == {"a": truth.Truth("a", 1, (2, 3), None)}


def test_a_trace_s_write_returns_are_kept_for_its_token_chunks_and_its_end(tmp_path: Path) -> None:
    trace = {**TRACE, "chunk_written_ns": [2_010, 3_020, 4_600], "end_written_ns": 5_050}
    found = truth.from_trace("r1", trace)
    assert found is not None
    assert found.token_written_ns == (3_020, 4_600) and found.end_written_ns == 5_050  # the role chunk's is dropped
    path = tmp_path / truth.TRUTH_FILE
    truth.write(path, [found])
    assert truth.read(path) == {"r1": found}
    short = truth.from_trace("r2", {**trace, "chunk_written_ns": [2_010]})  # a write that never returned
    assert short is not None and short.token_written_ns == ()
