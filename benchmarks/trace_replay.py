"""Trace replay: does `harness bench --trace` send each request at its time in the trace?

A synthetic Mooncake-format trace (`--requests`, 10,000 by default, Poisson at `--rate` 100/s, whole-millisecond
timestamps as Mooncake writes them, prompts of 1–3 shared 512-token blocks and a few tokens of their own, 1–4 output
tokens) is replayed against the simulator at zero latency (pinned to CPU 0, on asyncio's loop: each request's
arrival is the kernel's time at its socket). Baseline, in the same run against a fresh simulator: the usual way of
replaying a trace, one asyncio task per request sleeping until its time (`asyncio.sleep`) and posting it with
aiohttp — the pattern of most replay scripts.

For each: the lag of every request behind its time in the trace — by the tool's own send stamp and by its arrival
at the simulator (ground truth, the same clock) — p50, p99 and max; the rate achieved against the trace's, over the
whole replay and per second of the trace (the largest and mean |requests arrived − requests due| in a second).

    python -m benchmarks.trace_replay [--requests 10000] [--rate 100] [--seed 0] [--update-results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.loadgen_common import ground_truth
from benchmarks.support import ROOT
from benchmarks.support.harness_cli import bench_argv
from benchmarks.support.machine import load_average, machine
from benchmarks.support.results import now_utc, publish
from benchmarks.support.simulator import simulator
from benchmarks.support.stats import percentile
from harness.records.record import read_run
from harness.target.endpoint import Target

HEADING = "## Trace replay (issue 19) — `python -m benchmarks.trace_replay`"


@dataclass(frozen=True, slots=True)
class Row:
    at_ms: int
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


def synthetic_trace(requests: int, rate: float, seed: int) -> list[Row]:
    rng = random.Random(seed)
    rows, t = [], 0.0
    for _ in range(requests):
        blocks = tuple(rng.randrange(64) for _ in range(rng.randint(1, 3)))
        rows.append(Row(round(t), 512 * (len(blocks) - 1) + rng.randint(16, 512), rng.randint(1, 4), blocks))
        t += rng.expovariate(rate) * 1000
    return rows


def write_trace(rows: Sequence[Row], path: Path) -> None:
    with path.open("w") as f:
        for r in rows:
            row = {"timestamp": r.at_ms, "input_length": r.input_length, "output_length": r.output_length}
            f.write(json.dumps({**row, "hash_ids": list(r.hash_ids)}) + "\n")


@dataclass(slots=True)
class Replayed:
    """A replay as a tool saw it (CLOCK_MONOTONIC ns): each request's due time, send stamp and traced id."""

    name: str
    due_ns: list[int]
    sent_ns: list[int]
    ids: list[str]


def replay_harness(target: Target, trace: Path) -> Replayed:
    with tempfile.TemporaryDirectory() as out:
        argv = bench_argv(target, out, "replay", "--trace", str(trace), "--trace-format", "mooncake",
                          "--trace-timing", "--no-calibrate")  # fmt: skip
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        run = read_run(Path(out) / "replay" / "records.jsonl")
    done = sorted((r for r in run.requests if r.sent_ns is not None), key=lambda r: r.scheduled_ns)
    origin = run.run.origin_ns
    return Replayed(
        "harness bench --trace",
        [origin + r.scheduled_ns for r in done],
        [origin + (r.sent_ns or 0) for r in done],
        [r.request_id or "" for r in done],
    )


async def _naive(target: Target, rows: Sequence[Row]) -> Replayed:
    """The usual replay script: a task per request, `asyncio.sleep` to its time, then aiohttp's post."""
    headers = {"Authorization": f"Bearer {target.api_key}", "x-trace-timing": "1"}
    due, sent, ids = [0] * len(rows), [0] * len(rows), [""] * len(rows)
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.perf_counter_ns() + 500_000_000  # half a second to create the tasks

        async def one(i: int, row: Row) -> None:
            due[i] = start + (row.at_ms - rows[0].at_ms) * 1_000_000
            await asyncio.sleep((due[i] - time.perf_counter_ns()) / 1e9)
            body = {"model": target.model, "prompt": "word " * row.input_length, "max_tokens": row.output_length,
                    "stream": True, "ignore_eos": True}  # fmt: skip
            sent[i] = time.perf_counter_ns()
            async with session.post(f"{target.base_url}/completions", json=body) as resp:
                ids[i] = resp.headers.get("x-request-id", "")
                await resp.read()

        await asyncio.gather(*(one(i, row) for i, row in enumerate(rows)))
    return Replayed("asyncio.sleep + aiohttp (baseline)", due, sent, ids)


@dataclass(slots=True)
class Scored:
    name: str
    sent_lag_ms: list[float]
    arrival_lag_ms: list[float]
    trace_rate: float
    arrival_rate: float
    per_second_max: int
    per_second_mean: float


def score(replayed: Replayed, target: Target) -> Scored:
    truth = ground_truth(target, [i for i in replayed.ids if i])
    due = np.array(replayed.due_ns, dtype=np.float64)
    arrived = np.array([truth[i].received_ns if i in truth else np.nan for i in replayed.ids], dtype=np.float64)
    known = np.isfinite(arrived)
    start = due.min()
    seconds = int((max(due.max(), np.nanmax(arrived)) - start) // 1e9) + 1
    asked = np.bincount(((due - start) // 1e9).astype(np.int64), minlength=seconds)
    got = np.bincount(np.maximum(0, (arrived[known] - start) // 1e9).astype(np.int64), minlength=seconds)
    error = np.abs(got - asked)

    def rate(times: np.ndarray) -> float:
        return float((len(times) - 1) / ((times.max() - times.min()) / 1e9))

    return Scored(
        replayed.name,
        [(s - d) / 1e6 for s, d in zip(replayed.sent_ns, replayed.due_ns, strict=True)],
        list((arrived[known] - due[known]) / 1e6),
        rate(due),
        rate(arrived[known]),
        int(error.max()),
        float(error.mean()),
    )


def table(scored: Sequence[Scored], requests: int) -> str:
    lines = [
        "| tool | traced | send − trace time p50 / p99 / max (ms) | arrival − trace time p50 / p99 / max (ms) "
        "| arrival rate / trace rate | per second: max / mean \\|arrived − due\\| |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in scored:
        sent = " / ".join(f"{percentile(s.sent_lag_ms, q):.3f}" for q in (50, 99)) + f" / {max(s.sent_lag_ms):.3f}"
        came = " / ".join(f"{percentile(s.arrival_lag_ms, q):.3f}" for q in (50, 99))
        came += f" / {max(s.arrival_lag_ms):.3f}"
        lines.append(
            f"| {s.name} | {len(s.arrival_lag_ms)}/{requests} | {sent} | {came} | "
            f"{s.arrival_rate:.3f} / {s.trace_rate:.3f} ({s.arrival_rate / s.trace_rate - 1:+.3%}) | "
            f"{s.per_second_max} / {s.per_second_mean:.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sim-cpu", type=int, default=0, help="pin the simulator to this CPU (-1: not pinned)")
    p.add_argument("--update-results", action="store_true", help=f"rewrite the section '{HEADING}' of RESULTS.md")
    args = p.parse_args()
    when, where = now_utc(), machine()
    print(f"# trace replay — {when} — {where}")
    rows = synthetic_trace(args.requests, args.rate, args.seed)
    scored = []
    with tempfile.TemporaryDirectory() as work:
        trace = Path(work) / "mooncake.jsonl"
        write_trace(rows, trace)
        for tool in ("harness", "naive"):
            with simulator(0.0, 0.0, cpu=args.sim_cpu if args.sim_cpu >= 0 else None) as server:
                target = server.target
                replayed = replay_harness(target, trace) if tool == "harness" else asyncio.run(_naive(target, rows))
                scored.append(score(replayed, target))
            print(f"{scored[-1].name}: done (load average {load_average()})", flush=True)
    span_s = (rows[-1].at_ms - rows[0].at_ms) / 1000
    result = table(scored, len(rows))
    ours, base = scored
    p50, p99 = (percentile(base.arrival_lag_ms, q) / percentile(ours.arrival_lag_ms, q) for q in (50, 99))
    summary = (
        f"Trace: {len(rows)} requests over {span_s:.1f} s ({(len(rows) - 1) / span_s:.2f}/s), Mooncake JSONL, "
        f"seed {args.seed}. Lag of the arrival at the simulator behind the trace's time: the baseline's is "
        f"{p50:.1f}× harness bench's at p50, {p99:.1f}× at p99."
    )
    publish(HEADING, "benchmarks.trace_replay", when, where, f"{summary}\n\n{result}", update=args.update_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
