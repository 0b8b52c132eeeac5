"""The capacity of a target: the largest load that meets the objectives, from the trials of a search.

A capacity search (`harness.load.search`) runs its trials as the steps of one run. Each trial is judged from its
step's summary — the one `harness.analysis.summary` builds — against the objectives (`harness.analysis.objectives`):
- a trial whose verdict is INVALID (the client may have moved its numbers beyond their tolerance) is not used,
  unless none of the numbers out of tolerance could change its outcome (`undecided`): every one is a latency
  figure that no objective reads, or an objective's figure farther from its limit than the client's bound on it —
  the offered load and throughput out of tolerance, or per-request objectives (goodput), always leave it unused;
- a SATURATED one (`harness.analysis.saturation`: its queue kept growing) fails, whatever its percentiles say;
- otherwise it meets the objectives when each holds (a step with no successful request meets none).
Each judgement also says whether it is **certain**: every objective's distribution-free confidence bound on the
side of its verdict (one-sided, 95 %: order statistics for a percentile, Clopper–Pearson for the goodput share)
holds it there — a pass whose upper bound is within the limit, a failure whose lower bound is beyond it.

**The answer** is the largest load that met, below the smallest that failed: the two bracket the capacity. Its
**interval** widens that bracket by the trials' uncertainty: from the largest load whose pass was certain (0 when
none was) to the smallest whose failure was certain (open when none was). The search's **status**: `found` (the
bracket is within the precision asked), `budget` (the trial budget ran out first: the best bracket so far),
`none_met` (no load tried met the objectives; when the lowest had about one request in flight at a time, no lower
load will either), `all_met` (no load tried failed: the capacity is at least the answer) or `invalid` (the search
stopped on a trial the client could not measure within its error bounds).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from scipy import stats

from harness.analysis import service, validity
from harness.analysis.frame import itl_samples, request_frame
from harness.analysis.objectives import CONFIDENCE, Objective, Objectives
from harness.analysis.regression import Comparison
from harness.analysis.shape import StepSummary, Validity
from harness.analysis.stats import Floats, round6
from harness.records.record import Record, RunFile, StepInfo

Mode = Literal["rate", "concurrency"]
Status = Literal["found", "budget", "none_met", "all_met", "invalid"]
IDLE_IN_FLIGHT = 1.0  # requests in flight on average at or below which a load is as light as a load gets
UNITS: Mapping[str, str] = {"rate": "req/s", "concurrency": "users"}
_COLUMNS = {"ttft": "ttft_ms", "ttfo": "ttfo_ms", "tpot": "tpot_ms", "e2e": "e2e_ms",
            "e2e_from_scheduled": "e2e_from_scheduled_ms"}  # fmt: skip


def samples(records: Sequence[Record], steps: Sequence[StepInfo]) -> dict[str, Floats]:
    """Per metric, the samples of the successful measured requests (ITL: per token), as the objectives judge them."""
    ok = [r for r in service.measured(records, steps) if r.error_kind is None]
    frame = request_frame(ok)
    out = {metric: frame[column].to_numpy(dtype=np.float64) for metric, column in _COLUMNS.items()}
    out["itl"] = itl_samples(ok)
    return {name: values[np.isfinite(values)] for name, values in out.items()}


def quantile_interval(values: Floats, q: float, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Distribution-free confidence bounds of the q-quantile, each one-sided at `confidence`: order statistics
    chosen by the binomial law (None for an end the samples cannot bound). With n samples the upper bound is the
    largest sample until qⁿ ≤ 1 − confidence, and no bound before: `objectives.samples_needed`."""
    n = int(values.size)
    if n == 0:
        return None, None
    ordered = np.sort(values)
    alpha = 1 - confidence
    low = int(stats.binom.ppf(alpha, n, q))  # X_(low) with 1-based order statistics; 0: unbounded
    high = int(stats.binom.ppf(1 - alpha, n, q)) + 1
    return (float(ordered[low - 1]) if low >= 1 else None, float(ordered[high - 1]) if high <= n else None)


@dataclass(frozen=True, slots=True)
class Check:
    """One objective on one trial: the figure, its limit, its confidence interval, met or not, and how surely."""

    name: str
    value: float | None
    limit: float
    low: float | None
    high: float | None
    met: bool
    certain: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round6(v)

        return {"value": r(self.value), "limit": self.limit, "low": r(self.low), "high": r(self.high),
                "met": self.met, "certain": self.certain}  # fmt: skip


def _percentile(o: Objective, step: StepSummary, values: Floats) -> Check:
    # TTFO is TTFT when nothing reasoned, and then the summary leaves it out.
    dist = cast("Mapping[str, Any]", step["latency_ms"].get(o.metric) or step["latency_ms"]["ttft"])
    value = dist.get(o.stat)
    figure = None if value is None else float(value)
    failed = step["requests"]["total"] - step["requests"]["ok"]
    total = step["requests"]["total"]
    allowed = math.floor((1 - o.q) * total + 1e-9)
    low, high = quantile_interval(values, o.q)
    if figure is None:
        return Check(o.name, None, o.limit_ms, low, high, False, True, f"{o.describe()}: no successful request")
    if failed > allowed:
        detail = f"{failed} of {total} requests failed (at most {allowed} may, for a {o.stat.replace('_', '.')})"
        return Check(o.name, figure, o.limit_ms, low, high, False, True, detail)
    met = figure <= o.limit_ms
    certain = (high is not None and high <= o.limit_ms) if met else (low is not None and low > o.limit_ms)
    detail = "" if met else f"{o.describe()}: {figure:,.4g} ms"
    return Check(o.name, figure, o.limit_ms, low, high, met, certain, detail)


def _goodput(objectives: Objectives, step: StepSummary) -> Check:
    total = step["requests"]["total"]
    share = step["goodput_fraction"]
    if share is None or total == 0:
        return Check("goodput", None, objectives.goodput, None, None, False, True, "goodput: no request measured")
    good = round(share * total)
    ci = stats.binomtest(good, total).proportion_ci(2 * CONFIDENCE - 1)  # each side one-sided at CONFIDENCE
    met = share >= objectives.goodput
    certain = ci.low >= objectives.goodput if met else ci.high < objectives.goodput
    detail = "" if met else f"goodput {share:.1%} < {objectives.goodput:.0%}"
    return Check("goodput", share, objectives.goodput, float(ci.low), float(ci.high), met, certain, detail)


@dataclass(frozen=True, slots=True)
class Trial:
    """One trial of a search, judged: `met` None when it could not be used (INVALID)."""

    trial: int
    step: int
    label: str
    load: float
    verdict: str
    met: bool | None
    certain: bool
    saturated: bool
    in_flight: float | None
    requests: int
    achieved_rate: float | None
    checks: tuple[Check, ...] = ()
    reasons: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "step": self.step,
            "label": self.label,
            "load": self.load,
            "verdict": self.verdict,
            "used": self.met is not None,
            "met": self.met,
            "certain": self.certain,
            "saturated": self.saturated,
            "in_flight": None if self.in_flight is None else round6(self.in_flight),
            "requests": self.requests,
            "achieved_rate": self.achieved_rate,
            "objectives": {c.name: c.as_dict() for c in self.checks},
            "reasons": list(self.reasons),
        }

    def describe(self, unit: str) -> str:
        """The trial in one line, as a search reports it while it runs."""
        outcome = "not used" if self.met is None else "met" if self.met else "failed"
        sure = "" if self.met is None or self.certain else ", not certain"
        figures = ", ".join(
            f"{c.name} {c.value:,.4g} {sign} {c.limit:g}{note}"
            for c in self.checks
            if c.value is not None
            for sign, note in [versus(c.name, c.value, c.limit, c.met)]
        )
        why = "; ".join(r for r in self.reasons if r)
        flight = "" if self.in_flight is None else f", {self.in_flight:.3g} in flight"
        told = why and (not self.met or self.verdict != "VALID")
        return (
            f"trial {self.trial + 1}: {self.load:g} {unit} → {outcome}{sure} ({self.verdict}, {self.requests} requests"
            f"{flight}){': ' + figures if figures else ''}{' — ' + why if told else ''}"
        )


def versus(name: str, value: float, limit: float, met: bool) -> tuple[str, str]:
    """How a figure stands against its limit, as a sign between them and a note after: a percentile must not exceed
    its limit, a goodput share must reach it; a percentile within its limit fails when too many requests failed."""
    if name == "goodput":
        return ("≥" if value >= limit else "<"), ""
    within = value <= limit
    return ("≤" if within else ">"), (" but too many requests failed" if within and not met else "")


def load_of(step: StepSummary, mode: Mode) -> float:
    value = step["rate"] if mode == "rate" else step["concurrency"]
    return float(value or 0.0)


def undecided(
    step: StepSummary, checks: Sequence[Check], objectives: Objectives, tolerances: validity.Tolerances
) -> str:
    """Why the client's error could change an INVALID trial's outcome, or "" when it could not (the module's
    docstring gives the rule): the bounds are proven, so a figure farther than its bound from the limit is on the
    side of the limit it was measured on, whatever the client did to it."""
    if objectives.per_request is not None:
        return "per-request SLOs are judged request by request"
    limits = {c.name: c for c in checks}
    for cell in validity.cells(step, tolerances):
        if cell.bound <= cell.tolerance:
            continue
        if cell.metric not in validity.LATENCIES:
            return f"the {cell.metric.replace('_', ' ')} measured is out of tolerance"
        # TTFO is read from TTFT when nothing reasoned (`_percentile`): a TTFT figure may be a TTFO objective's.
        readers = [cell.metric, *(["ttfo"] if cell.metric == "ttft" else [])]
        for check in [c for m in readers if (c := limits.get(f"{m}_{cell.stat}_ms")) is not None]:
            if abs(cell.value - check.limit) <= cell.bound:
                return (
                    f"{check.name} {cell.value:,.4g} ± {cell.bound:.3g} ms could lie on either side of {check.limit:g}"
                )
    return ""


def judge(
    trial: int,
    step: StepSummary,
    values: Mapping[str, Floats],
    objectives: Objectives,
    mode: Mode,
    tolerances: validity.Tolerances | None = None,
) -> Trial:
    """One trial, from its step's summary (judged with `tolerances`: with its validity) and its samples."""
    judged_validity = step.get("validity")
    verdict = judged_validity["verdict"] if judged_validity else "VALID"
    found = step.get("saturation")
    saturated = bool(found and found["saturated"])
    checks = [_percentile(o, step, values.get(o.metric, values["ttft"])) for o in objectives.percentiles]
    if objectives.per_request is not None:
        checks.append(_goodput(objectives, step))
    rate = step["throughput"]["requests_per_s"]
    e2e = step["latency_ms"]["e2e"]["mean"]
    in_flight = None if e2e is None else rate * e2e / 1000  # Little's law over the successful requests
    judged = Trial(trial, step["step"], step["label"], load_of(step, mode), verdict, None, False, saturated, in_flight,
                   step["requests"]["total"], step["achieved_rate"], tuple(checks))  # fmt: skip
    why = "" if verdict != "INVALID" else undecided(step, checks, objectives, tolerances or validity.Tolerances())
    if why:
        reasons = tuple(judged_validity["reasons"] if judged_validity else ())[:3]
        return dataclasses.replace(judged, reasons=(f"INVALID, not used: {why}", *reasons))
    failed = [c for c in checks if not c.met]
    used = ("INVALID, used: no number out of tolerance could change its outcome",) if verdict == "INVALID" else ()
    if saturated:
        reasons = (*used, "SATURATED: the queue kept growing", *dict.fromkeys(c.detail for c in failed))
        return dataclasses.replace(judged, met=False, certain=True, reasons=reasons)
    met = not failed
    certain = all(c.certain for c in checks) if met else any(c.certain for c in failed)
    reasons = (*used, *dict.fromkeys(c.detail for c in failed))
    return dataclasses.replace(judged, met=met, certain=certain, reasons=reasons)


def bracket(trials: Sequence[Trial]) -> tuple[Trial | None, Trial | None]:
    """The trials bracketing the capacity: the largest load that met below the smallest that failed."""
    failed = [t for t in trials if t.met is False]
    high = min(failed, key=lambda t: t.load, default=None)
    met = [t for t in trials if t.met and (high is None or t.load < high.load)]
    return max(met, key=lambda t: t.load, default=None), high


def narrow(low: float, high: float, precision: float, mode: Mode) -> bool:
    """Whether a bracket is as narrow as asked (a concurrency bracket of adjacent integers cannot narrow further)."""
    return high <= low * (1 + precision) or (mode == "concurrency" and high - low <= 1)


def status(trials: Sequence[Trial], precision: float, mode: Mode, max_trials: int) -> Status:
    """Why the search ended (see the module's docstring)."""
    low, high = bracket(trials)
    if low is not None and high is not None and narrow(low.load, high.load, precision, mode):
        return "found"
    if not trials or all(t.met is None for t in trials) or (trials[-1].met is None and len(trials) < max_trials):
        return "invalid"
    if low is None:
        return "none_met"
    if high is None:
        return "all_met"
    return "budget"


def _interval(trials: Sequence[Trial], low: Trial | None, high: Trial | None) -> dict[str, float | None]:
    sure_met = [t.load for t in trials if t.met and t.certain and (high is None or t.load < high.load)]
    sure_failed = [t.load for t in trials if t.met is False and t.certain and (low is None or t.load > low.load)]
    return {"low": max(sure_met, default=0.0), "high": min(sure_failed, default=None)}


def amount(load: float, mode: Mode) -> str:
    """A load with its unit: `12.5 req/s`, `8 users`, `1 user`."""
    return f"{load:g} {'user' if mode == 'concurrency' and load == 1 else UNITS[mode]}"


def message(found: Status, low: Trial | None, high: Trial | None, mode: Mode, trials: Sequence[Trial]) -> str:
    """The answer in one sentence."""
    if found in ("found", "budget") and low is not None and high is not None:
        why = "" if found == "found" else "; the trial budget ran out first: the best bracket so far"
        return f"capacity {amount(low.load, mode)}: {low.load:g} met the objectives, {high.load:g} did not{why}"
    if found == "none_met":
        lowest = min((t for t in trials if t.met is False), key=lambda t: t.load)
        idle = lowest.in_flight is not None and lowest.in_flight <= IDLE_IN_FLIGHT
        why = (f" with {lowest.in_flight:.2f} requests in flight on average — each had the target nearly to itself, so "
               "no load meets them" if idle and lowest.in_flight is not None else "")  # fmt: skip
        reasons = "; ".join(lowest.reasons)
        return f"no load meets the objectives: even {amount(lowest.load, mode)} failed{why} ({reasons})"
    if found == "all_met" and low is not None:
        at_least = amount(low.load, mode)
        return f"capacity at least {at_least}: every load tried met the objectives (the trial budget ran out)"
    return "no answer: the search stopped on a trial the client could not measure within its error bounds (INVALID)"


def analyse(
    steps: Sequence[StepSummary],
    run: RunFile,
    search: Mapping[str, Any],
    tolerances: validity.Tolerances | None = None,
) -> dict[str, Any]:
    """The `capacity` of a summary: every trial in order, the answer, its interval and the search's status.

    `steps` are the summary's steps judged with `tolerances`, `run` the settled run they came from, `search` what
    the run's configuration kept of the search (`capacity` in `harness.load.bench.run_config`).
    """
    mode: Mode = "concurrency" if search.get("mode") == "concurrency" else "rate"
    objectives = Objectives.from_dict(search.get("slo") or {})
    trials = []
    for i, step in enumerate(steps):
        ours = [r for r in run.requests if r.step == step["step"]]
        trials.append(judge(i, step, samples(ours, run.steps), objectives, mode, tolerances))
    precision, max_trials = float(search.get("precision", 0.05)), int(search.get("max_trials", 10))
    found = status(trials, precision, mode, max_trials)
    low, high = bracket(trials)
    return {
        "mode": mode,
        "unit": UNITS[mode],
        "slo": objectives.as_dict(),
        "precision": precision,
        "max_trials": max_trials,
        "trial_requests": search.get("trial_requests"),
        "status": found,
        "answer": None if low is None else low.load,
        "bracket": {"met": None if low is None else low.load, "failed": None if high is None else high.load},
        "interval": _interval(trials, low, high),
        "message": message(found, low, high, mode, trials),
        "trials": [t.as_dict() for t in trials],
    }


def run_validity(judged: Validity, steps: Sequence[StepSummary], trials: Sequence[Mapping[str, Any]]) -> Validity:
    """A search's run verdict: its answer rests on the trials' outcomes, so a trial that came out INVALID (run again
    and not used, or used when no number out of tolerance could change its outcome: `undecided`) or UNUSABLE
    (nothing succeeded at that load: a failure of the load, used as one) leaves the run VALID; each is named among
    the warnings instead. A run in which no request succeeded stays UNUSABLE."""
    if judged["verdict"] == "UNUSABLE":
        return judged
    used = {t["step"] for t in trials if t["used"]}
    notes = []
    for s in steps:
        v = s.get("validity")
        if v is not None and v["verdict"] != "VALID":
            outcome = "used by the search: its outcome stands" if s["step"] in used else "not used by the search"
            use = outcome if v["verdict"] == "INVALID" else "a failure of its load"
            notes.append(
                f"step {s['step']} ({s['label']}): {v['verdict']}, {use}" + "".join(f"; {r}" for r in v["reasons"][:1])
            )
    return {**judged, "verdict": "VALID", "reasons": [], "warnings": [*judged["warnings"], *notes]}


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any], min_effect: float) -> Comparison:
    """A capacity against its baseline's: it regressed when it fell by more than `min_effect` and the fall is beyond
    both searches' uncertainty (this run's interval lies wholly below the baseline's)."""
    name = f"capacity ({current['unit']})"
    base, now = baseline.get("answer"), current.get("answer")
    if base is None or now is None or base <= 0 or baseline["mode"] != current["mode"]:
        why = "no capacity to compare" if baseline["mode"] == current["mode"] else "another search mode"
        return Comparison(name, "answer", 0, 0, base, now, None, None, None, None, "skip", why)
    change = now / base - 1
    high = current["interval"]["high"]
    low = baseline["interval"]["low"]
    beyond = high is not None and low is not None and high < low
    failed = change < -min_effect and beyond
    if failed:
        detail = f"{change:+.1%}: regression (interval up to {high:g} below the baseline's from {low:g})"
    elif change < -min_effect:
        detail = f"{change:+.1%}: within the searches' uncertainty"
    else:
        detail = f"{change:+.1%}: within the {min_effect:.0%} allowed" if change < 0 else f"{change:+.1%}"
    return Comparison(name, "answer", len(baseline["trials"]), len(current["trials"]), base, now, change,
                      None, None, None, "fail" if failed else "pass", detail)  # fmt: skip
