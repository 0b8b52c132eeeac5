from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson

import schemas
from harness.records.record import Record, RunInfo, StepInfo, apportion, read_run, write_run


def test_one_token_per_chunk_unless_usage_says_otherwise() -> None:
    assert apportion([3, 5, 1], None) == [1, 1, 1]
    assert apportion([3, 5, 1], 3) == [1, 1, 1]
    # 8 tokens over chunks of 3 and 1 characters: in proportion, 6 and 2.
    assert apportion([3, 1], 8) == [6, 2]
    # 2 tokens over 3 equal chunks: the largest remainders (the first ones on a tie) get them.
    assert apportion([1, 1, 1], 2) == [1, 1, 0]
    assert sum(apportion([7, 2, 9, 4], 17)) == 17
    assert apportion([], 5) == []


def test_failures_keep_the_first_kind_and_conformance_errors_are_capped() -> None:
    record = Record()
    record.fail("disconnect", "first")
    record.fail("protocol_error", "second")
    assert (record.error_kind, record.error_detail) == ("disconnect", "first")
    for i in range(8):
        record.nonconformant(f"problem {i}")
    assert record.conformance_error_count == 8
    assert len(record.conformance_errors) == 5


def test_a_run_file_round_trips_and_every_line_matches_the_schema(tmp_path: Path) -> None:
    run = RunInfo.start("r1", target={"base_url": "http://x/v1"}, config={"seed": 1})
    step = StepInfo(
        "r1",
        0,
        "rate=2/s,poisson",
        "rate",
        0,
        10,
        20,
        30,
        rate=2.0,
        arrival="poisson",
        duration_s=1.0,
        cpu_s=0.5,
        loop_lag_ns=[1, 2],
        loop_lag_interval_ns=20_000_000,
    )
    records = [
        Record(
            run_id="r1",
            index=0,
            key="key-1",
            scheduled_ns=1,
            sent_ns=2,
            headers_ns=3,
            first_token_ns=4,
            end_ns=6,
            chunk_ns=[4, 5],
            chunk_tokens=[1, 1],
            status=200,
            prompt_tokens=3,
            completion_tokens=2,
            request_id="m-1",
            attempts=1,
        ),
        Record(
            run_id="r1",
            index=1,
            key="key-1",
            scheduled_ns=7,
            sent_ns=8,
            end_ns=9,
            status=429,
            error_kind="rate_limited",
            error_detail="busy",
            retry_after_s=1.0,
            attempts=1,
        ),
    ]
    path = tmp_path / "records.jsonl"
    write_run(path, run, [step], records)
    validator = jsonschema.Draft7Validator(schemas.load("record.json"))
    lines = path.read_bytes().splitlines()
    for line in lines:
        validator.validate(orjson.loads(line))
    assert orjson.loads(lines[0])["type"] == "run"
    back = read_run(path)
    assert back.run == run
    assert back.steps == [step]
    assert back.requests == records


def test_a_request_line_written_before_dispatched_ns_existed_still_validates_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    run = RunInfo.start("old", target={"base_url": "http://x/v1"}, config={})
    write_run(path, run, [], [Record(run_id="old", sent_ns=5)])
    run_line, request_line = path.read_bytes().splitlines()
    old = orjson.loads(request_line)
    del old["dispatched_ns"]
    jsonschema.Draft7Validator(schemas.load("record.json")).validate(old)
    path.write_bytes(run_line + b"\n" + orjson.dumps(old) + b"\n")
    (back,) = read_run(path).requests
    assert (back.dispatched_ns, back.sent_ns) == (None, 5)
