"""Shared by the load-generator benchmarks: the tools under test, and their scoring against the simulator's ground
truth (the simulator itself: `benchmarks.support.simulator`).

A *tool* is a function that drives load against a target and returns what it measured per request (send time,
first-token time and chunk arrival times on this machine's CLOCK_MONOTONIC, plus the id under which the simulator
filed its trace: the response id, or the `x-request-id` the tool sent). Ground truth comes from the simulator's
`/debug/traces/{id}`. The peers (vllm bench serve, GuideLLM, AIPerf) are driven in `benchmarks.loadgen_peers`
(`ALL_TOOLS` there is ours, the baseline and the peers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.support import ROOT
from benchmarks.support.harness_cli import bench_argv
from benchmarks.support.processes import pinned
from harness.records.record import read_run
from harness.target.endpoint import Target


@dataclass(slots=True)
class Measured:
    """One request as a tool saw it; absolute perf_counter_ns readings (CLOCK_MONOTONIC).

    `token_chunks` is set when the tool keeps only the first and last token chunk times (GuideLLM): `chunk_ns`
    then holds those two. `reported_first_ns` is set when the tool's own TTFT ends at another chunk than the first
    token's (vllm bench serve counts the chat role chunk, which carries no token).
    """

    request_id: str | None
    sent_ns: int
    first_token_ns: int | None
    chunk_ns: list[int] = field(default_factory=list)
    ok: bool = True
    token_chunks: int | None = None
    reported_first_ns: int | None = None

    @property
    def chunks(self) -> int:
        return self.token_chunks if self.token_chunks is not None else len(self.chunk_ns)


@dataclass(slots=True)
class ToolRun:
    name: str
    requests: list[Measured]
    wall_s: float
    cpu_note: str = ""
    load_avg: str = ""  # the machine's load average when the run ended (other jobs may share the CPUs)


@dataclass(frozen=True, slots=True)
class Load:
    concurrency: int
    requests: int
    output_tokens: int
    input_tokens: int = 64
    cpu: int | None = None  # pin the tool to this CPU (taskset)
    warmup: int = 0  # requests sent first and not scored (they open the connections)


Tool = Callable[[Target, Load], ToolRun]


@dataclass(slots=True)
class Sent:
    """An open-loop run as a tool saw it: send times (and the schedule, when it keeps one), CLOCK_MONOTONIC ns."""

    name: str
    sent_ns: list[int]
    scheduled_ns: list[int | None] | None  # None for a request the tool kept no schedule for
    request_ids: list[str]
    dispatched_ns: list[int] | None = None  # when the tool took each request up, when it says apart from sent_ns


def chunk_rate(run: ToolRun) -> float:
    """Scored token chunks per second, over the span from the first send to the last chunk."""
    scored = [m for m in run.requests if m.chunk_ns]
    if not scored:
        return 0.0
    span_s = (max(m.chunk_ns[-1] for m in scored) - min(m.sent_ns for m in scored)) / 1e9
    return sum(m.chunks for m in scored) / span_s


def run_harness(
    target: Target, load: Load, extra: Sequence[str] = (), name: str = "harness bench", keep: Path | None = None
) -> ToolRun:
    """`harness bench`, closed loop, in its own process (pinned when asked), read back from its records; its run
    directory (records, summary) is kept in `keep/bench` when asked."""
    with contextlib.nullcontext(str(keep)) if keep is not None else tempfile.TemporaryDirectory() as out:
        argv = bench_argv(
            target,
            out,
            "bench",
            "--concurrency",
            str(load.concurrency),
            "--requests",
            str(load.requests),
            "--warmup",
            "0",
            "--warmup-requests",
            str(load.warmup),
            "--input-tokens",
            str(load.input_tokens),
            "--output-tokens",
            str(load.output_tokens),
            "--trace-timing",
            "--no-calibrate",
            *extra,
        )
        started = time.perf_counter()
        subprocess.run(pinned(argv, load.cpu), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        run = read_run(Path(out) / "bench" / "records.jsonl")
    origin = run.run.origin_ns
    measured = [
        Measured(
            r.request_id,
            origin + (r.sent_ns or 0),
            None if r.first_token_ns is None else origin + r.first_token_ns,
            [origin + t for t in r.chunk_ns],
            r.error_kind is None,
        )
        for r in run.requests
        if not r.warmup
    ]
    return ToolRun(name, measured, wall)


def run_harness_on_uvloop(target: Target, load: Load) -> ToolRun:
    """`harness bench --uvloop`: faster reads, timed when the loop reads them rather than by the kernel."""
    return run_harness(target, load, ["--uvloop"], "harness bench --uvloop")


def run_naive(target: Target, load: Load) -> ToolRun:
    """The usual way (a baseline, not a peer): aiohttp, line iteration, the clock read after parsing each line."""
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / "naive.jsonl"
        argv = [
            sys.executable,
            "-m",
            "benchmarks.loadgen_naive_client",
            target.base_url,
            target.api_key,
            target.model,
            str(load.concurrency),
            str(load.requests),
            str(load.input_tokens),
            str(load.output_tokens),
            str(path),
            str(load.warmup),
        ]
        started = time.perf_counter()
        subprocess.run(pinned(argv, load.cpu), cwd=ROOT, check=True)
        wall = time.perf_counter() - started
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    measured = [Measured(**{k: v for k, v in row.items() if k != "warm"}) for row in rows if not row["warm"]]
    return ToolRun("naive aiohttp (baseline)", measured, wall)


TOOLS: dict[str, Tool] = {"harness": run_harness, "harness-uvloop": run_harness_on_uvloop, "naive": run_naive}


@dataclass(frozen=True, slots=True)
class Truth:
    received_ns: int
    token_chunk_ns: list[int]


async def _fetch_traces(target: Target, ids: Sequence[str]) -> dict[str, Truth]:
    headers = {"Authorization": f"Bearer {target.api_key}"}
    out: dict[str, Truth] = {}
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(ident: str) -> None:
            async with sem, session.get(f"{target.root_url}/debug/traces/{ident}") as resp:
                if resp.status != 200:
                    return
                trace = await resp.json()
            chunks: list[int] = trace["chunk_ns"]
            first = trace["first_token_ns"]
            if first is None:
                return
            # Token chunks start at the first token (the chat role chunk before it carries none).
            out[ident] = Truth(trace["received_ns"], chunks[chunks.index(first) :])

        await asyncio.gather(*(one(i) for i in ids))
    return out


def ground_truth(target: Target, ids: Sequence[str]) -> dict[str, Truth]:
    return asyncio.run(_fetch_traces(target, ids))


@dataclass(slots=True)
class Errors:
    """Measured minus true, in ms: TTFT per request, ITL per gap, and the lag of each chunk's timestamp.

    For a tool that keeps only the first and last token times, `itl_ms` holds one value per request: the error of
    the first-to-last span, a difference of two timestamp errors like a per-gap ITL error (its mean ITL error is
    that divided by the gaps, and is in `mean_itl_ms` as for every tool).
    """

    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)
    mean_itl_ms: list[float] = field(default_factory=list)  # per request: measured mean ITL − true mean ITL
    reported_ttft_ms: list[float] = field(default_factory=list)  # the tool's own TTFT − true TTFT
    arrival_lag_ms: list[float] = field(default_factory=list)  # client timestamp − server write, per chunk
    send_lag_ms: list[float] = field(default_factory=list)  # request at the server's socket − client send
    matched: int = 0
    unmatched: int = 0
    chunks: int = 0


def _true_chunks(m: Measured, t: Truth) -> list[int] | None:
    """The true times of the chunks `m` timed: all token chunks, or the first and last when the tool keeps only those.

    A trace lists every chunk from the first token on; under the openai profile that ends with a usage-only chunk,
    which no tool counts as a token, so one extra chunk at the end is dropped.
    """
    true = t.token_chunk_ns
    if len(true) == m.chunks + 1:
        true = true[:-1]
    if len(true) != m.chunks or not true:
        return None
    return [true[0], true[-1]] if m.token_chunks is not None else true


def score(run: ToolRun, truth: dict[str, Truth]) -> Errors:
    errors = Errors()
    for m in run.requests:
        t = truth.get(m.request_id or "")
        true_chunks = None if t is None or m.first_token_ns is None else _true_chunks(m, t)
        if t is None or true_chunks is None or m.first_token_ns is None or len(m.chunk_ns) != len(true_chunks):
            errors.unmatched += 1
            continue
        errors.matched += 1
        errors.chunks += m.chunks
        true_ttft = true_chunks[0] - t.received_ns
        errors.ttft_ms.append(((m.first_token_ns - m.sent_ns) - true_ttft) / 1e6)
        reported = m.reported_first_ns if m.reported_first_ns is not None else m.first_token_ns
        errors.reported_ttft_ms.append(((reported - m.sent_ns) - true_ttft) / 1e6)
        errors.send_lag_ms.append((t.received_ns - m.sent_ns) / 1e6)
        measured = np.diff(np.asarray(m.chunk_ns, dtype=np.int64))
        true = np.diff(np.asarray(true_chunks, dtype=np.int64))
        errors.itl_ms.extend(((measured - true) / 1e6).tolist())
        if m.chunks > 1:
            span_err = (m.chunk_ns[-1] - m.chunk_ns[0]) - (true_chunks[-1] - true_chunks[0])
            errors.mean_itl_ms.append(span_err / (m.chunks - 1) / 1e6)
        errors.arrival_lag_ms.extend(((np.asarray(m.chunk_ns) - np.asarray(true_chunks)) / 1e6).tolist())
    return errors
