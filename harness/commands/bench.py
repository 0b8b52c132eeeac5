"""`harness bench`: generate load against an endpoint, record every request, summarize and judge the run.

With no `--base-url` (and no ANYSCALE_BASE_URL) the reference server's simulator is started for the run.
Before anything is written the preflight (`harness.target.preflight`) checks the target, the keys, the model and
one request of the run's kind. The options are parsed once into a `BenchConfig` and a `Target`; the load itself is
`harness.load.bench.execute`. Writes `<output-dir>/<run-id>/records.jsonl` and `summary.json` and prints a summary
table. Exit codes: 0 some requests succeeded, 1 none did or the run stopped early, 2 it could not start.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import replace
from pathlib import Path

from harness.analysis import validity
from harness.analysis.summary import build_summary, write_summary
from harness.commands import capacity_options, traffic
from harness.commands.options import add_server_metrics_arguments, floats, header, ints, ramp, scrape_config
from harness.environment import Environment
from harness.load.bench import BenchConfig, Prompts, PromptSource, execute, stopped_early
from harness.load.plan import ARRIVALS, StepPlan, repeated, sweep
from harness.load.progress import Progress
from harness.load.prompts import LengthDistribution
from harness.load.runner import CalibrationFailed
from harness.load.stop_rule import DEFAULT_MAX_ERROR_RATE, max_error_rate
from harness.records import rundir, server_metrics
from harness.records.outputs import OutputSpec
from harness.report.capacity import capacity_lines, search_line, trial_printer
from harness.report.console import format_table
from harness.target.endpoint import Target
from harness.target.launch import launch_reference_server
from harness.target.preflight import PreflightError, check_target, first_listed_model
from schemas import CHAT_FAMILIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target (default: $ANYSCALE_BASE_URL, else the simulator is started)")
    target.add_argument("--base-url", help="ends in /v1")
    target.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="repeatable: requests are spread over the keys (default $ANYSCALE_API_KEY)",
    )
    target.add_argument("--model", help="default: the first model the target lists")
    target.add_argument(
        "--profile",
        choices=["anyscale", "openai"],
        default="anyscale",
        help="the response shapes to validate chunks against",
    )
    target.add_argument("--endpoint", choices=["chat", "completion"], default="chat")
    target.add_argument(
        "--sim-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for the started simulator, e.g. --sim-arg=--ttft-ms=50 (repeatable)",
    )
    target.add_argument("--sim-keys", type=int, choices=[1, 2], default=1, help="keys to use on the simulator")
    target.add_argument("--sim-concurrency-limit", type=int, default=30)

    load = parser.add_argument_group("load (one of)")
    modes = load.add_mutually_exclusive_group()
    modes.add_argument("--concurrency", type=int, help="closed loop with N users")
    modes.add_argument("--rate", type=float, help="open loop at R requests/s")
    modes.add_argument("--sweep-concurrency", type=ints, metavar="N,N,...", help="one closed-loop step per value")
    modes.add_argument("--sweep-rate", type=floats, metavar="R,R,...", help="one open-loop step per value")
    modes.add_argument("--ramp", type=ramp, metavar="START:END", help="open loop, rate moving linearly")
    modes.add_argument("--session-rate", type=float, metavar="R", help="open loop of multi-turn sessions: R starts/s")
    load.add_argument("--arrival", choices=ARRIVALS, default="poisson")
    load.add_argument("--burstiness", type=float, default=1.0, help="gamma shape: <1 burstier, 1 Poisson")
    load.add_argument("--max-concurrency", type=int, help="cap on requests in flight in open loop")
    load.add_argument("--duration", type=float, help="seconds per step after warm-up (default 20)")
    load.add_argument("--requests", type=int, help="measured requests per step (instead of --duration)")
    load.add_argument(
        "--warmup",
        type=capacity_options.warmup,
        help="warm-up seconds per step, not measured (default 1; a trace 0); auto: measure from the steady state "
        "MSER-5 finds",
    )
    load.add_argument("--warmup-requests", type=int, default=0, help="warm-up requests per step, not measured")
    load.add_argument("--seed", type=int, default=0)
    load.add_argument(
        "--send-ahead-ms",
        type=float,
        default=5.0,
        help="open loop: build each request this long before it is due and write it when due (0: build when due)",
    )

    behaviour = parser.add_argument_group("requests")
    behaviour.add_argument("--on-429", choices=["fail", "retry"], default="fail")
    behaviour.add_argument("--max-retries", type=int, default=8)
    behaviour.add_argument("--timeout", type=float, default=600.0, help="seconds for a whole request")
    behaviour.add_argument("--validate-chunks", action="store_true", help="check every chunk against its schema")
    behaviour.add_argument("--trace-timing", action="store_true", help="ask for ground-truth timings (x-trace-timing)")
    behaviour.add_argument(
        "--header",
        action="append",
        default=[],
        type=header,
        metavar="'NAME: VALUE'",
        help="an extra header on every request (repeatable), e.g. 'x-fault: stall:500' for the simulator",
    )
    behaviour.add_argument(
        "--response-format",
        metavar="json|schema:FILE",
        help="every request asks for JSON mode, or for output valid against the JSON Schema in FILE (answers checked)",
    )
    behaviour.add_argument(
        "--tools", type=Path, metavar="FILE", help="a JSON array of OpenAI tools sent with every request"
    )
    behaviour.add_argument(
        "--tool-choice", metavar="auto|required|none|NAME", help="with --tools (default: the server's, auto)"
    )
    behaviour.add_argument(
        "--slo",
        type=capacity_options.slo,
        help="per-request SLOs for goodput, e.g. ttft_ms=500,itl_ms=100,e2e_ms=20000; with a search, percentile "
        "objectives too, e.g. ttft_p99_ms=2000,itl_p99_ms=200",
    )
    behaviour.add_argument(
        "--stop-error-rate",
        type=max_error_rate,
        default=DEFAULT_MAX_ERROR_RATE,
        metavar="SHARE",
        help="stop early when more than this share of the last 50 requests failed, 429s aside "
        f"(default {DEFAULT_MAX_ERROR_RATE:g}; 1: never)",
    )
    behaviour.add_argument(
        "--no-preflight",
        dest="preflight",
        action="store_false",
        help="skip the checks of the target before the run (its /models, the key, the model, one test request)",
    )

    prompts = parser.add_argument_group("prompts (default: synthetic)")
    source = prompts.add_mutually_exclusive_group()
    source.add_argument("--prompts", type=Path, help="JSONL: strings, {prompt} or {messages}, optional max_tokens")
    source.add_argument("--sharegpt", type=Path, help="ShareGPT JSON conversations")
    prompts.add_argument(
        "--input-tokens",
        type=LengthDistribution.parse,
        default=LengthDistribution("fixed", 256),
        help="N, normal:MEAN,SD, uniform:LO,HI or lognormal:MEDIAN,SIGMA (default 256)",
    )
    prompts.add_argument(
        "--output-tokens",
        type=LengthDistribution.parse,
        default=LengthDistribution("fixed", 128),
        help="same forms (default 128)",
    )
    prompts.add_argument("--num-prompts", type=int, default=1000, help="distinct synthetic prompts, reused in turn")
    prompts.add_argument(
        "--no-ignore-eos",
        dest="exact_lengths",
        action="store_false",
        help="do not send ignore_eos/min_tokens (for servers that reject them)",
    )
    prompts.add_argument("--no-calibrate", dest="calibrate", action="store_false")
    prompts.add_argument(
        "--chat-template-family",
        choices=CHAT_FAMILIES,
        help="template for completion mode (default: from the model name)",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--output-dir", type=Path, default=Path("reports"))
    output.add_argument("--run-id")
    output.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop (faster; reads are then timed when the loop reads them, not by the kernel)",
    )
    output.add_argument("--no-progress", dest="progress", action="store_false")
    output.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="how large an error bound may be for a VALID run, e.g. ttft=2ms or itl=2%% (repeatable; default: the "
        "larger of 1 ms and 1%% for latencies, 1%% for throughput and load)",
    )
    traffic.add_arguments(parser)
    capacity_options.add_arguments(parser)
    add_server_metrics_arguments(parser)


def plans(args: argparse.Namespace, workload: traffic.Traffic | None = None) -> tuple[StepPlan, ...]:
    """The steps the options ask for (ValueError when a step cannot be run); a search's template when searching."""
    workload = workload or traffic.Traffic()
    searching = _search_mode(args, workload)
    duration = args.duration if args.duration is not None or args.requests is not None else 20.0
    auto = args.warmup == capacity_options.AUTO
    fixed = 0.0 if workload.trace is not None else 1.0
    warmup = 0.0 if auto else fixed if args.warmup is None else args.warmup
    template = StepPlan(
        0,
        "concurrency",
        concurrency=1,
        arrival=args.arrival,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
        warmup_s=warmup,
        warmup_requests=args.warmup_requests,
        duration_s=duration,
        requests=args.requests,
        seed=args.seed,
        send_ahead_s=args.send_ahead_ms / 1000,
        warmup_auto=auto,
    )
    if searching is not None:
        return (template,)
    return tuple(repeated(traffic.plans(workload, template, _steps(args, template)), args.repeat))


def _search_mode(args: argparse.Namespace, workload: traffic.Traffic) -> str | None:
    """The search asked for, when its load options agree with it (ValueError otherwise)."""
    found = capacity_options.mode(args)
    if found is None:
        return None
    fixed = [name for name in ("sweep_concurrency", "sweep_rate", "ramp") if getattr(args, name) is not None]
    fixed += ["concurrency"] if found == "rate" and args.concurrency is not None else []
    fixed += ["rate"] if found == "concurrency" and args.rate is not None else []
    if fixed:
        option = "--" + fixed[0].replace("_", "-")
        raise ValueError(f"--find-max-{found} chooses each trial's load itself: {option} cannot go with it")
    if workload.trace is not None or workload.sessions is not None:
        given = "--trace" if workload.trace is not None else "sessions (--turns)"
        raise ValueError(f"--find-max-{found} searches over single requests: {given} cannot go with it")
    if args.duration is not None:
        raise ValueError("a search's trials last as many requests as their percentiles need: use --requests to "
                         "lengthen them, not --duration")  # fmt: skip
    return found


def _steps(args: argparse.Namespace, template: StepPlan) -> tuple[StepPlan, ...]:
    if args.sweep_concurrency:
        return tuple(sweep(template, concurrencies=args.sweep_concurrency))
    if args.sweep_rate:
        return tuple(sweep(template, rates=args.sweep_rate))
    if args.rate is not None or args.session_rate is not None:
        return (replace(template, mode="rate", rate=args.rate if args.rate is not None else args.session_rate),)
    if args.ramp is not None:
        return (replace(template, mode="ramp", rate=args.ramp[0], rate_end=args.ramp[1]),)
    return (replace(template, concurrency=args.concurrency or 1),)


def config_of(args: argparse.Namespace, tolerances: validity.Tolerances | None = None) -> BenchConfig:
    """The options as one frozen configuration (ValueError on options that cannot go together)."""
    output = OutputSpec.parse(args.response_format, args.tools, args.tool_choice)
    if output is not None and args.endpoint != "chat":
        raise ValueError("--response-format and --tools need --endpoint chat")
    source: PromptSource = "jsonl" if args.prompts else "sharegpt" if args.sharegpt else "synthetic"
    workload = traffic.traffic_of(args)
    prompts = Prompts(
        source=source,
        file=args.prompts or args.sharegpt,
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        count=args.num_prompts,
        exact_lengths=args.exact_lengths,
        calibrate=args.calibrate,
        family=args.chat_template_family,
        prefix=workload.prefix,
    )
    steps = plans(args, workload)
    start = args.rate if capacity_options.mode(args) == "rate" else args.concurrency
    search = capacity_options.search_config(args, float(start or 1), args.output_tokens.mean, steps[0].warmup_auto,
                                            tolerances or validity.Tolerances())  # fmt: skip
    return BenchConfig(
        plans=steps,
        endpoint=args.endpoint,
        profile=args.profile,
        prompts=prompts,
        on_429=args.on_429,
        max_retries=args.max_retries,
        timeout_s=args.timeout,
        validate_chunks=args.validate_chunks,
        trace_timing=args.trace_timing,
        headers=tuple(args.header),
        output=output,
        stop_error_rate=args.stop_error_rate,
        seed=args.seed,
        output_dir=args.output_dir,
        run_id=args.run_id,
        uvloop=args.uvloop,
        sessions=workload.sessions,
        trace=workload.trace,
        search=search,
        step_options=capacity_options.step_options(args),
        scrape=scrape_config(args),
    )


def _target(args: argparse.Namespace, env: Environment, stack: contextlib.ExitStack) -> Target:
    """The endpoint given (checked by its preflight unless told not to), or a simulator started for the run."""
    base_url = args.base_url or env.base_url
    if base_url:
        secrets = args.api_key or ([env.api_key] if env.api_key else [])
        if not secrets:
            raise ValueError("an API key is needed (--api-key or ANYSCALE_API_KEY)")
        given = Target.of(base_url, secrets, args.model or "", base_url)
    else:
        server = stack.enter_context(
            launch_reference_server(profile=args.profile, concurrency_limit=args.sim_concurrency_limit,
                                    model=args.model, extra_args=args.sim_arg, keys=max(2, args.sim_keys))
        )  # fmt: skip
        given = replace(server.target, keys=server.target.keys[: args.sim_keys])
    if args.preflight:
        return check_target(given.base_url, given.keys, given.model or None, given.description, args.endpoint,
                            args.exact_lengths, args.header)  # fmt: skip
    return given if given.model else replace(given, model=first_listed_model(given.base_url, given.api_key))


def run(args: argparse.Namespace) -> int:
    env = Environment.read()
    try:
        tolerances = validity.Tolerances.parse(args.tolerance)
        config = config_of(args, tolerances)
    except ValueError as exc:
        print(f"harness bench: {exc}", file=sys.stderr)
        return 2
    progress = args.progress and Progress.wanted(sys.stderr, env.ci)
    if config.search is not None:
        print(search_line(config.search), flush=True)
    with contextlib.ExitStack() as stack:
        try:
            run_file, directory = execute(config, _target(args, env, stack), progress, trial_printer(config.search))
        except (ValueError, OSError, PreflightError, CalibrationFailed) as exc:
            print(f"harness bench: {exc}", file=sys.stderr)
            return 2
    scraped = server_metrics.read(directory / server_metrics.SERVER_METRICS_FILE)
    kept = rundir.RunDir(directory, [directory / "records.jsonl"], run_file, None, {}, None, scraped)
    summary = build_summary(kept, args.slo.per_request if args.slo else None, tolerances=tolerances)
    path = write_summary(directory, summary)
    print(format_table(summary))
    for line in capacity_lines(summary):
        print(line)
    print(f"records: {directory / 'records.jsonl'}\nsummary: {path}")
    found = summary.get("capacity")
    reason = None if found is not None else stopped_early(run_file)  # a search's trials may stop as a matter of course
    if reason is not None:
        print(f"stopped early: {reason}")
    if summary["validity"]["verdict"] == "UNUSABLE":
        return 2
    if found is not None:
        return 0 if found["status"] == "found" else 1
    return 1 if reason is not None else 0
