"""Shared by the load-generator benchmarks: the simulator with ground truth, the tools under test, and scoring.

A *tool* is a function that drives load against a target and returns what it measured per request (send time,
first-token time and chunk arrival times on this machine's CLOCK_MONOTONIC, plus the server's request id when the
tool can keep it). Ground truth comes from the simulator's `/debug/traces/{id}`. A peer (vllm bench serve,
GuideLLM, AIPerf, ...) plugs in as one more entry of `TOOLS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402

from harness.records import read_run  # noqa: E402
from harness.target import LaunchedServer, Target, launch_reference_server  # noqa: E402

HARNESS = [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())"]


@dataclass(slots=True)
class Measured:
    """One request as a tool saw it; absolute perf_counter_ns readings (CLOCK_MONOTONIC)."""

    request_id: str | None
    sent_ns: int
    first_token_ns: int | None
    chunk_ns: list[int] = field(default_factory=list)
    ok: bool = True


@dataclass(slots=True)
class ToolRun:
    name: str
    requests: list[Measured]
    wall_s: float
    cpu_note: str = ""


@dataclass(frozen=True, slots=True)
class Load:
    concurrency: int
    requests: int
    output_tokens: int
    input_tokens: int = 64
    cpu: int | None = None  # pin the tool to this CPU (taskset)
    warmup: int = 0  # requests sent first and not scored (they open the connections)


Tool = Callable[[Target, Load], ToolRun]


@contextlib.contextmanager
def simulator(
    ttft_ms: float, itl_ms: float, *, limit: int = 100_000, cpu: int | None = None, prefill_ms_per_token: float = 0.0
) -> Iterator[LaunchedServer]:
    """The reference server's simulator with a flat latency model (no batch slowdown, no prefill cost)."""
    args = [
        f"--ttft-ms={ttft_ms}",
        f"--itl-ms={itl_ms}",
        "--itl-batch-factor=0",
        f"--prefill-ms-per-token={prefill_ms_per_token}",
        "--max-num-seqs=100000",
    ]
    with launch_reference_server(concurrency_limit=limit, extra_args=args) as server:
        if cpu is not None:
            os.sched_setaffinity(server.process.pid, {cpu})
        yield server


def _pinned(argv: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def run_harness(target: Target, load: Load, extra: Sequence[str] = ()) -> ToolRun:
    """`harness bench`, closed loop, in its own process (pinned when asked), read back from its records."""
    with tempfile.TemporaryDirectory() as out:
        argv = [
            *HARNESS,
            "bench",
            "--base-url",
            target.base_url,
            "--api-key",
            target.api_key,
            "--model",
            target.model,
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
            "--no-progress",
            "--output-dir",
            out,
            "--run-id",
            "bench",
            "--uvloop",
            *extra,
        ]
        started = time.perf_counter()
        subprocess.run(_pinned(argv, load.cpu), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
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
    return ToolRun("harness bench", measured, wall)


def run_naive(target: Target, load: Load) -> ToolRun:
    """The usual way (a baseline, not a peer): aiohttp, line iteration, the clock read after parsing each line."""
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / "naive.jsonl"
        argv = [
            sys.executable,
            str(ROOT / "benchmarks" / "loadgen_naive_client.py"),
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
        subprocess.run(_pinned(argv, load.cpu), cwd=ROOT, check=True)
        wall = time.perf_counter() - started
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    measured = [Measured(**{k: v for k, v in row.items() if k != "warm"}) for row in rows if not row["warm"]]
    return ToolRun("naive aiohttp (baseline)", measured, wall)


TOOLS: dict[str, Tool] = {"harness": run_harness, "naive": run_naive}


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
    """Measured minus true, in ms: TTFT per request, ITL per gap, and the lag of each chunk's timestamp."""

    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)
    arrival_lag_ms: list[float] = field(default_factory=list)  # client timestamp − server write, per chunk
    send_lag_ms: list[float] = field(default_factory=list)  # server handler start − client send, per request
    matched: int = 0
    unmatched: int = 0
    chunks: int = 0


def score(run: ToolRun, truth: dict[str, Truth]) -> Errors:
    errors = Errors()
    for m in run.requests:
        t = truth.get(m.request_id or "")
        if t is None or m.first_token_ns is None or len(m.chunk_ns) != len(t.token_chunk_ns):
            errors.unmatched += 1
            continue
        errors.matched += 1
        errors.chunks += len(m.chunk_ns)
        errors.ttft_ms.append(((m.first_token_ns - m.sent_ns) - (t.token_chunk_ns[0] - t.received_ns)) / 1e6)
        errors.send_lag_ms.append((t.received_ns - m.sent_ns) / 1e6)
        measured = np.diff(np.asarray(m.chunk_ns, dtype=np.int64))
        true = np.diff(np.asarray(t.token_chunk_ns, dtype=np.int64))
        errors.itl_ms.extend(((measured - true) / 1e6).tolist())
        errors.arrival_lag_ms.extend(((np.asarray(m.chunk_ns) - np.asarray(t.token_chunk_ns)) / 1e6).tolist())
    return errors


def pct(values: Sequence[float], q: float) -> float:
    return (
        float(np.percentile(np.asarray(values, dtype=np.float64), q, method="inverted_cdf")) if values else float("nan")
    )


def abs_p99(values: Sequence[float]) -> float:
    return pct([abs(v) for v in values], 99)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}"
