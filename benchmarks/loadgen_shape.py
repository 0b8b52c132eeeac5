"""Load shape: does an open loop at a requested Poisson rate deliver that rate, with exponential gaps?

The tool sends `--requests` requests at `--rate` per second (Poisson) to the simulator (no latency, one output
token). From the tool's own send times and from the simulator's receive times (ground truth of what the server
saw: the kernel's time of each request's arrival at its socket): the achieved rate against the requested one,
and a Kolmogorov–Smirnov test of the inter-arrival times against the exponential distribution of the requested
rate (p > 0.05 passes). An unconditioned Poisson draw of N
requests has a realized rate within ±1/√N of the requested one (±1.4% at N = 5000); harness bench (like vllm bench
serve) draws a request-bounded step conditioned on its expected span, so its schedule has the requested rate
exactly and what is left to measure is the dispatch. harness bench keeps three times per request: scheduled, taken
up by the client (`dispatched_ns`: `--send-ahead-ms`, 5 ms, before the scheduled time, when aiohttp starts building
it) and written to the socket (`sent_ns`: by the pacing thread at the scheduled time, once the request is built;
`harness/release.py`). The peers (vllm bench serve, GuideLLM, AIPerf:
`loadgen_peers.PEER_SHAPE_TOOLS`) run the same Poisson load in the same run, each against a fresh simulator;
GuideLLM keeps the schedule it drew, the others only send times.

The simulator is pinned to CPU 0 (`--sim-cpu`) so that its event loop does not take the tool's CPU; the tools
are not pinned (GuideLLM and AIPerf run several processes).

    python -m benchmarks.loadgen_shape [--rate 100] [--requests 5000] [--tools harness,vllm,guidellm,aiperf]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from scipy import stats

from benchmarks.loadgen_common import Sent, ground_truth
from benchmarks.loadgen_peers import PEER_SHAPE_TOOLS, profile_of
from benchmarks.support import ROOT
from benchmarks.support.harness_cli import bench_argv
from benchmarks.support.machine import load_average, machine
from benchmarks.support.peers import ToolUnavailable
from benchmarks.support.results import now_utc
from benchmarks.support.simulator import simulator
from benchmarks.support.stats import percentile
from harness.records.record import read_run
from harness.target.endpoint import Target


def shape_harness(target: Target, rate: float, requests: int, seed: int) -> Sent:
    with tempfile.TemporaryDirectory() as out:
        argv = bench_argv(
            target,
            out,
            "shape",
            "--rate",
            str(rate),
            "--arrival",
            "poisson",
            "--requests",
            str(requests),
            "--warmup",
            "0",
            "--input-tokens",
            "16",
            "--output-tokens",
            "1",
            "--trace-timing",
            "--no-calibrate",
            "--seed",
            str(seed),
        )
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        run = read_run(Path(out) / "shape" / "records.jsonl")
    records = sorted((r for r in run.requests if r.sent_ns is not None), key=lambda r: r.scheduled_ns)
    origin = run.run.origin_ns
    return Sent(
        "harness bench",
        [origin + (r.sent_ns or 0) for r in records],
        [origin + r.scheduled_ns for r in records],
        [r.request_id for r in records if r.request_id],
        [origin + (r.dispatched_ns or 0) for r in records],
    )


SHAPE_TOOLS: dict[str, Callable[[Target, float, int, int], Sent]] = {"harness": shape_harness, **PEER_SHAPE_TOOLS}


def describe(label: str, times_ns: list[int], rate: float) -> str:
    times = sorted(times_ns)
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(times)]
    achieved = len(gaps) / ((times[-1] - times[0]) / 1e9)
    ks = stats.kstest(gaps, "expon", args=(0, 1 / rate))
    verdict = "pass" if ks.pvalue > 0.05 else "FAIL"
    return (
        f"  {label:22} rate {achieved:9.3f}/s ({achieved / rate - 1:+.2%} vs requested)  "
        f"KS D={ks.statistic:.4f} p={ks.pvalue:.3f} {verdict}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tools", default="harness,vllm,guidellm,aiperf")
    p.add_argument("--sim-cpu", type=int, default=0, help="pin the simulator to this CPU (-1: not pinned)")
    args = p.parse_args()
    if unknown := sorted(set(args.tools.split(",")) - SHAPE_TOOLS.keys()):
        p.error(f"--tools: unknown {', '.join(unknown)} (known: {', '.join(SHAPE_TOOLS)})")
    print(f"# load shape — {now_utc()} — {machine()}")
    print(f"Poisson at {args.rate:g} requests/s, {args.requests} requests (±{1 / args.requests**0.5:.1%} is 1σ)")
    for name in args.tools.split(","):
        try:
            sim_cpu = args.sim_cpu if args.sim_cpu >= 0 else None
            with simulator(0.0, 0.0, cpu=sim_cpu, profile=profile_of(name)) as server:
                sent = SHAPE_TOOLS[name](server.target, args.rate, args.requests, args.seed)
                truth = ground_truth(server.target, sent.request_ids)
        except ToolUnavailable as exc:
            print(f"{name}: unavailable: {exc}", flush=True)
            continue
        print(f"{sent.name} ({len(sent.sent_ns)} sent, {len(truth)} traced; load average {load_average()})")
        if sent.scheduled_ns is not None:
            kept = [i for i, c in enumerate(sent.scheduled_ns) if c is not None]
            schedule = [c for c in sent.scheduled_ns if c is not None]
            if missing := len(sent.scheduled_ns) - len(kept):
                print(f"  ({missing} requests the tool kept no schedule for are left out of the schedule rows)")
            print(describe("schedule drawn", schedule, args.rate))
            series = [("taken up", sent.dispatched_ns)] if sent.dispatched_ns is not None else []
            for label, times in [*series, ("sent", sent.sent_ns)]:
                late = [(times[i] - c) / 1e6 for i, c in zip(kept, schedule, strict=True)]
                p50, p99 = percentile(late, 50), percentile(late, 99)
                print(f"  {'schedule → ' + label:22} p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {max(late):.3f} ms")
            span = (sent.sent_ns[kept[-1]] - sent.sent_ns[kept[0]]) / (schedule[-1] - schedule[0])
            print(f"  {'sent vs schedule':22} achieved/scheduled rate {1 / span:.5f}")
        if sent.dispatched_ns is not None:
            print(describe("taken up (client)", sent.dispatched_ns, args.rate))
        print(describe("sent (client)", sent.sent_ns, args.rate))
        print(describe("received (server)", [t.received_ns for t in truth.values()], args.rate), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
