"""Repeated runs: each headline figure's mean and confidence interval across the runs of a repeated plan.

`harness bench --repeat N` runs its whole plan N times, a cool-down between (`--cooldown`), each run as steps of its
own tagged with their repeat (0 … N − 1). One run's per-request samples cannot show how much a figure moves from run
to run — the target's state, the machine's other work, the arrivals' draw. Across the repeats, each headline figure
of a step (matched by label) is one sample per run; its mean gets a Student-t confidence interval (95 %, N − 1
degrees of freedom). Two runs give a wide interval; that width is the honest answer of two runs.

Against a baseline that was repeated too, the gate compares each step's figures across runs (`compare`): Welch's t
interval of the change of the mean, relative to the baseline's, family-wise over every comparison (Bonferroni), and
the same rule as the per-request comparison (`harness.analysis.regression`): a failure is a change beyond
`min_effect` whose interval lies wholly above half of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
from scipy import stats

from harness.analysis.regression import Comparison, ComparisonSettings
from harness.analysis.shape import StepSummary
from harness.analysis.stats import round6

CONFIDENCE = 0.95
Figure = Callable[[StepSummary], "float | None"]
SHARES = frozenset({"goodput_fraction", "error_rate"})  # figures between 0 and 1; every other is at least 0


def _latency(metric: str, stat: str) -> Figure:
    def figure(step: StepSummary) -> float | None:
        value = cast("Mapping[str, Any]", step["latency_ms"].get(metric) or {}).get(stat)
        return None if value is None else float(value)

    return figure


HEADLINE: dict[str, Figure] = {
    **{f"{m}_{q}_ms": _latency(m, q) for m in ("ttft", "itl", "tpot", "e2e") for q in ("p50", "p99")},
    "requests_per_s": lambda s: s["throughput"]["requests_per_s"],
    "output_tokens_per_s": lambda s: s["throughput"]["output_tokens_per_s"],
    "goodput_fraction": lambda s: s["goodput_fraction"],
    "error_rate": lambda s: s["rates"]["error"],
}


def spread(values: Sequence[float], confidence: float = CONFIDENCE, highest: float | None = None) -> dict[str, Any]:
    """The runs' values, their mean and standard deviation, and the mean's Student-t interval (None with one run),
    within the figure's range — from 0 (no figure is negative) to `highest` — since a true mean outside it is
    impossible, the interval keeps its coverage: two runs' half-width is 12.7 standard errors, far below 0 for a
    latency that moved between them."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return {"values": [round6(v) for v in values], "mean": round6(mean), "sd": None, "low": None, "high": None}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1)) * sd / math.sqrt(x.size)
    high = mean + half if highest is None else min(mean + half, highest)
    return {"values": [round6(v) for v in values], "mean": round6(mean), "sd": round6(sd),
            "low": round6(max(mean - half, 0.0)), "high": round6(high)}  # fmt: skip


def across(steps: Sequence[StepSummary]) -> dict[str, Any] | None:
    """The `repeats` of a summary: per step label, each headline figure across the runs; None when not repeated."""
    repeated = [s for s in steps if s.get("repeat") is not None]
    if not repeated:
        return None
    groups: dict[str, list[StepSummary]] = {}
    for step in repeated:
        groups.setdefault(step["label"], []).append(step)
    out = []
    for label, group in groups.items():
        metrics: dict[str, Any] = {}
        for name, figure in HEADLINE.items():
            values = [v for s in group if (v := figure(s)) is not None]
            if values:
                metrics[name] = spread(values, highest=1.0 if name in SHARES else None)
        out.append({"label": label, "runs": len(group), "metrics": metrics})
    return {"runs": 1 + max(int(s.get("repeat") or 0) for s in repeated), "confidence": CONFIDENCE, "steps": out}


def _one(name: str, label: str, base: Mapping[str, Any], now: Mapping[str, Any], settings: ComparisonSettings,
         tests: int) -> Comparison:  # fmt: skip
    metric, quantile = name.rsplit("_", 2)[0], name.rsplit("_", 2)[1]
    b, c = np.asarray(base["values"], dtype=np.float64), np.asarray(now["values"], dtype=np.float64)
    where = f"{metric} [{label}]"
    if b.size < 2 or c.size < 2 or b.mean() <= 0:
        return Comparison(where, quantile, int(b.size), int(c.size), float(b.mean()), float(c.mean()), None, None,
                          None, None, "skip", "needs two runs or more on each side")  # fmt: skip
    change = float(c.mean() / b.mean() - 1)
    test = stats.ttest_ind(c, b, equal_var=False, alternative="greater")
    se = math.sqrt(c.var(ddof=1) / c.size + b.var(ddof=1) / b.size)
    df = float(test.df) if se > 0 else 1.0
    half = float(stats.t.ppf(1 - (1 - settings.confidence) / tests / 2, df)) * se / float(b.mean())
    low, high = change - half, change + half
    floor = settings.min_effect / 2
    failed = change > settings.min_effect and low > floor
    detail = (f"{change:+.1%} across runs: regression (> {settings.min_effect:.0%}, interval above {floor:.1%})"
              if failed else f"{change:+.1%} across runs: interval [{low:+.1%}, {high:+.1%}]")  # fmt: skip
    p = None if se == 0 else float(test.pvalue)
    return Comparison(where, quantile, int(b.size), int(c.size), float(b.mean()), float(c.mean()), change, low, high,
                      p, "fail" if failed else "pass", detail)  # fmt: skip


def compare(baseline: Mapping[str, Any], current: Mapping[str, Any], settings: ComparisonSettings) -> list[Comparison]:
    """Each step label both runs have, each metric × quantile of the settings, compared across runs."""
    base = {s["label"]: s["metrics"] for s in baseline["steps"]}
    pairs = [
        (f"{m}_{q}_ms", s["label"])
        for s in current["steps"]
        if s["label"] in base
        for m in settings.metrics
        for q in settings.quantiles
        if f"{m}_{q}_ms" in s["metrics"] and f"{m}_{q}_ms" in base[s["label"]]
    ]
    now = {s["label"]: s["metrics"] for s in current["steps"]}
    return [_one(name, label, base[label][name], now[label][name], settings, len(pairs)) for name, label in pairs]
