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
import dataclasses
import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.analysis import validity
from harness.analysis.summary import read_summary
from harness.commands import capacity_options
from harness.commands.options import add_server_metrics_arguments, scrape_config, users
from harness.conformance.session import CheckConfig
from harness.conformance.session import execute as execute_checks
from harness.environment import Environment
from harness.gate.evaluation import evaluate
from harness.gate.output import write as write_gate
from harness.load.bench import BenchConfig, Prompts, execute, stopped_early
from harness.load.plan import StepPlan, sweep
from harness.load.progress import Progress
from harness.load.prompts import LengthDistribution
from harness.records import rundir, truth
from harness.records.record import new_run_id
from harness.report.build import build as build_report
from harness.report.capacity import capacity_lines, search_line, trial_printer
from harness.target import traces
from harness.target.endpoint import Target
from harness.target.launch import launch_reference_server, yield_cpu
from harness.target.preflight import BUDGET_S, PreflightError, check_target

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
    load.add_argument("--sweep", type=users, default=[1, 8, 30, 32, 40], metavar="N,N,...", help="users per step")
    load.add_argument("--duration", type=float, help="measured seconds per step (default: by engine, 15 s on vllm)")
    load.add_argument("--warmup", type=float, help="warm-up seconds per step")
    load.add_argument("--input-tokens", type=int, help="prompt length in tokens")
    load.add_argument("--output-tokens", type=int, help="output length in tokens")
    load.add_argument("--no-conformance", dest="conformance", action="store_false", help="skip the conformance suite")
    load.add_argument(
        "--slo",
        type=capacity_options.slo,
        help="with --find-max-rate: the objectives, e.g. ttft_p99_ms=2000,itl_p99_ms=200",
    )
    load.add_argument("--rate", type=float, help="with --find-max-rate: the first trial's rate (default 1 req/s)")
    capacity_options.add_arguments(parser, concurrency=False, repeat=False)
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
    add_server_metrics_arguments(parser)


def _say(n: int, text: str) -> None:
    print(f"[{n}/6] {text}", flush=True)


def _conformance(args: argparse.Namespace, t: Target, directory: Path, run_id: str) -> str:
    config = CheckConfig(
        output_dir=directory / "conformance",
        run_id=run_id,
        base_url=t.base_url,
        api_key=t.api_key,
        api_key_2=t.api_key_2,
        model=t.model,
        profile=args.profile,
        concurrency_limit=args.concurrency_limit,
        request_timeout_s=300.0,
        release_timeout_s=60.0,
        quiet=True,
    )
    code = execute_checks(config)
    return "passed" if code == 0 else "FAILED" if code == 1 else f"could not run (exit {code})"


def sweep_config(args: argparse.Namespace, t: Target, defaults: Defaults, run_id: str, traced: bool) -> BenchConfig:
    """The load sweep across the limit: closed loops whose users wait out their 429s as Retry-After says."""
    template = StepPlan(
        0,
        "concurrency",
        concurrency=1,
        warmup_s=defaults.warmup_s if args.warmup is None else args.warmup,
        duration_s=defaults.duration_s if args.duration is None else args.duration,
    )
    prompts = Prompts(
        input_tokens=LengthDistribution(
            "fixed", defaults.input_tokens if args.input_tokens is None else args.input_tokens
        ),
        output_tokens=LengthDistribution(
            "fixed", defaults.output_tokens if args.output_tokens is None else args.output_tokens
        ),
        exact_lengths=not (t.preflight or {}).get("refused_fields"),
    )
    return BenchConfig(
        plans=tuple(sweep(template, concurrencies=args.sweep)),
        profile=args.profile,
        prompts=prompts,
        on_429="retry",
        max_retries=20,
        timeout_s=300.0,
        validate_chunks=True,
        trace_timing=traced,
        output_dir=args.output_dir,
        run_id=run_id,
        scrape=scrape_config(args),
    )


def search_config(args: argparse.Namespace, t: Target, defaults: Defaults, run_id: str, traced: bool) -> BenchConfig:
    """A capacity search instead of the sweep: open-loop trials whose 429s count against the objectives."""
    swept = sweep_config(args, t, defaults, run_id, traced)
    output_tokens = defaults.output_tokens if args.output_tokens is None else args.output_tokens
    tolerances = validity.Tolerances.parse(args.tolerance)
    search = capacity_options.search_config(args, args.rate or 1.0, output_tokens, False, tolerances)
    return dataclasses.replace(
        swept,
        plans=swept.plans[:1],
        on_429="fail",
        search=search,
        step_options=capacity_options.step_options(args),
    )


def _sweep(config: BenchConfig, t: Target, progress: bool) -> Path:
    if config.search is not None:
        print(f"      {search_line(config.search)}", flush=True)
    run_file, directory = execute(config, t, progress, trial_printer(config.search))
    print(f"      {sum(1 for r in run_file.requests if not r.warmup)} measured requests in {len(run_file.steps)} steps")
    if (reason := stopped_early(run_file)) is not None:
        print(f"      stopped early: {reason}", flush=True)
    return directory


def _ground_truth(t: Target, directory: Path) -> int:
    run = rundir.load(directory).run
    found = asyncio.run(traces.fetch(t.root_url, t.api_key, [r for r in run.requests if not r.warmup]))
    return truth.write(directory / truth.TRUTH_FILE, found)


def _main_job(args: argparse.Namespace, t: Target, run_id: str, defaults: Defaults, traced: bool) -> int:
    directory = args.output_dir / run_id
    if args.conformance:
        _say(2, "conformance suite")
        print(f"      conformance {_conformance(args, t, directory, run_id)}", flush=True)
    else:
        _say(2, "conformance suite skipped (--no-conformance)")
    progress = args.progress and Progress.wanted(sys.stderr, Environment.read().ci)
    one_key = dataclasses.replace(t, keys=t.keys[:1])  # the limit is per key: the sweep crosses it with one
    if args.find_max_rate:
        _say(3, "capacity search (rate)")
        _sweep(search_config(args, one_key, defaults, run_id, traced), one_key, progress)
    else:
        _say(3, f"load sweep over {','.join(map(str, args.sweep))} users (limit {args.concurrency_limit} per key)")
        _sweep(sweep_config(args, one_key, defaults, run_id, traced), one_key, progress)
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
    for line in capacity_lines(read_summary(directory / rundir.SUMMARY_FILE)):
        print(line.strip())
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
    capacity_options.search_config(args, args.rate or 1.0, 1.0, False, validity.Tolerances())  # so do bad objectives
    run_id = args.run_id or new_run_id()
    directory = args.output_dir / run_id
    if args.base_url:
        secret = args.api_key or Environment.read().api_key
        if not secret:
            print("harness run: an API key is needed (--api-key or ANYSCALE_API_KEY)", file=sys.stderr)
            return 2
        _say(1, f"target {args.base_url}")
        secrets = [secret, *([args.api_key_2] if args.api_key_2 else [])]
        target = _checked(Target.of(args.base_url, secrets, args.model or "", args.base_url))
        directory.mkdir(parents=True, exist_ok=True)
        return _main_job(args, target, run_id, DEFAULTS["url"], args.ground_truth)
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
        yield_cpu(server.process.pid)
        print(f"      {s.base_url} serving {s.model} (at lower CPU priority than the client)", flush=True)
        described = dataclasses.replace(s, description=f"reference server ({args.engine} engine)")
        # Its own server's first answer may come slowly (an engine warming up): no 10-second budget for that.
        return _main_job(args, _checked(described, budget_s=120), run_id, DEFAULTS[args.engine], True)


def _checked(target: Target, budget_s: float = BUDGET_S) -> Target:
    """The preflight of the sweep's requests (chat, exact lengths, the first key): a refusal of the extension fields
    is no stop. The second key, when there is one, goes on with the target for the conformance suite's per-key
    check, which is where a wrong one shows."""
    checked = check_target(target.base_url, target.keys[:1], target.model or None, target.description, "chat", True,
                           (), without_refused=True, budget_s=budget_s)  # fmt: skip
    print(f"      preflight: {checked.base_url} serves {checked.model}", flush=True)
    return dataclasses.replace(checked, keys=target.keys)
