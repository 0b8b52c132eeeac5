"""Steady state: where each step's measurement starts — at a set point, or where the load had settled.

A fixed warm-up (`--warmup S`, `--warmup-requests N`) measures from a set point. `--warmup auto` measures from where
the step reached its steady state, found after the fact by MSER-5 (White, 1997; Franklin and White, 2008): the E2E
latencies of the step's successful requests, in the order they were scheduled, are averaged in batches of 5; the
truncation is the number d of leading batches that minimizes the MSER statistic Σ_{j>d} (Z_j − Z̄_d)² / (m − d)²
over the m batch means Z — the variance of what remains over the number remaining — with d at most m / 2 (a
series that never settles loses half, and should not be trusted anyway). The measurement then starts at the first
request kept: every request of the step scheduled before it is warm-up, exactly as if the step had been told so,
and `harness.analysis.service` decides from there which requests the step measures.

E2E carries both transients of a load's start: the queue filling (its TTFT) and the batch filling (its ITL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.analysis.stats import Floats, round6
from harness.records.record import Record, RunFile, StepInfo

BATCH = 5


@dataclass(frozen=True, slots=True)
class Window:
    """Where a step's measurement starts: how it was chosen, when (ns since the run's origin), the warm-up it makes
    (seconds from the step's start) and the requests it leaves out."""

    method: Literal["fixed", "mser5"]
    start_ns: int
    warmup_s: float
    truncated: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "start_ns": self.start_ns,
            "warmup_s": round6(self.warmup_s),
            "warmup_requests": self.truncated,
        }


def mser(values: Floats, batch: int = BATCH) -> int:
    """How many leading values MSER-`batch` truncates (a multiple of `batch`; 0 for fewer than two batches)."""
    m = values.size // batch
    if m < 2:
        return 0
    means = values[: m * batch].reshape(m, batch).mean(axis=1)
    tail = means[::-1]  # suffix sums from the end: the k last batch means, for k = m, m − 1, …
    k = np.arange(1, m + 1, dtype=np.float64)
    total, squares = np.cumsum(tail), np.cumsum(tail * tail)
    spread = np.maximum(squares - total * total / k, 0.0) / (k * k)  # over the k last batches
    d = np.arange(0, m // 2 + 1)
    return int(d[np.argmin(spread[m - d - 1])]) * batch


def _found(step: StepInfo, records: Sequence[Record]) -> Window:
    """The MSER-5 window of a step asked to find its steady state."""
    done = sorted(
        (r for r in records if r.error_kind is None and r.sent_ns is not None and r.end_ns is not None),
        key=lambda r: r.scheduled_ns,
    )
    e2e = np.array([(r.end_ns or 0) - (r.sent_ns or 0) for r in done], dtype=np.float64)
    cut = mser(e2e)
    start = max(step.measure_start_ns, done[cut].scheduled_ns if cut else step.measure_start_ns)
    truncated = sum(1 for r in records if r.scheduled_ns < start)
    return Window("mser5", start, (start - step.started_ns) / 1e9, truncated)


def window(step: StepInfo, records: Sequence[Record]) -> Window:
    """Where the step's measurement starts, from its records (every request of the step, warm-up included)."""
    if step.warmup_auto:
        return _found(step, records)
    warm = sum(1 for r in records if r.warmup)
    return Window("fixed", step.measure_start_ns, (step.measure_start_ns - step.started_ns) / 1e9, warm)


def settle(run: RunFile) -> tuple[RunFile, dict[int, Window]]:
    """The run with each step's measurement starting where its window does, and the windows by step.

    Steps with a fixed warm-up are left as they ran; in a step that found its steady state, the requests
    scheduled before it become warm-up. Settling a settled run changes nothing.
    """
    windows: dict[int, Window] = {}
    steps: list[StepInfo] = []
    moved: dict[int, int] = {}
    for step in run.steps:
        found = window(step, [r for r in run.requests if r.step == step.step])
        windows[step.step] = found
        if step.warmup_auto and found.start_ns != step.measure_start_ns:
            moved[step.step] = found.start_ns
            step = dataclasses.replace(step, measure_start_ns=found.start_ns)
        steps.append(step)
    if not moved:
        return RunFile(run.run, steps, run.requests), windows
    requests = [
        dataclasses.replace(r, warmup=True)
        if r.step in moved and not r.warmup and r.scheduled_ns < moved[r.step]
        else r
        for r in run.requests
    ]
    return RunFile(run.run, steps, requests), windows
