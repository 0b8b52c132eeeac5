"""Was the client the bottleneck? Watch the event loop and the CPU during a run, then judge each step.

A load generator that cannot keep up does not fail: it quietly sends less than asked and stamps times late. So
the run watches itself — how late the event loop wakes (`LoopMonitor`), how much CPU the client burns
(`CpuMeter`) — and the summary's dispatch delays and achieved rates are checked against limits. A step that breaks
one is INVALID, with the reason; the run is INVALID when any step is, and the gate refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["VALID", "INVALID"]


class LoopMonitor:
    """Samples event-loop lag: how much later than asked a short sleep wakes up."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_ns = round(interval_s * 1e9)
        self.samples: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        interval = self.interval_ns / 1e9
        while True:
            asked = time.perf_counter_ns()
            await asyncio.sleep(interval)
            self.samples.append(max(0, time.perf_counter_ns() - asked - self.interval_ns))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def take(self) -> list[int]:
        """The samples since the last call."""
        samples, self.samples = self.samples, []
        return samples


class CpuMeter:
    """CPU time of this process (all threads) since the last `take`."""

    def __init__(self) -> None:
        self._last = time.process_time()

    def take(self) -> float:
        now = time.process_time()
        used, self._last = now - self._last, now
        return used


@dataclass(frozen=True, slots=True)
class Limits:
    """Where a client stops being trustworthy. Loop lag includes the ~1 ms granularity of loop timers."""

    loop_lag_p99_ms: float = 10.0
    loop_lag_max_ms: float = 250.0
    dispatch_delay_p99_ms: float = 10.0
    achieved_rate_min_ratio: float = 0.99
    cpu_utilization_max: float = 0.9
    cpu_utilization_warn: float = 0.75
    loop_lag_p99_warn_ms: float = 5.0


def judge(table: dict[str, Any], limits: Limits, open_loop: bool) -> dict[str, Any]:
    """The verdict on one step's (or the whole run's) summary table, with its reasons and warnings."""
    reasons: list[str] = []
    warnings: list[str] = []
    load = table["load"]
    lag = load["loop_lag_ms"]
    if lag["count"]:
        if lag["p99"] > limits.loop_lag_p99_ms:
            reasons.append(f"event-loop lag p99 {lag['p99']:.1f} ms > {limits.loop_lag_p99_ms:g} ms")
        elif lag["p99"] > limits.loop_lag_p99_warn_ms:
            warnings.append(f"event-loop lag p99 {lag['p99']:.1f} ms")
        if lag["max"] > limits.loop_lag_max_ms:
            reasons.append(f"event loop blocked for {lag['max']:.0f} ms (> {limits.loop_lag_max_ms:g} ms)")
    delay = table["latency_ms"]["dispatch_delay"]
    if delay["count"] and delay["p99"] > limits.dispatch_delay_p99_ms:
        reasons.append(f"dispatch delay p99 {delay['p99']:.1f} ms > {limits.dispatch_delay_p99_ms:g} ms")
    scheduled, achieved = table["scheduled_rate"], table["achieved_rate"]
    if open_loop and scheduled and achieved is not None and achieved < scheduled * limits.achieved_rate_min_ratio:
        reasons.append(f"sent {achieved:.2f} req/s of the {scheduled:.2f} req/s scheduled")
    cpu = load["cpu_utilization"]
    if cpu is not None:
        if cpu > limits.cpu_utilization_max:
            reasons.append(f"client CPU at {cpu:.0%} of a core")
        elif cpu > limits.cpu_utilization_warn:
            warnings.append(f"client CPU at {cpu:.0%} of a core")
    verdict: Verdict = "INVALID" if reasons else "VALID"
    return {"verdict": verdict, "reasons": reasons, "warnings": warnings}


def apply(summary: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Add the verdicts to a summary from `harness.metrics.summarize`: per step, and for the run."""
    reasons: list[str] = []
    warnings: list[str] = []
    for step in summary["steps"]:
        step["validity"] = judge(step, limits, step["mode"] != "concurrency")
        reasons += [f"step {step['step']} ({step['label']}): {r}" for r in step["validity"]["reasons"]]
        warnings += [f"step {step['step']} ({step['label']}): {w}" for w in step["validity"]["warnings"]]
    verdict: Verdict = "INVALID" if reasons else "VALID"
    summary["validity"] = {
        "verdict": verdict,
        "reasons": reasons,
        "warnings": warnings,
        "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
    }
    return summary
