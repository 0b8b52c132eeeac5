"""Capacity: the most streamed chunks per second one load-generator process on one core sustains while its chunk
timestamps stay within 1 ms (p99 |ITL error| against the simulator's ground truth).

The tool is pinned to one CPU and the simulator to the other (taskset / sched_setaffinity). The number of streams
climbs at a fixed inter-token latency; at each level the tool's chunk rate (scored chunks over the span from the
first send to the last chunk) and its timing errors are measured. A tool's capacity is the highest chunk rate whose
p99 |ITL error| is ≤ 1 ms. When the simulator itself saturates first (it shares the machine), the figure is a
lower bound, and the table shows it. Goal: ≥ 2× the figure of vllm bench serve and GuideLLM, measured the same way
in the same run; AIPerf, the naive aiohttp client (the in-run baseline) and `harness bench --uvloop` (reads timed by
its loop, not by the kernel) are measured too. Each tool gets one
simulator for all its levels (GuideLLM runs all levels in one process: its start-up takes tens of seconds).
GuideLLM keeps only the first and last token times of a request: its |ITL error| is the error of that span (*).

The default levels stop at 64 streams (12.8k chunks/s offered, beyond what the simulator delivers on its one core)
and requests are 50 tokens long, so that the five tools fit in about ten minutes; the peers' start-up (vLLM's
imports, GuideLLM's and AIPerf's worker processes) is much of it. Six scored rounds per level: at 4 streams that is
1,200 gaps, so a p99 rests on the worst 12 of them; with three rounds one stall of this VM moved a level across
the limit.

    python -m benchmarks.loadgen_capacity [--streams 4,8,16,32,64] [--itl-ms 5] [--tools harness,naive,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks.loadgen_common import Load, chunk_rate, ground_truth, score
from benchmarks.loadgen_peers import profile_of, run_levels
from benchmarks.support.machine import machine
from benchmarks.support.peers import ToolUnavailable
from benchmarks.support.results import now_utc
from benchmarks.support.simulator import simulator
from benchmarks.support.stats import abs_p99

TOOL_CPU, SIM_CPU = 1, 0
DEFAULT_TOOLS = "harness,harness-uvloop,naive,vllm,guidellm,aiperf"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="4,8,16,32,64")
    p.add_argument("--itl-ms", type=float, default=5.0)
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--output-tokens", type=int, default=50)
    p.add_argument("--rounds", type=int, default=6, help="scored requests = rounds × streams")
    p.add_argument("--tools", default=DEFAULT_TOOLS)
    p.add_argument("--limit-ms", type=float, default=1.0)
    args = p.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs", file=sys.stderr)
        return 2
    print(f"# capacity — {now_utc()} — {machine()}")
    print(f"tool on CPU {TOOL_CPU}, simulator on CPU {SIM_CPU}; ITL {args.itl_ms:g} ms, {args.output_tokens} tokens")
    print(
        f"{'tool':24} {'streams':>7} {'offered/s':>9} {'chunks/s':>9} {'|ITL err| p99':>13} {'|TTFT err| p99':>14} "
        f"{'matched':>7} {'load avg 1/5/15':>16}",
        flush=True,
    )
    levels = [int(s) for s in args.streams.split(",")]
    loads = [Load(n, n * args.rounds, args.output_tokens, cpu=TOOL_CPU, warmup=n) for n in levels]
    best: dict[str, float] = {}
    names: dict[str, str] = {}
    for name in args.tools.split(","):
        started = time.monotonic()
        try:
            with simulator(args.ttft_ms, args.itl_ms, cpu=SIM_CPU, profile=profile_of(name)) as server:
                runs = run_levels(name, server.target, loads)
                ids = [m.request_id for run in runs for m in run.requests if m.request_id]
                truth = ground_truth(server.target, ids)
        except ToolUnavailable as exc:
            print(f"{name:24} unavailable: {exc}", flush=True)
            continue
        for streams, run in zip(levels, runs, strict=True):
            errors = score(run, truth)
            names[name] = run.name
            rate = chunk_rate(run)
            itl99, ttft99 = abs_p99(errors.itl_ms), abs_p99(errors.ttft_ms)
            sparse = "*" if any(m.token_chunks is not None for m in run.requests) else " "
            offered = streams * 1000 / args.itl_ms
            print(
                f"{run.name:24} {streams:>7} {offered:>9.0f} {rate:>9.0f} {itl99:>12.3f}{sparse} {ttft99:>14.3f} "
                f"{errors.matched:>7} {run.load_avg:>16}",
                flush=True,
            )
            if itl99 <= args.limit_ms:
                best[name] = max(best.get(name, 0.0), rate)
        print(f"{'':24} ({time.monotonic() - started:.0f} s for all levels, start-up included)", flush=True)
    for name in names:
        capacity = best.get(name)
        figure = f"{capacity:.0f} chunks/s" if capacity else "none (no level met the limit)"
        print(f"capacity of {names[name]}: {figure} with p99 |ITL error| <= {args.limit_ms:g} ms")
    if best.get("harness"):
        for name, rate in best.items():
            if name != "harness":
                print(f"harness / {names[name]}: {best['harness'] / rate:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
