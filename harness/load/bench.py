"""A load run against a target, from one frozen configuration: what `harness bench` and `harness run` execute.

`execute(config, target)` opens the client, calibrates the synthetic prompts against the target's own token counts,
prepares every request body once, drives the steps (`harness.load.runner`) and writes every record as it ends into
`<output_dir>/<run_id>/records.jsonl`. It returns the run's records; figures and verdicts come later, from them
(`harness.analysis.summary`). The configuration is parsed once at the edge (`harness.commands.bench`).

Around the load, off its event loop: what the run is measured on is read first (`harness.target.provenance`, kept in
the run line), and the target's Prometheus metrics are scraped on a thread from the run's start to its end
(`harness.target.telemetry`), into `server_metrics.jsonl` beside the records.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from harness.client import selector
from harness.client.request import ClientConfig, Endpoint, On429
from harness.client.session import Client
from harness.load.plan import StepPlan
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
from harness.load.runner import Runner, calibrate
from harness.load.stop_rule import DEFAULT_MAX_ERROR_RATE, StopRule
from harness.records.outputs import OutputSpec
from harness.records.record import RecordWriter, RunFile, RunInfo, new_run_id
from harness.records.server_metrics import SERVER_METRICS_FILE
from harness.target import provenance, telemetry
from harness.target.endpoint import Target
from harness.target.telemetry import ScrapeConfig
from schemas import ChatFamily, Profile, family_for_model

_T = TypeVar("_T")
PromptSource = Literal["synthetic", "jsonl", "sharegpt"]


@dataclass(frozen=True, slots=True)
class Prompts:
    """Where the prompts come from and how long the answers are asked to be."""

    source: PromptSource = "synthetic"
    file: Path | None = None  # the JSONL or ShareGPT file
    input_tokens: LengthDistribution = field(default_factory=lambda: LengthDistribution("fixed", 256))
    output_tokens: LengthDistribution = field(default_factory=lambda: LengthDistribution("fixed", 128))
    count: int = 1000  # distinct synthetic prompts, reused in turn
    exact_lengths: bool = True  # ignore_eos/min_tokens, so that outputs are exactly as long as asked
    calibrate: bool = True
    family: ChatFamily | None = None  # the chat template for completions (None: by the model's name)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    plans: tuple[StepPlan, ...]
    endpoint: Endpoint = "chat"
    profile: Profile = "anyscale"
    prompts: Prompts = field(default_factory=Prompts)
    on_429: On429 = "fail"
    max_retries: int = 8
    timeout_s: float = 600.0
    validate_chunks: bool = False
    trace_timing: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    output: OutputSpec | None = None  # structured outputs or tools asked of every request
    stop_error_rate: float = DEFAULT_MAX_ERROR_RATE
    seed: int = 0
    output_dir: Path = Path("reports")
    run_id: str | None = None
    uvloop: bool = False
    scrape: ScrapeConfig = field(default_factory=ScrapeConfig)  # the target's Prometheus metrics

    @property
    def exact_lengths(self) -> bool:
        """A structured answer ends where its value does: lengths forced by ignore_eos/min_tokens would mean
        nothing, so such workloads never send them."""
        return self.prompts.exact_lengths and self.output is None

    def client(self, target: Target) -> ClientConfig:
        return ClientConfig(
            base_url=target.base_url,
            model=target.model,
            endpoint=self.endpoint,
            profile=self.profile,
            on_429=self.on_429,
            max_retries=self.max_retries,
            request_timeout_s=self.timeout_s,
            validate_chunks=self.validate_chunks,
            trace_timing=self.trace_timing,
            extra_headers=self.headers,
            output=self.output,
        )


def execute(config: BenchConfig, target: Target, progress: bool = False) -> tuple[RunFile, Path]:
    """Run the load and record it; the run's records and its directory. The event loop is the configuration's."""
    environment = provenance.describe(target, config.headers)
    metrics = telemetry.resolve(config.scrape, target)
    if metrics.notice is not None:
        print(f"note: {metrics.notice}", file=sys.stderr)
    return run_async(lambda: _execute(config, target, progress, environment, metrics), config.uvloop)


async def _execute(
    config: BenchConfig,
    target: Target,
    progress_enabled: bool,
    environment: dict[str, Any],
    metrics: telemetry.Resolved,
) -> tuple[RunFile, Path]:
    family = config.prompts.family or family_for_model(target.model)
    client = Client(config.client(target), target.keys, connections=connections_for(config.plans), origin_ns=0,
                    seed=config.seed)  # fmt: skip
    async with client:
        calibration = Calibration()
        if config.prompts.calibrate and config.prompts.source != "jsonl":
            calibration, warnings = await calibrate(client, family, config.seed)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
        prepared = prepare(client.config, _items(config, calibration), family, config.exact_lengths)
        recorded = run_config(config, calibration, target) | {"server_metrics": metrics.config()}
        info = RunInfo.start(config.run_id or new_run_id(), target=_described(config, target), config=recorded,
                             environment=environment)  # fmt: skip
        client.origin_ns = info.origin_ns
        directory = config.output_dir / info.run_id
        scraper = None if metrics.url is None else telemetry.Scraper(metrics.url, config.scrape, info.origin_ns).start()
        try:
            with RecordWriter(directory / "records.jsonl", info) as writer:
                runner = Runner(client, info, prepared, writer, Progress(progress_enabled),
                                stop_rule=StopRule(config.stop_error_rate))  # fmt: skip
                await runner.execute(config.plans)
        finally:
            if scraper is not None:
                print(scraper.stop(directory / SERVER_METRICS_FILE, info.run_id).describe(), file=sys.stderr)
    return RunFile(info, runner.steps, runner.records), directory


def _described(config: BenchConfig, target: Target) -> dict[str, Any]:
    return {
        "base_url": target.base_url,
        "model": target.model,
        "profile": config.profile,
        "endpoint": config.endpoint,
        "description": target.description,
        "keys": [k.name for k in target.keys],
    }


def connections_for(plans: tuple[StepPlan, ...]) -> int:
    """Enough connections that no request ever waits for one; 0 (no limit) for an uncapped open loop."""
    sizes = [p.concurrency if p.mode == "concurrency" else p.max_concurrency for p in plans]
    return 0 if any(s is None for s in sizes) else max(s for s in sizes if s is not None) + 4


def _items(config: BenchConfig, calibration: Calibration) -> list[PromptItem]:
    prompts = config.prompts
    if prompts.source == "jsonl" and prompts.file is not None:
        return shuffled(load_jsonl(prompts.file, int(prompts.output_tokens.mean)), config.seed)
    if prompts.source == "sharegpt" and prompts.file is not None:
        return shuffled(load_sharegpt(prompts.file, calibration), config.seed)
    return synthetic(prompts.count, prompts.input_tokens, prompts.output_tokens, seed=config.seed,
                     calibration=calibration)  # fmt: skip


def run_config(config: BenchConfig, calibration: Calibration, target: Target) -> dict[str, Any]:
    """The run's configuration as its records and summary keep it (`config` in `schemas/record.json`)."""
    first = config.plans[0]
    prompts = config.prompts
    return {
        "steps": [p.label for p in config.plans],
        "duration_s": first.duration_s,
        "requests": first.requests,
        "warmup_s": first.warmup_s,
        "warmup_requests": first.warmup_requests,
        "seed": config.seed,
        "on_429": config.on_429,
        "validate_chunks": config.validate_chunks,
        "output": None if config.output is None else config.output.describe(),
        "prompts": {
            "source": prompts.source,
            "file": str(prompts.file) if prompts.file is not None else None,
            "input_tokens": None if prompts.source != "synthetic" else str(prompts.input_tokens),
            "output_tokens": None if prompts.source == "sharegpt" else str(prompts.output_tokens),
            "exact_lengths": config.exact_lengths,
            "calibration": {
                "overhead_tokens": calibration.overhead_tokens,
                "tokens_per_word": calibration.tokens_per_word,
                "measured": calibration.measured,
            },
        },
        "uvloop": config.uvloop,
        "send_ahead_ms": first.send_ahead_s * 1000,
        "stop_error_rate": config.stop_error_rate,
        "preflight": dict(target.preflight) if target.preflight is not None else None,  # None: skipped
    }


def stopped_early(run_file: RunFile) -> str | None:
    """Why the run stopped before its plan was done (the stop rule's reason on its last step line), or None."""
    return next((s.stopped_early for s in run_file.steps if s.stopped_early is not None), None)


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
