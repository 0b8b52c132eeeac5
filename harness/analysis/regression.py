"""Is a run slower than its baseline? A statistical comparison of per-request samples, not of two noisy numbers.

For each metric (TTFT, TPOT, E2E: one sample per successful measured request) and quantile, the relative change
current/baseline − 1 of the quantile gets a percentile-bootstrap confidence interval (both runs resampled
independently, seeded). The confidence is family-wise over every comparison made (Bonferroni), so adding metrics
does not add false alarms. A comparison fails only when the change exceeds `min_effect` (it matters) **and** the
interval lies wholly above half of it (it is real, not noise around a smaller change): with the default 5%, noise
alone and a real 2% change pass, a real 10% regression fails. A one-sided Mann-Whitney U p-value (current larger
than baseline) is reported beside it for the whole distribution.

Quantiles that the runs are too small to estimate (fewer than `min_tail_samples` samples above them) are skipped.
A baseline is only comparable when it measured the same target in the same way (`incompatibilities`); when it was
measured on another machine or other software, the comparison goes on with a note (`environment_differences`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from scipy import stats

from harness.analysis.stats import Floats, nearest_rank

Status = Literal["pass", "fail", "skip"]
QUANTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
_TARGET_KEYS = ("model", "profile", "endpoint")
_CONFIG_KEYS = ("steps", "duration_s", "requests", "warmup_s", "warmup_requests", "on_429")
_PROMPT_KEYS = ("source", "file", "input_tokens", "output_tokens", "exact_lengths")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
_BOOTSTRAP_CELLS = 2_000_000  # resampled values held at once


@dataclass(frozen=True, slots=True)
class ComparisonSettings:
    metrics: tuple[str, ...] = ("ttft", "tpot", "e2e")
    quantiles: tuple[str, ...] = ("p50", "p99")
    min_effect: float = 0.05
    confidence: float = 0.95
    resamples: int = 2000
    min_samples: int = 20
    min_tail_samples: int = 5
    seed: int = 0

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> ComparisonSettings:
        values = dict(table)
        for name in ("metrics", "quantiles"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Comparison:
    metric: str
    quantile: str
    n_baseline: int
    n_current: int
    baseline: float | None
    current: float | None
    change: float | None  # current / baseline − 1
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # one-sided Mann-Whitney U: current stochastically larger
    status: Status
    detail: str


def _where(target: Mapping[str, Any]) -> str:
    """The endpoint's identity: its URL, except for a server on this host, whose port is new at every launch."""
    url = str(target.get("base_url", ""))
    if urlsplit(url).hostname in _LOOPBACK:
        return "this host: " + re.sub(r",?\s*pid \d+", "", str(target.get("description", "")))
    return url


def incompatibilities(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How the baseline measured another target or measured it differently (empty: comparable)."""
    problems: list[str] = []

    def differ(what: str, a: object, b: object) -> None:
        if a != b:
            problems.append(f"{what}: baseline {a!r}, this run {b!r}")

    differ("tool", baseline.get("tool"), current.get("tool"))
    differ("target", _where(baseline["target"]), _where(current["target"]))
    for key in _TARGET_KEYS:
        differ(f"target {key}", baseline["target"].get(key), current["target"].get(key))
    for key in _CONFIG_KEYS:
        differ(f"config {key}", baseline["config"].get(key), current["config"].get(key))
    base_prompts = baseline["config"].get("prompts") or {}
    prompts = current["config"].get("prompts") or {}
    for key in _PROMPT_KEYS:
        differ(f"prompts {key}", base_prompts.get(key), prompts.get(key))
    return problems


_MACHINE_KEYS = ("cpu", "cpus", "memory_gib", "os", "kernel", "python", "harness", "gpus")
_SOFTWARE_KEYS = ("server_header", "version")


def environment_differences(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How the machine and software the baseline was measured on differ from this run's (empty: the same, as far as
    both recorded). A note for the reader, not a reason to refuse the comparison."""
    before, now = baseline.get("environment"), current.get("environment")
    if not before or not now:
        return [] if not before and not now else [f"only {'this run' if now else 'the baseline'} recorded its machine"]
    notes: list[str] = []
    pairs = [(f"client {k}", before["client"].get(k), now["client"].get(k)) for k in _MACHINE_KEYS]
    old, new = before["client"].get("packages") or {}, now["client"].get("packages") or {}
    pairs += [(f"client {name}", old.get(name), new.get(name)) for name in sorted(set(old) | set(new))]
    pairs += [(f"target {k.replace('_', ' ')}", before["target"].get(k), now["target"].get(k)) for k in _SOFTWARE_KEYS]
    for what, a, b in pairs:
        if a != b:
            notes.append(f"{what}: baseline {a!r}, this run {b!r}")
    return notes


def _bootstrap(values: Floats, q: float, resamples: int, rng: np.random.Generator) -> Floats:
    """The quantile of `resamples` resamples (with replacement) of the values."""
    n = values.size
    out = np.empty(resamples, dtype=np.float64)
    rows = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        picks = values[rng.integers(0, n, size=(count, n))]
        out[start : start + count] = nearest_rank(picks, q, axis=1)
    return out


def compare_one(
    metric: str, quantile: str, baseline: Floats, current: Floats, settings: ComparisonSettings, tests: int
) -> Comparison:
    q = QUANTILES[quantile]
    n_b, n_c = int(baseline.size), int(current.size)
    needed = max(settings.min_samples, int(np.ceil(settings.min_tail_samples / (1 - q / 100))))
    if min(n_b, n_c) < needed:
        return Comparison(
            metric, quantile, n_b, n_c, None, None, None, None, None, None, "skip",
            f"too few samples for {quantile} ({min(n_b, n_c)} < {needed})",
        )  # fmt: skip
    base_q, cur_q = float(nearest_rank(baseline, q)), float(nearest_rank(current, q))
    p_value = float(stats.mannwhitneyu(current, baseline, alternative="greater").pvalue)
    if base_q <= 0:
        return Comparison(
            metric, quantile, n_b, n_c, base_q, cur_q, None, None, None, p_value, "skip", "baseline quantile is 0"
        )
    # One generator per comparison, seeded by its name, so that each result is the same whatever else is compared.
    rng = np.random.default_rng([settings.seed, *map(ord, f"{metric}/{quantile}")])
    ratios = _bootstrap(current, q, settings.resamples, rng) / _bootstrap(baseline, q, settings.resamples, rng) - 1
    alpha = (1 - settings.confidence) / tests
    low, high = (float(v) for v in np.quantile(ratios, [alpha / 2, 1 - alpha / 2]))
    change = cur_q / base_q - 1
    floor = settings.min_effect / 2
    failed = change > settings.min_effect and low > floor
    if failed:
        detail = f"{change:+.1%}: regression (> {settings.min_effect:.0%}, interval above {floor:.1%})"
    elif change > settings.min_effect:
        detail = f"{change:+.1%}: not significant (interval reaches {low:+.1%})"
    elif low > 0:
        detail = f"{change:+.1%}: real but within the {settings.min_effect:.0%} allowed"
    else:
        detail = f"{change:+.1%}: within noise"
    status: Status = "fail" if failed else "pass"
    return Comparison(metric, quantile, n_b, n_c, base_q, cur_q, change, low, high, p_value, status, detail)


def compare(
    baseline: Mapping[str, Floats], current: Mapping[str, Floats], settings: ComparisonSettings
) -> list[Comparison]:
    """Every metric × quantile of the settings; the confidence level holds over all of them together."""
    pairs: Sequence[tuple[str, str]] = [(m, q) for m in settings.metrics for q in settings.quantiles]
    return [compare_one(m, q, baseline[m], current[m], settings, len(pairs)) for m, q in pairs]
