"""A run: its steps driven one after another through one client, every request recorded as it ends.

The runner owns the order of things — calibrate, then for each step: start the meters, drive the load, write the
step line — and nothing else: load shapes are `harness.load.plan` and `harness.load.loops`, what each request due
sends is the run's `Workload` (prompts in turn by default, or a trace's request by its place in the schedule; a
whole conversation, `harness.load.sessions`), requests `harness.client.session`, metrics come later from the
records. A run whose latest requests mostly fail stops early (`harness.load.stop_rule`): the step that tripped the
rule ends with the requests in flight, its step line says why, and no later step runs.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.client import selector
from harness.client.release import Release
from harness.client.session import Client
from harness.load.loops import StepClock, run_step
from harness.load.meters import CpuMeter, LoopMonitor
from harness.load.plan import StepPlan
from harness.load.progress import Progress
from harness.load.prompts import Calibration, PreparedPrompt, calibration_prompts, fit_calibration, prepare
from harness.load.stop_rule import StopRule
from harness.load.watch import SaturationWatch
from harness.records.record import Record, RecordWriter, RunInfo, StepInfo
from schemas import ChatFamily


class CalibrationFailed(RuntimeError):
    """A calibration request failed: the run would fail the same way, so it does not start."""


async def calibrate(client: Client, family: ChatFamily | None, seed: int) -> tuple[Calibration, list[str]]:
    """Ask the target how many tokens the calibration prompts are; warnings come back as messages.

    Raises CalibrationFailed, naming the error and the fix, when a calibration request fails.
    """
    tokens: list[int | None] = []
    for i, prepared in enumerate(prepare(client.config, calibration_prompts(seed), family, exact_lengths=False)):
        record = await client.send(prepared.body, Record(index=i, endpoint=client.config.endpoint))
        if record.error_kind is not None:
            raise CalibrationFailed(
                f"calibration request failed: {record.error_kind}: {record.error_detail} "
                "(the run would fail alike; --no-calibrate skips calibration)"
            )
        tokens.append(record.prompt_tokens)
    calibration = fit_calibration(tokens)
    if not calibration.measured:
        return calibration, ["the target reported no usable prompt_tokens; assuming one token per word"]
    return calibration, []


@dataclass(frozen=True, slots=True)
class Due:
    """A request the step's loop made due: its step, its place in the step's schedule, when it was due
    (perf_counter_ns), whether it is warm-up, the release it is to be written at (or None: at once) and its user
    (a closed loop's; None in an open loop)."""

    plan: StepPlan
    seq: int
    scheduled_ns: int
    warm: bool
    release: Release | None
    user: int | None


class Workload(Protocol):
    """What a request due sends: called by the step's loop for each one, it sends through the runner."""

    async def fire(self, runner: Runner, due: Due) -> None: ...


class Rotation:
    """The prompts in turn: the run's n-th request sends prompt n (modulo their number), or with `by_schedule` the
    n-th of its step's schedule does (a trace's request n: `harness.load.traces`)."""

    def __init__(self, prompts: Sequence[PreparedPrompt], by_schedule: bool = False) -> None:
        if not prompts:
            raise ValueError("no prompts to send")
        self.prompts = prompts
        self.by_schedule = by_schedule

    async def fire(self, runner: Runner, due: Due) -> None:
        record = runner.record(due.plan, due.scheduled_ns, due.warm, due.user)
        prompt = self.prompts[(due.seq if self.by_schedule else record.index) % len(self.prompts)]
        runner.describe(record, prompt)
        await runner.send(record, prompt.body, due.release)


@dataclass(frozen=True, slots=True)
class StepOptions:
    """How the runner treats each step: a cool-down before it (after the first), a live saturation watch that stops
    its sending (`harness.load.watch`), and whether the stop rule ends only the step (a search's trial) or the run."""

    cooldown_s: float = 0.0
    stop_when_saturated: bool = False
    trial_stops: bool = False


class Runner:
    def __init__(
        self,
        client: Client,
        run: RunInfo,
        prompts: Sequence[PreparedPrompt],
        writer: RecordWriter,
        progress: Progress,
        lag_interval_s: float = 0.02,
        stop_rule: StopRule | None = None,
        workload: Workload | None = None,
        options: StepOptions | None = None,
    ) -> None:
        self.client = client
        self.run = run
        self.workload: Workload = workload if workload is not None else Rotation(prompts)
        self.writer = writer
        self.progress = progress
        self.records: list[Record] = []
        self.steps: list[StepInfo] = []
        self._next_index = 0
        self._monitor = LoopMonitor(lag_interval_s)
        self._cpu = CpuMeter()
        self._stop_rule = stop_rule if stop_rule is not None else StopRule()
        self._halt = asyncio.Event()
        self.options = options if options is not None else StepOptions()
        self._step_halt = asyncio.Event()
        self._watch: SaturationWatch | None = None

    @property
    def stopped_early(self) -> str | None:
        """Why the run stopped before its plan was done, or None."""
        return self._stop_rule.reason

    @property
    def halted(self) -> bool:
        """No further request of the step is to be sent (the stop rule tripped)."""
        return self._step_halt.is_set()

    @staticmethod
    def _wake_ns() -> int:
        """The largest wake-up latency the loop's selector measured since the last call (0: no timed selector)."""
        timed = selector.of(asyncio.get_running_loop())
        return timed.take_wake_max() if timed is not None else 0

    async def execute(self, plans: Iterable[StepPlan]) -> None:
        """Run the steps in order; `plans` may be a generator that chooses each step from those before it (a
        capacity search: `harness.load.search`), since the next is drawn only once the previous one has ended."""
        self._monitor.start()
        self.progress.start()
        try:
            for plan in plans:
                await self.step(plan)
                if self._halt.is_set():
                    break
        finally:
            await self.progress.stop()
            await self._monitor.stop()

    async def step(self, plan: StepPlan) -> StepInfo:
        """Run one step (after the cool-down, when one came before it) and return its step line."""
        if self.steps and self.options.cooldown_s > 0:
            await asyncio.sleep(self.options.cooldown_s)
        await self._step(plan)
        return self.steps[-1]

    async def _step(self, plan: StepPlan) -> None:
        self.progress.step(f"step {plan.index + 1}: {plan.label}")
        self._monitor.take()
        self._cpu.take()
        self._wake_ns()
        if self.options.trial_stops:  # a search's trial that fails ends itself, not the search
            self._stop_rule = self._stop_rule.renewed()
        self._step_halt = asyncio.Event()
        if self._halt.is_set():
            self._step_halt.set()

        async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
            await self.workload.fire(self, Due(plan, seq, scheduled_ns, warm, release, user))

        watching = self._watched(plan)
        try:  # the watch ends with the step's sending: a queue draining after it is no queue growing
            clock: StepClock = await run_step(
                plan, fire, self._step_halt, None if watching is None else watching.cancel
            )
        finally:
            if watching is not None:
                watching.cancel()
                await asyncio.wait([watching])
        info = self._step_line(plan, clock)
        self.steps.append(info)
        self.writer.write_step(info)
        # Between steps nothing is timed: collect now, and leave what survives (the step's records) out of every
        # later collection, which would otherwise walk all of them again in the middle of the next step's timestamps.
        gc.collect()
        gc.freeze()

    def _watched(self, plan: StepPlan) -> asyncio.Task[None] | None:
        """The step's live saturation watch, when asked for, running until the step stops sending (an open loop's:
        a closed loop's users hold their in-flight count constant, which no queue can make grow)."""
        self._watch = None
        if not self.options.stop_when_saturated or plan.mode == "concurrency":
            return None
        started = time.perf_counter_ns() - self.run.origin_ns
        measured = started + round((plan.warmup_s + plan.send_ahead_s) * 1e9)
        self._watch = SaturationWatch(started, measured, self.run.origin_ns)
        return asyncio.get_running_loop().create_task(self._watch.run(self._step_halt))

    def record(self, plan: StepPlan, scheduled_ns: int, warm: bool, user: int | None) -> Record:
        """The record of the run's next request, due at `scheduled_ns` (perf_counter_ns)."""
        index = self._next_index
        self._next_index += 1
        return Record(
            run_id=self.run.run_id,
            step=plan.index,
            index=index,
            user=user,
            warmup=warm,
            endpoint=self.client.config.endpoint,
            scheduled_ns=scheduled_ns - self.run.origin_ns,
        )

    @staticmethod
    def describe(record: Record, prompt: PreparedPrompt) -> None:
        """What the record's request asked for, from its prepared prompt."""
        record.input_tokens_target = prompt.input_tokens_target
        record.max_tokens = prompt.max_tokens
        record.prefix_group = prompt.prefix_group

    async def send(
        self,
        record: Record,
        body: bytes,
        release: Release | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        text: list[str] | None = None,
    ) -> Record:
        """Send one request and record it, whatever becomes of it (`Client.send` says what the options do)."""
        self.progress.sent()
        if self._watch is not None:
            self._watch.add(record)
        try:
            return await self.client.send(body, record, release, headers=headers, text=text)
        finally:
            self.records.append(record)
            self.writer.write(record)
            self.progress.finished(record)
            if self._stop_rule.observe(record) is not None:
                self._step_halt.set()
                if not self.options.trial_stops:
                    self._halt.set()

    def _step_line(self, plan: StepPlan, clock: StepClock) -> StepInfo:
        """The step as it ran, with what the meters saw of the client meanwhile."""
        origin = self.run.origin_ns
        return StepInfo(
            run_id=self.run.run_id,
            step=plan.index,
            label=plan.label,
            mode=plan.mode,
            started_ns=clock.started_ns - origin,
            measure_start_ns=clock.measure_start_ns - origin,
            dispatch_end_ns=max(clock.dispatch_end_ns, clock.measure_start_ns) - origin,
            ended_ns=clock.ended_ns - origin,
            concurrency=plan.concurrency,
            rate=plan.rate,
            rate_end=plan.rate_end,
            arrival=plan.arrival if plan.mode != "concurrency" else None,
            burstiness=plan.burstiness if plan.arrival == "gamma" and plan.mode != "concurrency" else None,
            max_concurrency=plan.max_concurrency,
            warmup_s=plan.warmup_s,
            duration_s=plan.duration_s,
            requests=plan.requests,
            cpu_s=self._cpu.take(),
            loop_lag_ns=self._monitor.take(),
            loop_lag_interval_ns=self._monitor.interval_ns,
            wake_ns=self._wake_ns(),
            stopped_early=self._stop_rule.reason,
            warmup_auto=plan.warmup_auto,
            repeat=plan.repeat,
            saturated_ns=self._watch.found_ns if self._watch is not None else None,
        )
