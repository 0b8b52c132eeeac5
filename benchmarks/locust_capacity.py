"""Where Locust stops and `harness bench` takes over: one Locust worker process against `harness bench`, same core.

    python -m benchmarks.locust_capacity [--users 64] [--duration 15] [--rounds 3] [--accuracy-users 32]

1. Capacity. The simulator answers at once (`--ttft-ms 0 --itl-ms 0`) on CPU 0; the tool runs on CPU 1
   (`taskset -c 1`): one Locust worker process running `scenarios/chat.py` (its master, which only collects
   stats, shares the tool's CPU, so that every cost of Locust lands there), then `harness bench --concurrency N
   --duration D` (via `python -m harness.cli`), with the same users, prompt and output lengths; the two alternate
   for a few rounds, so that a noisy neighbour hits both alike. Both write records, and both rates come from them
   by the same rule: requests that ended in the steady window (from 3 s after the first send to 1 s before the
   last end), divided by that window. Beside them: the tool's CPU use and loop lag (gevent hub / asyncio loop)
   from its step lines, the chunks it read per CPU-second (what one fully busy core would sustain at that cost
   per chunk — on two CPUs the single-core server usually saturates before either tool does, which the server's
   CPU column shows), and medians over rounds.
2. TTFT accuracy. The simulator with `--ttft-ms 50 --itl-ms 10` (CPU 0), the tool on CPU 1 asking for ground truth
   (`x-trace-timing: 1`); each request's TTFT from the records against the simulator's trace of the same request
   (the request's arrival at the simulator's socket, as the kernel timed it → first token written, CLOCK_MONOTONIC
   on both sides). Same for `harness bench` as the baseline.

The machine may be shared: the load average is printed before and after, and every number is from this one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.loadgen_common import Measured, ToolRun, ground_truth, score
from benchmarks.support import ROOT
from benchmarks.support.harness_cli import bench_argv
from benchmarks.support.machine import load_average, machine
from benchmarks.support.processes import Group, pinned
from benchmarks.support.results import now_utc
from benchmarks.support.simulator import simulator
from benchmarks.support.stats import abs_p99, percentile
from benchmarks.support.usage import cpu_seconds
from harness.records.record import RunFile, read_run
from harness.target.endpoint import Target
from harness.target.launch import free_port

SERVER_CPU, TOOL_CPU = 0, 1
LOCUST = [sys.executable, "-m", "locust"]
INPUT_TOKENS = 64


def _wait_cpu_s(process: subprocess.Popen[bytes]) -> float:
    """Wait for a child and return the CPU seconds it used (the master's share, reported beside the worker's)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


MASTER_CPU_S: list[float] = []


def run_locust(target: Target, users: int, duration_s: float, max_tokens: int, out: Path, trace: bool) -> RunFile:
    """One worker on the tool's CPU, driven by a headless master; its records read back."""
    port = str(free_port())
    common = ["-f", str(ROOT / "scenarios" / "chat.py")]
    master = [
        *LOCUST, *common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
        "--expect-workers", "1", "--headless", "--only-summary", "-H", target.base_url, "--api-key", target.api_key,
        "--model", target.model, "-u", str(users), "-r", str(min(users, 100)), "-t", f"{duration_s:g}s",
        "--max-tokens", str(max_tokens), "--input-tokens", str(INPUT_TOKENS), "--records", str(out),
        "--stop-timeout", "10",
    ]  # fmt: skip
    if trace:
        master.append("--trace-timing")
    worker = [*LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", port]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYSCALE_", "LOCUST_"))}
    with Group() as group:
        worker_process = group.start(pinned(worker, TOOL_CPU), env=env)
        master_process = group.start(pinned(master, TOOL_CPU), env=env)
        MASTER_CPU_S.append(_wait_cpu_s(master_process))
        worker_process.wait(timeout=60)
    (path,) = out.glob("records-*.jsonl")
    return read_run(path)


def run_harness(target: Target, users: int, duration_s: float, max_tokens: int, out: Path, trace: bool) -> RunFile:
    argv = bench_argv(
        target, out, "bench",
        "--concurrency", str(users), "--duration", f"{duration_s:g}", "--warmup", "0",
        "--input-tokens", str(INPUT_TOKENS), "--output-tokens", str(max_tokens), "--no-calibrate",
        *(["--trace-timing"] if trace else []),
    )  # fmt: skip
    subprocess.run(pinned(argv, TOOL_CPU), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return read_run(out / "bench" / "records.jsonl")


def steady(run: RunFile) -> tuple[float, float, float, int]:
    """Requests/s and chunks/s of the requests that ended inside the steady window; the window; failures."""
    done = [r for r in run.requests if r.end_ns is not None and r.sent_ns is not None]
    start = min(r.sent_ns for r in done if r.sent_ns is not None) + 3_000_000_000
    end = max(r.end_ns for r in done if r.end_ns is not None) - 1_000_000_000
    inside = [r for r in done if r.end_ns is not None and start <= r.end_ns <= end]
    ok = [r for r in inside if r.error_kind is None]
    window_s = (end - start) / 1e9
    return len(ok) / window_s, sum(len(r.chunk_ns) for r in ok) / window_s, window_s, len(inside) - len(ok)


def run_wall_s(run: RunFile) -> float:
    return sum((s.ended_ns - s.started_ns) / 1e9 for s in run.steps)


def tool_load(run: RunFile) -> tuple[float, float, float]:
    """From the tool's own step lines: its CPU use (fraction of one core), its loop lag p99 (ms), and the chunks
    it read per CPU-second it used — what one fully busy core would sustain if the cost per chunk held."""
    wall = run_wall_s(run)
    cpu = sum(s.cpu_s for s in run.steps)
    lags = [lag / 1e6 for s in run.steps for lag in s.loop_lag_ns]
    chunks = sum(len(r.chunk_ns) for r in run.requests)
    return (cpu / wall if wall else float("nan")), percentile(lags, 99), (chunks / cpu if cpu else float("nan"))


def as_measured(run: RunFile, skip_start_s: float = 2.0, skip_end_s: float = 1.0) -> ToolRun:
    """Successful records as absolute CLOCK_MONOTONIC readings, without the requests sent in the first seconds
    (connections opening) or still running in the last second (the tool shutting down)."""
    origin = run.run.origin_ns
    done = [r for r in run.requests if r.sent_ns is not None and r.end_ns is not None and r.error_kind is None]
    first = min(r.sent_ns for r in done if r.sent_ns is not None)
    last = max(r.end_ns for r in done if r.end_ns is not None)
    measured = [
        Measured(
            r.request_id,
            origin + r.sent_ns,
            None if r.first_token_ns is None else origin + r.first_token_ns,
            [origin + t for t in r.chunk_ns],
            True,
        )
        for r in done
        if r.sent_ns is not None
        and r.end_ns is not None
        and not r.warmup
        and r.sent_ns >= first + skip_start_s * 1e9
        and r.end_ns <= last - skip_end_s * 1e9
    ]
    return ToolRun(run.run.tool, measured, 0.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=64, help="users / concurrency of the capacity runs")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of each capacity run")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="capacity runs per tool, alternated")
    p.add_argument("--accuracy-users", type=int, default=32)
    p.add_argument("--accuracy-duration", type=float, default=15.0)
    args = p.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs", file=sys.stderr)
        return 2
    print(f"# Locust vs harness bench — {now_utc()} — {machine()}")
    print(f"load average before: {load_average(' ')}")
    print(f"server on CPU {SERVER_CPU}, tool on CPU {TOOL_CPU}; {INPUT_TOKENS} input words, {args.max_tokens} tokens")

    print(f"\n## capacity: zero-latency simulator, {args.users} users, {args.duration:g} s, {args.rounds} rounds")
    print(
        f"{'tool':14} {'req/s':>7} {'chunks/s':>8} {'failed':>6} {'tool CPU':>8} {'chunks/CPU-s':>12} "
        f"{'lag p99 ms':>10} {'server CPU':>10}"
    )
    rows: dict[str, list[tuple[float, float, float, float]]] = {"locust worker": [], "harness bench": []}
    for _ in range(args.rounds):  # alternated, so that a noisy neighbour hits both tools alike
        for name, runner in (("locust worker", run_locust), ("harness bench", run_harness)):
            with simulator(0, 0, cpu=SERVER_CPU) as server, tempfile.TemporaryDirectory() as out:
                server_before = cpu_seconds(server.process.pid)
                run = runner(server.target, args.users, args.duration, args.max_tokens, Path(out), False)
                server_cpu_s = cpu_seconds(server.process.pid) - server_before
            req_s, chunks_s, _window_s, failed = steady(run)
            cpu, lag99, per_cpu_s = tool_load(run)
            server_share = server_cpu_s / run_wall_s(run)
            rows[name].append((req_s, chunks_s, cpu, per_cpu_s))
            print(
                f"{name:14} {req_s:>7.1f} {chunks_s:>8.0f} {failed:>6} {cpu:>8.0%} {per_cpu_s:>12.0f} "
                f"{lag99:>10.1f} {server_share:>10.0%}"
            )
    print(f"(each Locust master, beside its worker, used {statistics.mean(MASTER_CPU_S):.2f} CPU s in all)")
    medians = {name: [statistics.median(r[i] for r in found) for i in range(4)] for name, found in rows.items()}
    for name, (req_s, chunks_s, cpu, per_cpu_s) in medians.items():
        print(
            f"median {name}: {req_s:.1f} req/s, {chunks_s:.0f} chunks/s at {cpu:.0%} of its core; "
            f"{per_cpu_s:.0f} chunks per CPU-second"
        )
    locust, harness = medians["locust worker"], medians["harness bench"]
    print(
        f"harness bench / locust worker: {harness[1] / locust[1]:.2f}x chunks/s achieved, "
        f"{harness[3] / locust[3]:.2f}x chunks per CPU-second"
    )

    print(f"\n## TTFT accuracy: simulator TTFT 50 ms, ITL 10 ms, {args.accuracy_users} users, {args.max_tokens} tokens")
    print("error = measured − ground truth (ms), without the first 2 s and the last 1 s; send lag = client send →")
    print("the request's arrival at the server's socket (kernel's time), recv lag = chunk written → stamped")
    header = (
        f"{'tool':14} {'scored':>6} {'TTFT err p50':>12} {'|TTFT err| p99':>14} {'|ITL err| p99':>13} "
        f"{'send lag p50/p99':>16} {'recv lag p50/p99':>16}"
    )
    print(header)
    worst: dict[str, float] = {}
    for name, runner in (("locust worker", run_locust), ("harness bench", run_harness)):
        with simulator(50, 10, cpu=SERVER_CPU) as server, tempfile.TemporaryDirectory() as out:
            run = runner(server.target, args.accuracy_users, args.accuracy_duration, args.max_tokens, Path(out), True)
            measured = as_measured(run)
            errors = score(
                measured, ground_truth(server.target, [m.request_id for m in measured.requests if m.request_id])
            )
        worst[name] = abs_p99(errors.ttft_ms)
        send = f"{percentile(errors.send_lag_ms, 50):.2f}/{percentile(errors.send_lag_ms, 99):.2f}"
        recv = f"{percentile(errors.arrival_lag_ms, 50):.2f}/{percentile(errors.arrival_lag_ms, 99):.2f}"
        print(
            f"{name:14} {errors.matched:>6} {percentile(errors.ttft_ms, 50):>12.2f} {worst[name]:>14.2f} "
            f"{abs_p99(errors.itl_ms):>13.2f} {send:>16} {recv:>16}"
        )
    print(f"locust / harness |TTFT err| p99: {worst['locust worker'] / worst['harness bench']:.1f}x")
    print(f"\nload average after: {load_average(' ')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
