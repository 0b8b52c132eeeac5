"""`harness bench`: generate load against an endpoint, record every request, summarize and judge the run.

With no `--base-url` (and no ANYSCALE_BASE_URL) the reference server's simulator is started for the run.
Before anything is written the preflight (`harness.target.preflight`) checks the target, the keys, the model and one
request of the run's kind. Writes `<output-dir>/<run-id>/records.jsonl` and `summary.json` and prints a summary
table. Exit codes: 0 some requests succeeded, 1 none did or the run stopped early, 2 it could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from harness.analysis import validity
from harness.analysis.slo import Slo
from harness.analysis.summary import build_summary, write_summary
from harness.client import selector
from harness.client.request import ApiKey, ClientConfig, Endpoint, request_body
from harness.client.session import Client
from harness.load.arrivals import ARRIVALS, StepPlan, sweep
from harness.load.progress import Progress
from harness.load.prompts import (
    Calibration,
    LengthDistribution,
    PromptItem,
    load_jsonl,
    load_sharegpt,
    prepare,
    shuffled,
    synthetic,
)
from harness.load.runner import CalibrationFailed, Runner, calibrate
from harness.load.stop_rule import DEFAULT_MAX_ERROR_RATE, StopRule, max_error_rate
from harness.records import rundir
from harness.records.outputs import OutputSpec
from harness.records.record import RecordWriter, RunFile, RunInfo, new_run_id
from harness.target import preflight
from harness.target.launch import launch_reference_server
from schemas import CHAT_FAMILIES, ChatFamily, family_for_model

_T = TypeVar("_T")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("a header is 'Name: value'")
    return name.strip(), value.strip()


def _ramp(text: str) -> tuple[float, float]:
    start, sep, end = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("a ramp is START:END requests per second")
    return float(start), float(end)


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
    modes.add_argument("--sweep-concurrency", type=_ints, metavar="N,N,...", help="one closed-loop step per value")
    modes.add_argument("--sweep-rate", type=_floats, metavar="R,R,...", help="one open-loop step per value")
    modes.add_argument("--ramp", type=_ramp, metavar="START:END", help="open loop, rate moving linearly")
    load.add_argument("--arrival", choices=ARRIVALS, default="poisson")
    load.add_argument("--burstiness", type=float, default=1.0, help="gamma shape: <1 burstier, 1 Poisson")
    load.add_argument("--max-concurrency", type=int, help="cap on requests in flight in open loop")
    load.add_argument("--duration", type=float, help="seconds per step after warm-up (default 20)")
    load.add_argument("--requests", type=int, help="measured requests per step (instead of --duration)")
    load.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per step, not measured")
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
        type=_header,
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
    behaviour.add_argument("--slo", type=Slo.parse, help="e.g. ttft_ms=500,itl_ms=100,e2e_ms=20000")
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


@dataclass(frozen=True, slots=True)
class Resolved:
    base_url: str
    keys: tuple[ApiKey, ...]
    model: str | None
    description: str
    preflight: Mapping[str, Any] | None = None  # what the preflight found, recorded in the run's config


def checked(
    target: Resolved,
    endpoint: Endpoint,
    exact_lengths: bool,
    headers: Sequence[tuple[str, str]],
    *,
    without_refused: bool = False,
    budget_s: float = preflight.BUDGET_S,
) -> Resolved:
    """The target after its preflight: base URL and model as found, and what was found in `preflight`.

    Raises `preflight.PreflightError` (one line) when the target cannot be run against — also when it refuses the
    extension fields, unless `without_refused` (the run then goes without them: see `refused_fields`).
    Prints the preflight's notices.
    """
    first, *others = target.keys
    others_named = [(k.name, k.secret) for k in others]
    check = preflight.Preflight(first.secret, headers, other_keys=others_named, budget_s=budget_s)
    found = check.find(target.base_url, target.model)
    config = ClientConfig(base_url=found.base_url, model=found.model, endpoint=endpoint)
    extra = preflight.probe_extra(exact_lengths)
    body = request_body(config, preflight.PROBE_MESSAGES, preflight.PROBE_PROMPT, preflight.PROBE_TOKENS, extra)
    if (refusal := check.probe(found, endpoint, body)) is not None:
        if not without_refused:
            raise refusal.error()
        found = preflight.with_refusal(found, refusal)
    for notice in found.notices:
        print(f"notice: {notice}", file=sys.stderr)
    return replace(target, base_url=found.base_url, model=found.model, preflight=found.config())


def _plans(args: argparse.Namespace) -> list[StepPlan]:
    duration = args.duration if args.duration is not None or args.requests is not None else 20.0
    template = StepPlan(
        0,
        "concurrency",
        concurrency=1,
        arrival=args.arrival,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
        warmup_s=args.warmup,
        warmup_requests=args.warmup_requests,
        duration_s=duration,
        requests=args.requests,
        seed=args.seed,
        send_ahead_s=args.send_ahead_ms / 1000,
    )
    if args.sweep_concurrency:
        return sweep(template, concurrencies=args.sweep_concurrency)
    if args.sweep_rate:
        return sweep(template, rates=args.sweep_rate)
    if args.rate is not None:
        return [replace(template, mode="rate", rate=args.rate)]
    if args.ramp is not None:
        return [replace(template, mode="ramp", rate=args.ramp[0], rate_end=args.ramp[1])]
    return [replace(template, concurrency=args.concurrency or 1)]


def _connections(plans: Sequence[StepPlan]) -> int:
    """Enough connections that no request ever waits for one; 0 (no limit) for an uncapped open loop."""
    sizes = [p.concurrency if p.mode == "concurrency" else p.max_concurrency for p in plans]
    return 0 if any(s is None for s in sizes) else max(s for s in sizes if s is not None) + 4


def _items(args: argparse.Namespace, calibration: Calibration) -> list[PromptItem]:
    if args.prompts is not None:
        return shuffled(load_jsonl(args.prompts, int(args.output_tokens.mean)), args.seed)
    if args.sharegpt is not None:
        return shuffled(load_sharegpt(args.sharegpt, calibration), args.seed)
    return synthetic(args.num_prompts, args.input_tokens, args.output_tokens, seed=args.seed, calibration=calibration)


def _output(args: argparse.Namespace) -> OutputSpec | None:
    spec = OutputSpec.parse(args.response_format, args.tools, args.tool_choice)
    if spec is not None and args.endpoint != "chat":
        raise ValueError("--response-format and --tools need --endpoint chat")
    return spec


async def _first_model(base_url: str, key: ApiKey) -> str:
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/models", headers=headers) as resp:
        body = await resp.json()
    return str(body["data"][0]["id"])


async def _bench(args: argparse.Namespace, target: Resolved, progress_enabled: bool) -> tuple[RunFile, Path]:
    plans = _plans(args)
    model = target.model or await _first_model(target.base_url.rstrip("/"), target.keys[0])
    family: ChatFamily | None = args.chat_template_family or family_for_model(model)
    output = _output(args)
    # A structured answer ends where its value does: lengths forced by ignore_eos/min_tokens would mean nothing.
    exact_lengths = args.exact_lengths and output is None
    config = ClientConfig(
        base_url=target.base_url,
        model=model,
        endpoint=args.endpoint,
        profile=args.profile,
        on_429=args.on_429,
        max_retries=args.max_retries,
        request_timeout_s=args.timeout,
        validate_chunks=args.validate_chunks,
        trace_timing=args.trace_timing,
        extra_headers=tuple(args.header),
        output=output,
    )
    client = Client(config, target.keys, connections=_connections(plans), origin_ns=0, seed=args.seed)
    async with client:
        calibration = Calibration()
        if args.calibrate and args.prompts is None:
            calibration, warnings = await calibrate(client, family, args.seed)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
        prepared = prepare(client.config, _items(args, calibration), family, exact_lengths)
        run_id = args.run_id or new_run_id()
        run_config = _run_config(args, plans, calibration, target)
        info = RunInfo.start(
            run_id,
            target={
                "base_url": target.base_url,
                "model": model,
                "profile": args.profile,
                "endpoint": args.endpoint,
                "description": target.description,
                "keys": [k.name for k in target.keys],
            },
            config=run_config,
        )
        client.origin_ns = info.origin_ns
        directory = args.output_dir / run_id
        progress = Progress(progress_enabled)
        with RecordWriter(directory / "records.jsonl", info) as writer:
            runner = Runner(client, info, prepared, writer, progress, stop_rule=StopRule(args.stop_error_rate))
            await runner.execute(plans)
    return RunFile(info, runner.steps, runner.records), directory


def _run_config(
    args: argparse.Namespace, plans: Sequence[StepPlan], calibration: Calibration, target: Resolved
) -> dict[str, Any]:
    source = "jsonl" if args.prompts else "sharegpt" if args.sharegpt else "synthetic"
    return {
        "steps": [p.label for p in plans],
        "duration_s": plans[0].duration_s,
        "requests": plans[0].requests,
        "warmup_s": args.warmup,
        "warmup_requests": args.warmup_requests,
        "seed": args.seed,
        "on_429": args.on_429,
        "validate_chunks": args.validate_chunks,
        "output": None if (spec := _output(args)) is None else spec.describe(),
        "prompts": {
            "source": source,
            "file": str(args.prompts or args.sharegpt or "") or None,
            "input_tokens": None if source != "synthetic" else str(args.input_tokens),
            "output_tokens": None if source == "sharegpt" else str(args.output_tokens),
            "exact_lengths": args.exact_lengths and _output(args) is None,
            "calibration": {
                "overhead_tokens": calibration.overhead_tokens,
                "tokens_per_word": calibration.tokens_per_word,
                "measured": calibration.measured,
            },
        },
        "uvloop": args.uvloop,
        "send_ahead_ms": args.send_ahead_ms,
        "stop_error_rate": args.stop_error_rate,
        "preflight": dict(target.preflight) if target.preflight is not None else None,  # None: skipped
    }


def _ms(dist: Mapping[str, Any], name: str) -> str:
    value = dist.get(name)
    return "-" if value is None else f"{value:.1f}"


def format_table(summary: Mapping[str, Any]) -> str:
    """The summary as a fixed-width table, one row per step."""
    head = (
        "step",
        "ok/total",
        "err%",
        "429%",
        "req/s",
        "tok/s",
        "TTFT p50/p99",
        "ITL p50/p99",
        "E2E p50/p99",
        "E2E* p99",
        "verdict",
    )
    rows = [head]
    for s in summary["steps"]:
        lat = s["latency_ms"]
        rates = s["rates"]
        rows.append(
            (
                s["label"],
                f"{s['requests']['ok']}/{s['requests']['total']}",
                "-" if rates["error"] is None else f"{rates['error']:.1%}",
                "-" if rates["rate_limited"] is None else f"{rates['rate_limited']:.1%}",
                f"{s['throughput']['requests_per_s']:.2f}",
                f"{s['throughput']['output_tokens_per_s']:.0f}",
                f"{_ms(lat['ttft'], 'p50')}/{_ms(lat['ttft'], 'p99')}",
                f"{_ms(lat['itl'], 'p50')}/{_ms(lat['itl'], 'p99')}",
                f"{_ms(lat['e2e'], 'p50')}/{_ms(lat['e2e'], 'p99')}",
                _ms(lat["e2e_from_scheduled"], "p99"),
                s.get("validity", {}).get("verdict", "-"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    run_validity = summary.get("validity", {})
    lines.append("")
    lines.append("latencies in ms; E2E* is measured from the scheduled time")
    lines.append(f"run {summary['run_id']}: {run_validity.get('verdict', '-')}")
    word = run_validity.get("verdict", "INVALID")
    lines += [f"  {word}: {r}" for r in run_validity.get("reasons", [])]
    lines += [f"  warning: {w}" for w in run_validity.get("warnings", [])]
    return "\n".join(lines)


def freeze_heap() -> None:
    """Leave everything start-up allocated out of every later garbage collection.

    After the imports (pandas, aiohttp, …) a full collection walks ~70,000 objects — 45 ms on a 2-core VM here —
    and it comes whenever enough new objects have survived, stopping the event loop in the middle of the timestamps.
    Frozen objects are never walked again; what the run itself allocates is collected as usual.
    """
    gc.collect()
    gc.freeze()


def run_async(main: Callable[[], Coroutine[Any, Any, _T]], use_uvloop: bool) -> _T:
    """Run the load on uvloop, or on asyncio's own loop with the timed selector that tightens the error bounds."""
    freeze_heap()
    if use_uvloop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    with asyncio.Runner(loop_factory=selector.new_event_loop) as runner:
        return runner.run(main())


def run(args: argparse.Namespace) -> int:
    base_url = args.base_url or os.environ.get("ANYSCALE_BASE_URL")
    secrets = args.api_key or ([os.environ["ANYSCALE_API_KEY"]] if os.environ.get("ANYSCALE_API_KEY") else [])
    progress = args.progress and Progress.wanted(sys.stderr, os.environ.get("CI", "").lower() in ("1", "true"))
    try:
        _plans(args)
        tolerances = validity.Tolerances.parse(args.tolerance)
    except ValueError as exc:
        print(f"harness bench: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        if base_url:
            if not secrets:
                print("harness bench: an API key is needed (--api-key or ANYSCALE_API_KEY)", file=sys.stderr)
                return 2
            keys = tuple(ApiKey(f"key-{i}", s) for i, s in enumerate(secrets, start=1))
            target = Resolved(base_url, keys, args.model, base_url)
        else:
            limit = args.sim_concurrency_limit
            server = stack.enter_context(
                launch_reference_server(
                    profile=args.profile,
                    concurrency_limit=limit,
                    model=args.model,
                    extra_args=args.sim_arg,
                    keys=max(2, args.sim_keys),
                )
            )
            t = server.target
            secrets = [t.api_key] + ([t.api_key_2] if args.sim_keys > 1 and t.api_key_2 else [])
            keys = tuple(ApiKey(f"key-{i}", s) for i, s in enumerate(secrets, start=1))
            target = Resolved(t.base_url, keys, t.model, t.description)
        try:
            if args.preflight:
                target = checked(target, args.endpoint, args.exact_lengths, args.header)
            run_file, directory = run_async(lambda: _bench(args, target, progress), args.uvloop)
        except (ValueError, OSError, preflight.PreflightError, CalibrationFailed) as exc:
            print(f"harness bench: {exc}", file=sys.stderr)
            return 2
    kept = rundir.RunDir(directory, [directory / "records.jsonl"], run_file, None, {}, None)
    summary = build_summary(kept, args.slo, tolerances=tolerances)
    path = write_summary(directory, summary)
    print(format_table(summary))
    print(f"records: {directory / 'records.jsonl'}\nsummary: {path}")
    if summary["validity"]["verdict"] == "UNUSABLE":
        if (reason := stopped_early(run_file)) is not None:
            print(f"stopped early: {reason}")
        return 2
    if (reason := stopped_early(run_file)) is not None:
        print(f"stopped early: {reason}")
        return 1
    return 0


def stopped_early(run_file: RunFile) -> str | None:
    """Why the run stopped before its plan was done (the stop rule's reason on its last step line), or None."""
    return next((s.stopped_early for s in run_file.steps if s.stopped_early is not None), None)
