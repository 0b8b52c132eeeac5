"""Accuracy: how far a load generator's TTFT and ITL are from the simulator's ground truth.

The simulator (TTFT 50 ms, ITL 10 ms, no batch slowdown) stamps when its handler received each request and when
it wrote each chunk (CLOCK_MONOTONIC, shared with the client on this host). Each tool runs `--streams` concurrent
streams (one round of warm-up requests first, to open the connections); every request it measured is matched to
its trace by request id, and the error is measured − true: TTFT per request, ITL per gap. TTFT error is the sum
of the send lag (client send → server handler, which includes the server's own queueing when it is busy) and
the receive lag of the first chunk (server write → client timestamp). Goal for `harness bench`: |error| p99 ≤ 1 ms.
The naive aiohttp client is the in-run baseline; peers plug in through `loadgen_common.TOOLS`.

    python benchmarks/loadgen_accuracy.py [--streams 256] [--requests 768] [--tools harness,naive] [--tool-cpu 1]
"""

from __future__ import annotations

import argparse
import datetime
import sys

from loadgen_common import TOOLS, Load, abs_p99, ground_truth, machine, pct, score, simulator


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=256)
    p.add_argument("--requests", type=int, default=768, help="scored requests per tool")
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--ttft-ms", type=float, default=50.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tools", default="harness,naive")
    p.add_argument("--tool-cpu", type=int, help="pin the tool to this CPU and the simulator to another")
    args = p.parse_args()
    load = Load(args.streams, args.requests, args.output_tokens, cpu=args.tool_cpu, warmup=args.streams)
    sim_cpu = None if args.tool_cpu is None else (0 if args.tool_cpu != 0 else 1)
    print(f"# accuracy — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC — {machine()}")
    print(
        f"simulator TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms; {args.streams} concurrent streams, "
        f"{args.requests} scored requests of {args.output_tokens} tokens per tool"
        + (f"; tool on CPU {args.tool_cpu}, simulator on CPU {sim_cpu}" if args.tool_cpu is not None else "")
    )
    print(
        f"{'tool':26} {'matched':>7} {'|TTFT err| p99':>14} {'|ITL err| p99':>13} {'TTFT err p50':>12} "
        f"{'send lag p50/p99':>17} {'recv lag p50/p99':>17} {'chunks/s':>9}  (ms)"
    )
    results: dict[str, float] = {}
    for name in args.tools.split(","):
        with simulator(args.ttft_ms, args.itl_ms, cpu=sim_cpu) as server:
            run = TOOLS[name](server.target, load)
            ids = [m.request_id for m in run.requests if m.request_id]
            errors = score(run, ground_truth(server.target, ids))
        ttft99, itl99 = abs_p99(errors.ttft_ms), abs_p99(errors.itl_ms)
        results[name] = max(ttft99, itl99)
        send = f"{pct(errors.send_lag_ms, 50):.2f}/{pct(errors.send_lag_ms, 99):.2f}"
        recv = f"{pct(errors.arrival_lag_ms, 50):.2f}/{pct(errors.arrival_lag_ms, 99):.2f}"
        print(
            f"{run.name:26} {errors.matched:>7} {ttft99:>14.3f} {itl99:>13.3f} {pct(errors.ttft_ms, 50):>12.3f} "
            f"{send:>17} {recv:>17} {errors.chunks / run.wall_s:>9.0f}"
        )
    if "harness" in results and "naive" in results and results["harness"] > 0:
        print(f"naive / harness, max(|TTFT err| p99, |ITL err| p99): {results['naive'] / results['harness']:.1f}x")
    if "harness" in results:
        verdict = "met" if results["harness"] <= 1.0 else "NOT met"
        print(f"goal |error| p99 <= 1 ms for harness bench: {verdict} ({results['harness']:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
