"""`harness run`: the main job — conformance, a load sweep across the limit, the report and the gate, in one command.

With no target it starts the reference server on the vLLM engine with the embedded model (`--engine sim`: the
simulator), and stops it at the end; with `--base-url` it measures any endpoint. Steps: the conformance suite
(`harness check`), a closed-loop concurrency sweep that crosses the per-key limit (`harness bench`; 429s are
retried as Retry-After says, so that users above the limit wait instead of spinning), the server's ground truth
for the harness's own timings (reference server only), the report (`harness report`) and the gate
(`harness gate`, the shipped thresholds unless `--thresholds`). The exit code is the gate's: 0 pass, 1 fail,
2 unusable (an INVALID run, a failed start).

Before any of it, the preflight (`harness.target.preflight`) checks the target, the key, the model and one request of
the sweep's kind; a target that cannot be run against stops the job (exit 2) before anything is written for it. A
target that refuses the extension fields `ignore_eos`/`min_tokens` is swept without them, as the run's config
records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.analysis import validity
from harness.client.request import ApiKey
from harness.commands import bench, check
from harness.commands.bench import Resolved
from harness.gate.evaluation import evaluate
from harness.gate.output import write as write_gate
from harness.load.progress import Progress
from harness.records import rundir, truth
from harness.records.record import new_run_id
from harness.report.build import build as build_report
from harness.target import traces
from harness.target.launch import launch_reference_server
from harness.target.preflight import BUDGET_S, PreflightError

# The server's own memory default on CPU (0.3 of RAM) is kept: at 0.1 the worker's RSS alone (torch and the model)
# exceeds what vLLM may reserve on a 24 GiB machine, and it refuses to start ("No available memory for the cache").
VLLM_ARGS = ("--max-model-len", "2048", "--enforce-eager")
# A simulator that batches like a small GPU server: ITL grows 3% per extra running sequence.
SIM_ARGS = ("--ttft-ms", "20", "--itl-ms", "10", "--itl-batch-factor", "0.03")
VLLM_MISSING = """harness run: the vllm engine needs vLLM, which is not installed in this environment.
Install it with the project's installer (CPU build of vLLM and the embedded model):
    ./scripts/main.sh            (or: pip install -e '.[cpu]')
or measure the simulator instead:
    harness run --engine sim"""


@dataclass(frozen=True, slots=True)
class Defaults:
    """Per engine: small enough that the whole job takes minutes on 2 cores (vLLM there: ~100 output tokens/s)."""

    duration_s: float
    warmup_s: float
    input_tokens: int
    output_tokens: int


# On vLLM a closed-loop round of 30 users takes seconds: a step must last a few rounds to measure any request. On the
# simulator, requests of 64 tokens (about 1.3 s at 30 users) keep the closed loop's own re-send time (~3 ms on this
# project's 2-core VM, from a response's end to the next request's write) well inside 1 % of the throughput.
DEFAULTS = {"vllm": Defaults(15.0, 3.0, 32, 8), "sim": Defaults(4.0, 1.0, 64, 64), "url": Defaults(10.0, 2.0, 256, 64)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target (default: the reference server, started for the run)")
    target.add_argument("--engine", choices=["vllm", "sim"], default="vllm", help="the started server's engine")
    target.add_argument("--base-url", help="measure this endpoint instead (ends in /v1)")
    target.add_argument("--api-key", help="its API key (default $ANYSCALE_API_KEY)")
    target.add_argument("--api-key-2", help="a second key, to check that the limit is per key")
    target.add_argument("--model", help="default: the embedded model, or the first the endpoint lists")
    target.add_argument("--profile", choices=["anyscale", "openai"], default="anyscale")
    target.add_argument("--concurrency-limit", type=int, default=30, help="requests in flight per key (default 30)")
    target.add_argument(
        "--ground-truth", action="store_true", help="fetch ground-truth timings from an external reference server"
    )
    load = parser.add_argument_group("load")
    load.add_argument("--sweep", type=_users, default=[1, 8, 30, 32, 40], metavar="N,N,...", help="users per step")
    load.add_argument("--duration", type=float, help="measured seconds per step (default: by engine, 15 s on vllm)")
    load.add_argument("--warmup", type=float, help="warm-up seconds per step")
    load.add_argument("--input-tokens", type=int, help="prompt length in tokens")
    load.add_argument("--output-tokens", type=int, help="output length in tokens")
    load.add_argument("--no-conformance", dest="conformance", action="store_false", help="skip the conformance suite")
    out = parser.add_argument_group("report and gate")
    out.add_argument("--thresholds", type=Path, help="gate thresholds (default: the shipped gate_default.toml)")
    out.add_argument("--baseline", type=Path, help="a baseline summary.json to compare with")
    out.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="error-bound tolerance for the verdict, e.g. ttft=2ms or itl=2%% (repeatable; default: 1 ms or 1%%)",
    )
    out.add_argument("--output-dir", type=Path, default=Path("reports"))
    out.add_argument("--run-id")
    out.add_argument("--no-progress", dest="progress", action="store_false")


def _process_tree(pid: int) -> list[int]:
    """The process and its descendants (Linux /proc; empty elsewhere)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) may hold spaces; the parent pid is the second field after it.
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree = [pid]
    for current in tree:
        tree += [child for child, parent in parents.items() if parent == current]
    return tree if pid in parents else []


def _yield_cpu(pid: int, niceness: int = 10) -> None:
    """Lower the CPU priority of every thread of a started server and its engine processes.

    On a machine shared by the server and the client, the client is the instrument: it uses little CPU but must
    wake on time, or its timestamps (and the run's validity) suffer from the engine's busy threads.
    """
    for process in _process_tree(pid):
        for task in Path(f"/proc/{process}/task").glob("[0-9]*"):
            with contextlib.suppress(OSError, ValueError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


def _users(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a sweep is a comma-separated list of user counts of at least 1")
    return values


def _say(n: int, text: str) -> None:
    print(f"[{n}/6] {text}", flush=True)


def _conformance(args: argparse.Namespace, t: Resolved, key_2: str | None, directory: Path, run_id: str) -> str:
    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    argv = ["--base-url", t.base_url, "--api-key", t.keys[0].secret, "--profile", args.profile]
    argv += ["--concurrency-limit", str(args.concurrency_limit), "--release-timeout", "60", "--request-timeout", "300"]
    argv += ["--run-id", run_id, "--output-dir", str(directory / "conformance"), "-q", "--no-preflight"]
    argv += ["--api-key-2", key_2] if key_2 else []
    argv += ["--model", t.model] if t.model else []
    code = check.run(parser.parse_args(argv))
    return "passed" if code == 0 else "FAILED" if code == 1 else f"could not run (exit {code})"


def _sweep(args: argparse.Namespace, t: Resolved, defaults: Defaults, run_id: str, traced: bool) -> Path:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    argv = ["--sweep-concurrency", ",".join(map(str, args.sweep))]
    for option, given, default in (
        ("--duration", args.duration, defaults.duration_s),
        ("--warmup", args.warmup, defaults.warmup_s),
        ("--input-tokens", args.input_tokens, defaults.input_tokens),
        ("--output-tokens", args.output_tokens, defaults.output_tokens),
    ):
        argv += [option, str(default if given is None else given)]
    argv += ["--on-429", "retry", "--max-retries", "20", "--timeout", "300", "--validate-chunks"]
    argv += ["--profile", args.profile, "--output-dir", str(args.output_dir), "--run-id", run_id]
    argv += ["--trace-timing"] if traced else []
    argv += ["--no-ignore-eos"] if (t.preflight or {}).get("refused_fields") else []
    bench_args = parser.parse_args(argv)
    progress = args.progress and Progress.wanted(sys.stderr, os.environ.get("CI", "").lower() in ("1", "true"))
    # The bench's own driver, given the target resolved here (so that it is described as this job knows it).
    run_file, directory = bench.run_async(lambda: bench._bench(bench_args, t, progress), use_uvloop=False)
    print(f"      {sum(1 for r in run_file.requests if not r.warmup)} measured requests in {len(run_file.steps)} steps")
    if (reason := bench.stopped_early(run_file)) is not None:
        print(f"      stopped early: {reason}", flush=True)
    return directory


def _ground_truth(t: Resolved, directory: Path) -> int:
    run = rundir.load(directory).run
    root = t.base_url.rstrip("/").removesuffix("/v1")
    found = asyncio.run(traces.fetch(root, t.keys[0].secret, [r for r in run.requests if not r.warmup]))
    return truth.write(directory / truth.TRUTH_FILE, found)


def _job(args: argparse.Namespace, t: Resolved, key_2: str | None, defaults: Defaults, traced: bool) -> int:
    run_id = args.run_id
    directory = args.output_dir / run_id
    if args.conformance:
        _say(2, "conformance suite")
        print(f"      conformance {_conformance(args, t, key_2, directory, run_id)}", flush=True)
    else:
        _say(2, "conformance suite skipped (--no-conformance)")
    _say(3, f"load sweep over {','.join(map(str, args.sweep))} users (limit {args.concurrency_limit} per key)")
    _sweep(args, t, defaults, run_id, traced)
    if traced:
        _say(4, "ground truth from the server's traces")
        print(f"      {_ground_truth(t, directory)} traces", flush=True)
    else:
        _say(4, "ground truth: not available from this endpoint")
    _say(5, "report")
    tolerances = validity.Tolerances.parse(args.tolerance)
    written = build_report([directory], limit=args.concurrency_limit, tolerances=tolerances)
    _say(6, "gate")
    verdict = evaluate(directory / rundir.SUMMARY_FILE, args.thresholds, args.baseline)
    print(write_gate(verdict, directory / rundir.SUMMARY_FILE, None, None))
    print(f"report:   {written.html}\nmarkdown: {written.markdown}\ngate:     {directory / 'gate.md'}")
    print(f"verdict:  {verdict.word} (exit {verdict.code})")
    return verdict.code


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        code = _run(args)
    except (RuntimeError, TimeoutError, OSError, ValueError, PreflightError) as exc:
        print(f"harness run: {exc}", file=sys.stderr)
        return 2
    print(f"done in {time.monotonic() - started:.0f} s")
    return code


def _run(args: argparse.Namespace) -> int:
    validity.Tolerances.parse(args.tolerance)  # a bad one stops the job before anything starts (ValueError: exit 2)
    args.run_id = args.run_id or new_run_id()
    directory = args.output_dir / args.run_id
    if args.base_url:
        secret = args.api_key or os.environ.get("ANYSCALE_API_KEY")
        if not secret:
            print("harness run: an API key is needed (--api-key or ANYSCALE_API_KEY)", file=sys.stderr)
            return 2
        _say(1, f"target {args.base_url}")
        target = _checked(Resolved(args.base_url, (ApiKey("key-1", secret),), args.model, args.base_url))
        directory.mkdir(parents=True, exist_ok=True)
        return _job(args, target, args.api_key_2, DEFAULTS["url"], args.ground_truth)
    if args.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        print(VLLM_MISSING, file=sys.stderr)
        return 2
    directory.mkdir(parents=True, exist_ok=True)
    loading = ", loading the embedded model: a minute or two" if args.engine == "vllm" else ""
    _say(1, f"starting the reference server ({args.engine} engine{loading}); log: {directory / 'server.log'}")
    with launch_reference_server(
        engine=args.engine,
        profile=args.profile,
        concurrency_limit=args.concurrency_limit,
        model=args.model,
        extra_args=VLLM_ARGS if args.engine == "vllm" else SIM_ARGS,
        startup_timeout_s=1200,
        log_path=directory / "server.log",
        # Its traces are the run's ground truth: on asyncio's loop they take each arrival from the kernel, so the
        # server's own lateness (it runs at lower priority, beside vLLM's engine) is not charged to the client.
        event_loop="asyncio",
    ) as server:
        s = server.target
        _yield_cpu(server.process.pid)
        print(f"      {s.base_url} serving {s.model} (at lower CPU priority than the client)", flush=True)
        description = f"reference server ({args.engine} engine)"
        # Its own server's first answer may come slowly (an engine warming up): no 10-second budget for that.
        target = _checked(Resolved(s.base_url, (ApiKey("key-1", s.api_key),), s.model, description), budget_s=120)
        return _job(args, target, s.api_key_2, DEFAULTS[args.engine], True)


def _checked(target: Resolved, budget_s: float = BUDGET_S) -> Resolved:
    """The preflight of the sweep's requests (chat, exact lengths): a refusal of the extension fields is no stop."""
    checked = bench.checked(target, "chat", True, (), without_refused=True, budget_s=budget_s)
    print(f"      preflight: {checked.base_url} serves {checked.model}", flush=True)
    return checked
