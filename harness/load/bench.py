"""A load run against a target, from one frozen configuration: what `harness bench` and `harness run` execute.

`execute(config, target)` opens the client, calibrates the synthetic prompts against the target's own token counts,
prepares every request body once (a session's turns, which carry the answers before them, as they come), drives the
steps (`harness.load.runner`) and writes every record as it ends into `<output_dir>/<run_id>/records.jsonl`.
It returns the run's records; figures and verdicts come later, from them (`harness.analysis.summary`). The
configuration is parsed once at the edge (`harness.commands.bench`). The workload is the prompts in turn, with
shared prefixes if asked (`harness.load.prompts`), a trace's requests at its times (`harness.load.traces`) or
multi-turn sessions (`harness.load.sessions`).

Around the load, off its event loop: what the run is measured on is read first (`harness.target.provenance`, kept in
the run line), and the target's Prometheus metrics are scraped on a thread from the run's start to its end
(`harness.target.telemetry`), into `server_metrics.jsonl` beside the records.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from harness.analysis.capacity import Trial
from harness.client import selector
from harness.client.request import ClientConfig, Endpoint, On429
from harness.client.session import Client
from harness.load import traces
from harness.load.conversation import ConversationFormat, Dialogue, Scripts, SessionSpec, load_dialogues
from harness.load.plan import StepPlan
from harness.load.progress import Progress
from harness.load.prompts import (
    Calibration,
    LengthDistribution,
    PromptItem,
    SharedPrefix,
    load_jsonl,
    load_sharegpt,
    prepare,
    shuffled,
    synthetic,
)
from harness.load.runner import Rotation, Runner, StepOptions, Workload, calibrate
from harness.load.search import Search, SearchConfig, judge_step
from harness.load.sessions import Sessions
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
    prefix: SharedPrefix | None = None  # synthetic prompts (and sessions) start with shared prefixes


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
    sessions: SessionSpec | None = None  # multi-turn sessions instead of single requests
    trace: traces.Replay | None = None  # a trace's requests at its times instead of prompts
    search: SearchConfig | None = None  # a capacity search: its trials instead of `plans` (their template)
    step_options: StepOptions = field(default_factory=StepOptions)
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


def execute(
    config: BenchConfig, target: Target, progress: bool = False, on_trial: Callable[[Trial], None] | None = None
) -> tuple[RunFile, Path]:
    """Run the load and record it; the run's records and its directory. The event loop is the configuration's.

    In a capacity search `on_trial` hears of each trial as it is judged.
    """
    environment = provenance.describe(target, config.headers)
    metrics = telemetry.resolve(config.scrape, target)
    if metrics.notice is not None:
        print(f"note: {metrics.notice}", file=sys.stderr)
    return run_async(lambda: _execute(config, target, progress, on_trial, environment, metrics), config.uvloop)


async def _execute(
    config: BenchConfig,
    target: Target,
    progress_enabled: bool,
    on_trial: Callable[[Trial], None] | None,
    environment: dict[str, Any],
    metrics: telemetry.Resolved,
) -> tuple[RunFile, Path]:
    family = config.prompts.family or family_for_model(target.model)
    # A search's trials reach loads no plan names in advance: no cap on connections.
    connections = 0 if config.search is not None else connections_for(config.plans)
    client = Client(config.client(target), target.keys, connections=connections, origin_ns=0, seed=config.seed)
    async with client:
        calibration = Calibration()
        if config.prompts.calibrate and config.prompts.source != "jsonl":
            calibration, warnings = await calibrate(client, family, config.seed)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
        run_id = config.run_id or new_run_id()
        workload = _workload(config, client.config, calibration, family, run_id)
        recorded = run_config(config, calibration, target) | {"server_metrics": metrics.config()}
        info = RunInfo.start(run_id, target=_described(config, target), config=recorded,
                             environment=environment)  # fmt: skip
        client.origin_ns = info.origin_ns
        directory = config.output_dir / info.run_id
        scraper = None if metrics.url is None else telemetry.Scraper(metrics.url, config.scrape, info.origin_ns).start()
        try:
            with RecordWriter(directory / "records.jsonl", info) as writer:
                options = replace(config.step_options, trial_stops=config.search is not None)
                stop_rule = StopRule(config.stop_error_rate)
                runner = Runner(client, info, (), writer, Progress(progress_enabled), stop_rule=stop_rule,
                                workload=workload, options=options)  # fmt: skip
                search = config.search
                plans = config.plans if search is None else _trials(search, config.plans[0], runner, on_trial)
                await runner.execute(plans)
        finally:
            if scraper is not None:
                print(scraper.stop(directory / SERVER_METRICS_FILE, info.run_id).describe(), file=sys.stderr)
    return RunFile(info, runner.steps, runner.records), directory


def _trials(
    search: SearchConfig, template: StepPlan, runner: Runner, on_trial: Callable[[Trial], None] | None
) -> Iterator[StepPlan]:
    """The search's trials, each judged from what the runner recorded of it once it has run."""

    def judge(trial: int) -> Trial:
        return judge_step(RunFile(runner.run, runner.steps, runner.records), runner.steps[-1], trial, search)

    return Search(search, template, judge, on_trial or (lambda _: None)).plans()


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


def _workload(
    config: BenchConfig, client: ClientConfig, calibration: Calibration, family: ChatFamily | None, run_id: str
) -> Workload:
    """What each request due sends (ValueError when prompts cannot be made or formatted)."""
    if config.trace is not None:
        items = traces.items(config.trace.selected, calibration, config.seed)
        return Rotation(prepare(client, items, family, config.exact_lengths), by_schedule=True)
    if config.sessions is not None:
        return Sessions(_scripts(config, config.sessions, calibration), client, family, config.exact_lengths, run_id)
    return Rotation(prepare(client, _items(config, calibration), family, config.exact_lengths))


def _scripts(config: BenchConfig, spec: SessionSpec, calibration: Calibration) -> Scripts:
    prompts = config.prompts
    dialogues: tuple[Dialogue, ...] = ()
    if prompts.file is not None:
        kind: ConversationFormat = "sharegpt" if prompts.source == "sharegpt" else "jsonl"
        dialogues = tuple(shuffled(load_dialogues(prompts.file, kind, calibration), config.seed))
    heads = tuple(prompts.prefix.texts(calibration, config.seed)) if prompts.prefix is not None else ()
    return Scripts(spec, prompts.input_tokens, prompts.output_tokens, calibration, config.seed, heads, dialogues)


def _items(config: BenchConfig, calibration: Calibration) -> list[PromptItem]:
    prompts = config.prompts
    if prompts.source == "jsonl" and prompts.file is not None:
        return shuffled(load_jsonl(prompts.file, int(prompts.output_tokens.mean)), config.seed)
    if prompts.source == "sharegpt" and prompts.file is not None:
        return shuffled(load_sharegpt(prompts.file, calibration), config.seed)
    return synthetic(prompts.count, prompts.input_tokens, prompts.output_tokens, seed=config.seed,
                     calibration=calibration, prefix=prompts.prefix)  # fmt: skip


def run_config(config: BenchConfig, calibration: Calibration, target: Target) -> dict[str, Any]:
    """The run's configuration as its records and summary keep it (`config` in `schemas/record.json`)."""
    first = config.plans[0]
    prompts = config.prompts
    search = config.search
    return {
        # A repeated plan's steps once (`repeat` says how often): runs repeated more or fewer times stay comparable.
        "steps": [p.label for p in config.plans if not p.repeat] if search is None else [f"search ({search.mode})"],
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
        "workload": workload(config),
        **_step_config(config),
    }


def workload(config: BenchConfig) -> dict[str, Any]:
    """What the run sends, as its records and summary keep it (`config.workload`): `kind` is `requests`,
    `sessions` or `trace`, with what shapes it."""
    if config.trace is not None:
        return config.trace.describe()
    prefix = config.prompts.prefix
    shared = {"shared_prefix": prefix.describe() if prefix is not None else None}
    if config.sessions is not None:
        return {"kind": "sessions", **config.sessions.describe(), **shared}
    return {"kind": "requests", **shared}


def _step_config(config: BenchConfig) -> dict[str, Any]:
    """What the run's configuration keeps of a search, of repeats and of how its steps ran (absent: none of it)."""
    kept: dict[str, Any] = {}
    if config.search is not None:
        kept["capacity"] = config.search.as_dict()
    repeats = {p.repeat for p in config.plans if p.repeat is not None}
    if repeats:
        kept["repeat"] = len(repeats)
    options = config.step_options
    if options.cooldown_s:
        kept["cooldown_s"] = options.cooldown_s
    if options.stop_when_saturated:
        kept["stop_when_saturated"] = True
    if any(p.warmup_auto for p in config.plans):
        kept["warmup"] = "auto"
    return kept


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
