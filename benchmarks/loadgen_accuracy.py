"""Accuracy: how far each load generator's TTFT and ITL are from the simulator's ground truth.

The simulator (TTFT 50 ms, ITL 10 ms, no batch slowdown) stamps when each request reached its socket (the kernel's
receive time: it runs on asyncio's loop, `--event-loop asyncio`) and when it wrote each chunk (CLOCK_MONOTONIC,
shared with the clients on this host). Each tool runs `--streams` concurrent streams (one round of warm-up requests
first, to open the connections); every request it measured is matched to its trace (by response id, or by the
`x-request-id` the tool sent), and the error is measured − true: TTFT per request, ITL per gap. TTFT error is the
sum of the send lag (the tool's send timestamp → the request's arrival at the server's socket) and the receive lag
of the first token chunk (server write → the tool's timestamp). A server whose loop is busy reads requests late;
that wait is inside the true TTFT, as it is inside what any client sees. Goal for `harness bench`: |error| p99
≤ 1 ms; the same figures for the naive aiohttp baseline and the peers (vllm bench serve, GuideLLM, AIPerf:
`loadgen_peers.py`), each against a fresh simulator, in the same run.

Columns: `|ITL err|` is per gap, except for GuideLLM, which keeps only the first and last token times: there it is
the error of that span (marked *); `|mean ITL err|` is the error of each request's mean ITL, for every tool;
`|own TTFT err|` is the error of the TTFT as the tool itself defines it (vllm bench serve ends it at the chat role
chunk, which the reference server sends before the first token).

`harness-uvloop` is harness bench with `--uvloop`, whose reads are timed when its loop reads them, not by the kernel.

    python -m benchmarks.loadgen_accuracy [--streams 256] [--requests 768] [--tools harness,harness-uvloop,naive,...]
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.loadgen_common import Load, chunk_rate, ground_truth, score
from benchmarks.loadgen_peers import ALL_TOOLS, profile_of
from benchmarks.support.machine import load_average, machine
from benchmarks.support.peers import ToolUnavailable
from benchmarks.support.results import now_utc
from benchmarks.support.simulator import simulator
from benchmarks.support.stats import abs_p99, percentile

DEFAULT_TOOLS = "harness,harness-uvloop,naive,vllm,guidellm,aiperf"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=256)
    p.add_argument("--requests", type=int, default=768, help="scored requests per tool")
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tools", default=DEFAULT_TOOLS)
    p.add_argument("--tool-cpu", type=int, help="pin the tool to this CPU and the simulator to another")
    args = p.parse_args()
    load = Load(args.streams, args.requests, args.output_tokens, cpu=args.tool_cpu, warmup=args.streams)
    sim_cpu = None if args.tool_cpu is None else (0 if args.tool_cpu != 0 else 1)
    print(f"# accuracy — {now_utc()} — {machine()}")
    print(
        f"simulator TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms; {args.streams} concurrent streams, "
        f"{args.requests} scored requests of {args.output_tokens} tokens per tool"
        + (f"; tool on CPU {args.tool_cpu}, simulator on CPU {sim_cpu}" if args.tool_cpu is not None else "")
    )
    print(
        f"{'tool':24} {'matched':>7} {'|TTFT err| p99':>14} {'|ITL err| p99':>13} {'|mean ITL err| p99':>18} "
        f"{'|own TTFT err| p99':>18} {'send lag p50/p99':>17} {'recv lag p50/p99':>17} {'chunks/s':>8} "
        f"{'load avg 1/5/15':>16}  (ms)",
        flush=True,
    )
    results: dict[str, float] = {}
    for name in args.tools.split(","):
        try:
            with simulator(args.ttft_ms, args.itl_ms, cpu=sim_cpu, profile=profile_of(name)) as server:
                run = ALL_TOOLS[name](server.target, load)
                ids = [m.request_id for m in run.requests if m.request_id]
                errors = score(run, ground_truth(server.target, ids))
        except ToolUnavailable as exc:
            print(f"{name:24} unavailable: {exc}", flush=True)
            continue
        ttft99, itl99 = abs_p99(errors.ttft_ms), abs_p99(errors.itl_ms)
        results[name] = max(ttft99, itl99)
        sparse = any(m.token_chunks is not None for m in run.requests)
        send = f"{percentile(errors.send_lag_ms, 50):.2f}/{percentile(errors.send_lag_ms, 99):.2f}"
        recv = f"{percentile(errors.arrival_lag_ms, 50):.2f}/{percentile(errors.arrival_lag_ms, 99):.2f}"
        itl = f"{itl99:.3f}{'*' if sparse else ' '}"
        print(
            f"{run.name:24} {errors.matched:>7} {ttft99:>14.3f} {itl:>13} {abs_p99(errors.mean_itl_ms):>18.3f} "
            f"{abs_p99(errors.reported_ttft_ms):>18.3f} {send:>17} {recv:>17} {chunk_rate(run):>8.0f} "
            f"{load_average():>16}",
            flush=True,
        )
        if errors.unmatched:
            print(f"{'':24} ({errors.unmatched} requests not matched to a trace or failed)", flush=True)
    ours = results.get("harness")
    if ours:
        for name, value in results.items():
            if name != "harness":
                print(f"{name} / harness, max(|TTFT err| p99, |ITL err| p99): {value / ours:.1f}x")
        verdict = "met" if ours <= 1.0 else "NOT met"
        print(f"goal |error| p99 <= 1 ms for harness bench: {verdict} ({ours:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
