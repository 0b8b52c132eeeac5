"""Capacity: the most streamed chunks per second one load-generator process on one core sustains while its chunk
timestamps stay within 1 ms (p99 |ITL error| against the simulator's ground truth).

The tool is pinned to one CPU and the simulator to the other (taskset / sched_setaffinity). The number of streams
climbs at a fixed inter-token latency; at each level the tool's chunk rate (scored chunks over the span from the
first send to the last chunk) and its timing errors are measured. A tool's capacity is the highest chunk rate whose
p99 |ITL error| is ≤ 1 ms. When the simulator itself saturates first (it shares the machine), the figure is a
lower bound, and the table shows it. Goal: ≥ 2× the figure of vllm bench serve and GuideLLM (peers plug in through
`loadgen_common.TOOLS`); the naive aiohttp client is the in-run baseline.

    python benchmarks/loadgen_capacity.py [--streams 8,16,32,64,128,256] [--itl-ms 5] [--tools harness,naive]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from loadgen_common import TOOLS, Load, abs_p99, ground_truth, machine, score, simulator

TOOL_CPU, SIM_CPU = 1, 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default="8,16,32,64,128,256")
    p.add_argument("--itl-ms", type=float, default=5.0)
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--output-tokens", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="scored requests = rounds × streams")
    p.add_argument("--tools", default="harness,naive")
    p.add_argument("--limit-ms", type=float, default=1.0)
    args = p.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs", file=sys.stderr)
        return 2
    print(f"# capacity — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC — {machine()}")
    print(f"tool on CPU {TOOL_CPU}, simulator on CPU {SIM_CPU}; ITL {args.itl_ms:g} ms, {args.output_tokens} tokens")
    print(f"{'tool':26} {'streams':>7} {'offered/s':>9} {'chunks/s':>9} {'|ITL err| p99':>13} {'|TTFT err| p99':>14}")
    best: dict[str, float] = {}
    for name in args.tools.split(","):
        for streams in (int(s) for s in args.streams.split(",")):
            load = Load(streams, streams * args.rounds, args.output_tokens, cpu=TOOL_CPU, warmup=streams)
            with simulator(args.ttft_ms, args.itl_ms, cpu=SIM_CPU) as server:
                run = TOOLS[name](server.target, load)
                errors = score(run, ground_truth(server.target, [m.request_id for m in run.requests if m.request_id]))
            scored = [m for m in run.requests if m.chunk_ns]
            span_s = (max(m.chunk_ns[-1] for m in scored) - min(m.sent_ns for m in scored)) / 1e9
            rate = sum(len(m.chunk_ns) for m in scored) / span_s
            itl99, ttft99 = abs_p99(errors.itl_ms), abs_p99(errors.ttft_ms)
            offered = streams * 1000 / args.itl_ms
            print(f"{run.name:26} {streams:>7} {offered:>9.0f} {rate:>9.0f} {itl99:>13.3f} {ttft99:>14.3f}")
            if itl99 <= args.limit_ms:
                best[name] = max(best.get(name, 0.0), rate)
    for name, rate in best.items():
        print(f"capacity of {name}: {rate:.0f} chunks/s with p99 |ITL error| <= {args.limit_ms:g} ms")
    if best.get("harness") and best.get("naive"):
        print(f"harness / naive: {best['harness'] / best['naive']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
