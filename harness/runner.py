"""A run: its steps driven one after another through one client, every request recorded as it ends.

The runner owns the order of things — calibrate, then for each step: start the meters, drive the load, write the
step line — and nothing else: load shapes are `harness.arrivals`, requests `harness.client`, metrics come later
from the records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from harness import selector
from harness.arrivals import StepClock, StepPlan, run_step
from harness.client import Client, request_body
from harness.progress import Progress
from harness.prompts import Calibration, PromptItem, calibration_prompts, exact_length_body, fit_calibration
from harness.records import Record, RecordWriter, RunInfo, StepInfo
from harness.release import Release
from harness.validity import CpuMeter, LoopMonitor
from schemas import ChatFamily


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A request body built once, with what it asked for."""

    body: bytes
    input_tokens_target: int | None
    max_tokens: int | None


def prepare(
    client: Client, items: Sequence[PromptItem], family: ChatFamily | None, exact_lengths: bool
) -> list[PreparedPrompt]:
    endpoint = client.config.endpoint
    prepared = []
    for item in items:
        shaped = item.for_endpoint(endpoint, family)
        extra = exact_length_body(shaped.max_tokens) if exact_lengths else None
        body = request_body(client.config, shaped.messages, shaped.prompt, shaped.max_tokens, extra)
        prepared.append(PreparedPrompt(body, shaped.input_tokens_target, shaped.max_tokens))
    return prepared


async def calibrate(client: Client, family: ChatFamily | None, seed: int) -> tuple[Calibration, list[str]]:
    """Ask the target how many tokens the calibration prompts are; problems come back as messages."""
    tokens: list[int | None] = []
    problems: list[str] = []
    for i, prepared in enumerate(prepare(client, calibration_prompts(seed), family, exact_lengths=False)):
        record = await client.send(prepared.body, Record(index=i, endpoint=client.config.endpoint))
        if record.error_kind is not None:
            problems.append(f"calibration request failed: {record.error_kind}: {record.error_detail}")
        tokens.append(record.prompt_tokens)
    calibration = fit_calibration(tokens)
    if not calibration.measured and not problems:
        problems.append("the target reported no usable prompt_tokens; assuming one token per word")
    return calibration, problems


class Runner:
    def __init__(
        self,
        client: Client,
        run: RunInfo,
        prompts: Sequence[PreparedPrompt],
        writer: RecordWriter,
        progress: Progress,
        lag_interval_s: float = 0.02,
    ) -> None:
        if not prompts:
            raise ValueError("no prompts to send")
        self.client = client
        self.run = run
        self.prompts = prompts
        self.writer = writer
        self.progress = progress
        self.records: list[Record] = []
        self.steps: list[StepInfo] = []
        self._next_index = 0
        self._monitor = LoopMonitor(lag_interval_s)
        self._cpu = CpuMeter()

    @staticmethod
    def _wake_ns() -> int:
        """The largest wake-up latency the loop's selector measured since the last call (0: no timed selector)."""
        timed = selector.of(asyncio.get_running_loop())
        return timed.take_wake_max() if timed is not None else 0

    async def execute(self, plans: Sequence[StepPlan]) -> None:
        self._monitor.start()
        self.progress.start()
        try:
            for plan in plans:
                await self._step(plan)
        finally:
            await self.progress.stop()
            await self._monitor.stop()

    async def _step(self, plan: StepPlan) -> None:
        origin = self.run.origin_ns
        endpoint = self.client.config.endpoint
        self.progress.step(f"step {plan.index + 1}: {plan.label}")
        self._monitor.take()
        self._cpu.take()
        self._wake_ns()

        async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
            index = self._next_index
            self._next_index += 1
            prompt = self.prompts[index % len(self.prompts)]
            record = Record(
                run_id=self.run.run_id,
                step=plan.index,
                index=index,
                user=user,
                warmup=warm,
                endpoint=endpoint,
                scheduled_ns=scheduled_ns - origin,
                input_tokens_target=prompt.input_tokens_target,
                max_tokens=prompt.max_tokens,
            )
            self.progress.sent()
            try:
                await self.client.send(prompt.body, record, release)
            finally:
                self.records.append(record)
                self.writer.write(record)
                self.progress.finished(record)

        clock: StepClock = await run_step(plan, fire)
        info = StepInfo(
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
        )
        self.steps.append(info)
        self.writer.write_step(info)
