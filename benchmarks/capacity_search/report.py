"""The benchmark's results as its section of `benchmarks/RESULTS.md` and as lines for the terminal."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from benchmarks.capacity_search.model import SimModel
from benchmarks.capacity_search.runs import Searched, Stepped
from harness.analysis.shape import Summary
from harness.report.capacity import trials_table
from harness.report.markdown import md_table

SECTION = "## Capacity search: found against the simulator's true capacity (issue 21)"
TOLERANCE = 0.05  # the goal: within 5 % …
MAX_TRIALS = 10  # … in at most 10 trials
DETECT_S = 10.0  # a step at 2× capacity flagged within 10 s


@dataclass(frozen=True, slots=True)
class Truthful:
    """A search on the simulator and the true capacity for its SLO."""

    searched: Searched
    true: float

    @property
    def ratio(self) -> float | None:
        answer = self.searched.answer
        return None if answer is None else answer / self.true

    @property
    def met_goal(self) -> bool:
        return self.ratio is not None and abs(self.ratio - 1) <= TOLERANCE and self.searched.trials <= MAX_TRIALS


def search_table(results: Sequence[Truthful]) -> str:
    lines = [
        "| SLO | true capacity (model) | found | found / true | interval | trials (used) | status | wall time | goal |",
        "|---|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for r in results:
        found = r.searched.capacity
        interval = found["interval"]
        high = "∞" if interval["high"] is None else f"{interval['high']:g}"
        ratio = "–" if r.ratio is None else f"{r.ratio:.3f}"
        answer = "–" if r.searched.answer is None else f"{r.searched.answer:g}"
        lines.append(
            f"| `{r.searched.slo}` | {r.true:.3f} | {answer} | {ratio} | [{interval['low']:g}, {high}] | "
            f"{r.searched.trials} ({r.searched.used}) | {found['status']} | {r.searched.wall_s:.0f} s | "
            f"{'met' if r.met_goal else 'MISSED'} |"
        )
    return "\n".join(lines)


def saturation_table(over: Sequence[Stepped], under: Sequence[Stepped]) -> str:
    lines = ["| step | runs | flagged SATURATED | stopped within 10 s | stopped after (median / max) |",
             "|---|---:|---:|---:|---|"]  # fmt: skip
    for name, steps in (("2× capacity", over), ("0.7× capacity", under)):
        if not steps:
            continue
        stops = [s.stopped_at_s for s in steps if s.stopped_at_s is not None]
        timing = "–" if not stops else f"{statistics.median(stops):.1f} / {max(stops):.1f} s"
        quick = sum(1 for t in stops if t <= DETECT_S)
        rate = steps[0].rate
        lines.append(f"| {name} ({rate:.3g} req/s, Poisson) | {len(steps)} | {sum(s.saturated for s in steps)} | "
                     f"{quick} | {timing} |")  # fmt: skip
    return "\n".join(lines)


def saturation_met(over: Sequence[Stepped], under: Sequence[Stepped]) -> bool:
    quick = all(s.stopped_at_s is not None and s.stopped_at_s <= DETECT_S for s in over)
    return quick and not any(s.saturated for s in under)


def vllm_part(searched: Searched | None, tolerance: str | None) -> str:
    if searched is None:
        return "vLLM: not run this time (`--skip-vllm`)."
    table = trials_table(cast(Summary, searched.summary))
    found = searched.capacity
    return (
        f"**vLLM engine, embedded SmolLM2-135M** — `{searched.slo}`: {found['message']} (status {found['status']}, "
        f"interval [{found['interval']['low']:g}, {found['interval']['high'] or '∞'}] req/s, {searched.trials} "
        f"trials, {searched.wall_s:.0f} s; "
        + (f"`--tolerance {tolerance}`" if tolerance else "default tolerances")
        + "; the engine shares the client's two cores). "
        "No latency model to compare with: the trials in order —\n\n" + ("" if table is None else md_table(table))
    )


def section(header: str, model: SimModel, results: Sequence[Truthful], over: Sequence[Stepped],
            under: Sequence[Stepped], vllm: Searched | None, vllm_tolerance: str | None) -> str:  # fmt: skip
    ok = all(r.met_goal for r in results)
    parts = [
        SECTION,
        "",
        header,
        "",
        f"Simulator: {model.describe()}. Searches: constant arrivals from 4 req/s, `--precision 2%`, saturated "
        "trials stopped (`--stop-when-saturated`), the default budget (10 trials); the true capacity is computed "
        "from the model alone (`benchmarks/capacity_search/model.py`).",
        "",
        search_table(results),
        "",
        f"Goal (within {TOLERANCE:.0%} in at most {MAX_TRIALS} trials, each SLO): {'met' if ok else 'MISSED'}.",
        "",
        saturation_table(over, under),
        "",
        f"Goal (2× flagged within {DETECT_S:g} s, 0.7× never): "
        f"{'met' if saturation_met(over, under) else 'MISSED'}; false alarms at 0.7×: "
        f"{sum(s.saturated for s in under)} of {len(under)}.",
        "",
        vllm_part(vllm, vllm_tolerance),
        "",
    ]
    return "\n".join(parts)
