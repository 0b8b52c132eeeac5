"""A capacity search: the largest load — a request rate, or a number of users — that meets the objectives, found by
trials that are the steps of one run.

**Bracket.** The first trial runs at the start load (`--rate` or `--concurrency`, default 1). While every trial
meets the objectives the load doubles, until one fails. When the first fails, the load halves instead until one
meets — or until a failed trial had at most about one request in flight on average (or one user): each request had
the target nearly to itself, no lighter load will meet the objectives, and the search says so rather than going on.
**Narrow.** Then the bracket's geometric midpoint (for users, an integer strictly inside), until the largest load
that met and the smallest that failed are within `--precision` of each other (default 5 %: the answer is then
within 5 % of the capacity). Bisection takes a known number of trials: from a 2× bracket, four to 5 %.
**Budget.** Every trial counts against `--max-trials` (default 10); when it runs out first, the answer is the best
bracket so far, and the summary says so. **Trust.** A trial whose verdict is INVALID (the client may have moved its
numbers beyond their tolerance) and whose outcome those numbers could change (`harness.analysis.capacity.undecided`)
is run once more at the same load; twice so, the search stops and says why.

A trial lasts for as many measured requests as its objectives' percentiles need (`harness.analysis.objectives`),
and a rate trial at least 10 s: just past the sustainable rate a queue grows by a few per cent of the rate each
second, and a trial of two seconds would not see it — what a search finds is the largest load that meets the
objectives over a trial of that length, so longer trials (`--requests`) find a rate closer to the sustainable one.
Each trial is judged from its step's summary, built by the one summary builder exactly as the run's summary will be
(`harness.analysis.capacity`), so that the search's decisions and the answer the summary gives agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.analysis import capacity, steady, validity
from harness.analysis.capacity import Mode, Trial
from harness.analysis.objectives import Objectives
from harness.analysis.summary import summarize
from harness.load.plan import StepPlan
from harness.records.record import RunFile, StepInfo

GROWTH = 2.0
MIN_TRIAL_S = 10.0  # a rate trial sends for at least this long: a queue that grows slowly needs time to show
INVALID_REPEATS = 1  # an INVALID trial is run once more at the same load


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """What the search looks for and how hard: the objectives, the load it starts from, the precision of its answer,
    its trial budget, each trial's measured requests, and the tolerances its trials' verdicts are judged with."""

    mode: Mode
    objectives: Objectives
    start: float = 1.0
    precision: float = 0.05
    max_trials: int = 10
    trial_requests: int = 20
    tolerances: validity.Tolerances = field(default_factory=validity.Tolerances)

    def __post_init__(self) -> None:
        if not self.objectives.percentiles and self.objectives.per_request is None:
            raise ValueError("a capacity search needs objectives (--slo)")
        if not 0 < self.precision < 1:
            raise ValueError(f"the precision must be above 0 and below 100%, not {self.precision:g}")
        if self.max_trials < 1:
            raise ValueError("the trial budget (--max-trials) must be at least 1")
        if self.start <= 0 or (self.mode == "concurrency" and self.start != int(self.start)):
            raise ValueError("a search starts from a positive rate, or a whole number of users")

    def as_dict(self) -> dict[str, Any]:
        """As the run's configuration keeps it, for the summary to judge the trials again (`capacity.analyse`)."""
        return {
            "mode": self.mode,
            "slo": self.objectives.as_dict(),
            "start": self.start,
            "precision": self.precision,
            "max_trials": self.max_trials,
            "trial_requests": self.trial_requests,
        }


def _rounded(load: float, mode: Mode) -> float:
    return float(max(1, math.floor(load))) if mode == "concurrency" else float(f"{load:.4g}")


def _down(high: Trial, config: SearchConfig) -> float | None:
    """The next lighter load, when the lightest so far failed; None when no lighter one can meet the objectives."""
    idle = high.in_flight is not None and high.in_flight <= capacity.IDLE_IN_FLIGHT
    lighter = _rounded(high.load / GROWTH, config.mode)
    return None if idle or lighter >= high.load else lighter


def _midpoint(low: float, high: float, mode: Mode) -> float | None:
    if mode == "concurrency":
        users = min(max(math.floor(math.sqrt(low * high)), int(low) + 1), int(high) - 1)
        return float(users) if low < users < high else None
    middle = _rounded(math.sqrt(low * high), mode)
    return middle if low < middle < high else None


def next_load(trials: Sequence[Trial], config: SearchConfig) -> float | None:
    """The load of the next trial, or None when the search is done (the module's docstring gives the rules)."""
    if not trials:
        return config.start
    last = trials[-1]
    if last.met is None:
        invalid = 0
        for t in reversed(trials):
            if t.met is not None or t.load != last.load:
                break
            invalid += 1
        return last.load if invalid <= INVALID_REPEATS else None
    low, high = capacity.bracket(trials)
    if high is None:
        assert low is not None
        return _rounded(low.load * GROWTH, config.mode)
    if low is None:
        return _down(high, config)
    if capacity.narrow(low.load, high.load, config.precision, config.mode):
        return None
    return _midpoint(low.load, high.load, config.mode)


def trial_requests(load: float, config: SearchConfig) -> int:
    """A trial's measured requests: what its objectives need, and at least `MIN_TRIAL_S` of sending at a rate (two
    requests per user in a closed loop)."""
    floor = math.ceil(load * MIN_TRIAL_S) if config.mode == "rate" else 2 * int(load)
    return max(config.trial_requests, floor)


def trial_plan(template: StepPlan, index: int, load: float, config: SearchConfig) -> StepPlan:
    """The template's step at one load, lasting the trial's requests, with a seed of its own."""
    requests = trial_requests(load, config)
    plan = replace(template, index=index, seed=template.seed + index, requests=requests, duration_s=None)
    if config.mode == "rate":
        return replace(plan, mode="rate", rate=load, concurrency=None)
    return replace(plan, mode="concurrency", concurrency=int(load), rate=None)


def judge_step(run: RunFile, step: StepInfo, trial: int, config: SearchConfig) -> Trial:
    """One step of a run judged as a trial, from its own summary (`harness.analysis.summary`) and samples."""
    one = RunFile(run.run, [step], [r for r in run.requests if r.step == step.step])
    settled, _ = steady.settle(one)
    judged = validity.apply(summarize(settled, config.objectives.per_request), config.tolerances)
    values = capacity.samples(settled.requests, settled.steps)
    return capacity.judge(trial, judged["steps"][0], values, config.objectives, config.mode, config.tolerances)


@dataclass(slots=True)
class Search:
    """The search's plans, one trial at a time: `plans()` yields the next step only once the one before it has run
    and `judge` (given the trial's number) has judged it; `report` hears of each trial as it is judged."""

    config: SearchConfig
    template: StepPlan
    judge: Callable[[int], Trial]
    report: Callable[[Trial], None] = lambda _: None
    trials: list[Trial] = field(default_factory=list)

    def plans(self) -> Iterator[StepPlan]:
        while len(self.trials) < self.config.max_trials:
            load = next_load(self.trials, self.config)
            if load is None:
                return
            yield trial_plan(self.template, len(self.trials), load, self.config)
            trial = self.judge(len(self.trials))
            self.trials.append(trial)
            self.report(trial)
