"""Hand-built runs for the report and gate tests, written as a run directory would hold them.

`sweep_run` has round numbers known by construction (given in its docstring); `noisy_run` draws seeded
latencies for the statistical comparisons of the gate.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.summary import build_summary, write_summary
from harness.records import rundir
from harness.records.record import Record, RunFile, RunInfo, StepInfo, write_run

MS = 1_000_000
ORIGIN_NS = 10**12  # the run's perf_counter origin; ground truth is absolute on the same clock
TARGET = {
    "base_url": "http://127.0.0.1:8000/v1",
    "model": "meta-llama/Meta-Llama-3-8B-Instruct",
    "profile": "anyscale",
    "endpoint": "chat",
    "description": "reference server (sim engine)",
    "keys": ["key-1"],
}
CONFIG: dict[str, Any] = {
    "steps": ["concurrency=1", "concurrency=30", "concurrency=40"],
    "duration_s": 1.0,
    "requests": None,
    "warmup_s": 0.0,
    "warmup_requests": 0,
    "on_429": "fail",
    "prompts": {"source": "synthetic", "input_tokens": "10", "output_tokens": "5", "exact_lengths": True},
}


def step_info(run_id: str, index: int, users: int, end_ms: int, start_ms: int, lag_ms: float = 1.0) -> StepInfo:
    return StepInfo(
        run_id,
        index,
        f"concurrency={users}",
        "concurrency",
        started_ns=start_ms * MS,
        measure_start_ns=start_ms * MS,
        dispatch_end_ns=end_ms * MS,
        ended_ns=end_ms * MS,
        concurrency=users,
        cpu_s=0.05,
        loop_lag_ns=[round(lag_ms * MS)] * 20,
        loop_lag_interval_ns=20 * MS,
    )


def ok_request(
    step: int, index: int, sent_ms: float, ttft_ms: float, gaps_ms: list[float], kernel_timed: bool = True
) -> Record:
    sent = round(sent_ms * MS)
    chunks = [sent + round(ttft_ms * MS)]
    for gap in gaps_ms:
        chunks.append(chunks[-1] + round(gap * MS))
    return Record(
        run_id="run",
        step=step,
        index=index,
        key="key-1",
        scheduled_ns=sent,
        sent_ns=sent,
        headers_ns=sent + MS,
        first_token_ns=chunks[0],
        end_ns=chunks[-1],
        chunk_ns=chunks,
        chunk_tokens=[1] * len(chunks),
        status=200,
        finish_reason="length",
        prompt_tokens=10,
        completion_tokens=len(chunks),
        input_tokens_target=10,
        max_tokens=len(chunks),
        request_id=f"req-{index}",
        attempts=1,
        kernel_timed=kernel_timed,
    )


def rejected(step: int, index: int, sent_ms: float) -> Record:
    sent = round(sent_ms * MS)
    return Record(
        run_id="run",
        step=step,
        index=index,
        key="key-1",
        scheduled_ns=sent,
        sent_ns=sent,
        headers_ns=sent + MS,
        end_ns=sent + MS,
        status=429,
        error_kind="rate_limited",
        retry_after_s=1.0,
        attempts=1,
    )


def sweep_run() -> RunFile:
    """Three one-second steps; every request has 5 tokens (prompt 10) and the values below.

    - concurrency=1: 4 requests sent at 0, 250, 500, 750 ms; TTFT 50, ITL 10 → E2E 90. 4 req/s, 20 tokens/s.
    - concurrency=30: 30 requests in [1000, 1300) ms; TTFT 100, ITL 20 → E2E 180. 30 req/s, 150 tokens/s.
    - concurrency=40: the same 30 (TTFT 200, ITL 20 → E2E 280) and 10 rejected with 429.
    The knee is concurrency=30 (150 tokens/s, the best); the limit of 30 is honoured.
    """
    info = RunInfo("run", "2026-01-01T00:00:00.000+00:00", 1_767_225_600 * 10**9, ORIGIN_NS, target=TARGET,
                   config=CONFIG)  # fmt: skip
    requests = [ok_request(0, i, 250 * i, 50, [10] * 4) for i in range(4)]
    requests += [ok_request(1, 4 + i, 1000 + 10 * i, 100, [20] * 4) for i in range(30)]
    requests += [ok_request(2, 34 + i, 2000 + 10 * i, 200, [20] * 4) for i in range(30)]
    requests += [rejected(2, 64 + i, 2000 + 10 * i) for i in range(10)]
    steps = [step_info("run", 0, 1, 1000, 0), step_info("run", 1, 30, 2000, 1000), step_info("run", 2, 40, 3000, 2000)]
    return RunFile(info, steps, requests)


def conformance_result(failed: int = 1) -> dict[str, Any]:
    """A result of two checks, `failed` of them failed (valid against schemas/conformance_result.json)."""
    checks = [
        {
            "check": f"test_check_{i}",
            "case": None,
            "group": "limits",
            "feature": None,
            "module": "test_limits",
            "nodeid": f"test_limits.py::test_check_{i}",
            "outcome": "failed" if i < failed else "passed",
            "duration_s": 0.1,
            "message": "the 31st request was admitted" if i < failed else None,
        }
        for i in range(2)
    ]
    summary = {"total": 2, "passed": 2 - failed, "failed": failed, "error": 0, "skipped": 0, "not_run": 0}
    return {
        "schema_version": 1,
        "run_id": "run",
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 0.2,
        "passed": failed == 0,
        "target": None,
        "summary": summary,
        "checks": checks,
        "not_run": [],
        "features": {},
    }


def write_dir(directory: Path, run: RunFile, conformance: dict[str, Any] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_run(directory / "records.jsonl", run.run, run.steps, run.requests)
    if conformance is not None:
        (directory / "conformance").mkdir(exist_ok=True)
        (directory / "conformance" / "result.json").write_text(json.dumps(conformance))
    return directory


def summarized(directory: Path, limit: int | None = 30) -> Path:
    """Write summary.json beside the records, as `harness report` would (without the plots)."""
    return write_summary(directory, build_summary(rundir.load(directory), limit=limit))


def noisy_run(
    seed: int, scale: float = 1.0, n: int = 600, lag_ms: float = 1.0, kernel_timed: bool = True, **target: str
) -> RunFile:
    """A sweep 8, 40 of `n` successful requests per step with seeded lognormal TTFT (median 100 ms) and ITL (10 ms);
    the 40-user step also meets 10 429s. Every latency is multiplied by `scale`. Its reads are timed by the kernel
    unless `kernel_timed` is False: then by the client's loop, whose lag (`lag_ms`) bounds their error."""
    rng = np.random.default_rng(seed)
    info = RunInfo("run", "2026-01-01T00:00:00.000+00:00", 1_767_225_600 * 10**9, ORIGIN_NS,
                   target=TARGET | target, config=CONFIG | {"steps": ["concurrency=8", "concurrency=40"]})  # fmt: skip
    requests: list[Record] = []
    for step in range(2):
        for i in range(n):
            ttft = float(rng.lognormal(np.log(100), 0.25)) * scale
            gaps = [float(g) * scale for g in rng.lognormal(np.log(10), 0.1, size=15)]
            requests.append(ok_request(step, len(requests), 100_000 * step + 20 * i, ttft, gaps, kernel_timed))
    requests += [rejected(1, len(requests) + i, 100_000 + 50 * i) for i in range(10)]
    steps = [
        dataclasses.replace(step_info("run", 0, 8, 100_000, 0, lag_ms), label="concurrency=8"),
        step_info("run", 1, 40, 200_000, 100_000, lag_ms),
    ]
    return RunFile(info, steps, requests)
