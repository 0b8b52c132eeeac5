"""A baseline comparison: a real slowdown beyond the allowed effect fails, noise and small effects pass, too few
samples are skipped, and a baseline that measured another target or configuration is said to be incomparable."""

from __future__ import annotations

import numpy as np

from harness.analysis.regression import ComparisonSettings, compare, compare_one, incompatibilities

RNG = np.random.default_rng(7)
BASE = RNG.lognormal(mean=np.log(100.0), sigma=0.2, size=400)


def test_the_same_distribution_passes_within_noise() -> None:
    again = np.random.default_rng(8).lognormal(mean=np.log(100.0), sigma=0.2, size=400)
    result = compare_one("ttft", "p50", BASE, again, ComparisonSettings(), tests=1)
    assert result.status == "pass" and result.change is not None and abs(result.change) < 0.05
    assert result.ci_low is not None and result.ci_high is not None and result.ci_low < 0 < result.ci_high


def test_a_twenty_percent_slowdown_fails_with_its_interval_above_the_floor() -> None:
    result = compare_one("ttft", "p50", BASE, BASE * 1.2, ComparisonSettings(), tests=1)
    assert result.status == "fail" and result.change is not None and abs(result.change - 0.2) < 1e-9
    assert result.ci_low is not None and result.ci_low > 0.025 and "regression" in result.detail


def test_a_real_but_small_effect_is_allowed() -> None:
    result = compare_one("ttft", "p50", BASE, BASE * 1.03, ComparisonSettings(min_effect=0.05), tests=1)
    assert result.status == "pass" and "within the 5% allowed" in result.detail


def test_a_tail_quantile_needs_enough_samples_for_its_tail() -> None:
    # p99 needs 5 samples beyond it: 500 samples; 400 are too few.
    result = compare_one("e2e", "p99", BASE, BASE, ComparisonSettings(), tests=1)
    assert result.status == "skip" and "too few samples for p99 (400 < 500)" in result.detail


def test_every_metric_and_quantile_of_the_settings_is_compared() -> None:
    found = compare(
        {"ttft": BASE, "e2e": BASE}, {"ttft": BASE, "e2e": BASE * 2}, ComparisonSettings(metrics=("ttft", "e2e"))
    )
    assert [(c.metric, c.quantile, c.status) for c in found] == [
        ("ttft", "p50", "pass"),
        ("ttft", "p99", "skip"),
        ("e2e", "p50", "fail"),
        ("e2e", "p99", "skip"),
    ]


def test_a_baseline_of_another_target_or_configuration_is_incomparable() -> None:
    target = {"base_url": "http://127.0.0.1:8001/v1", "description": "reference server (sim, pid 12)", "model": "m"}
    config = {"duration_s": 10, "prompts": {"input_tokens": "256"}}
    base = {"tool": "harness bench", "target": target, "config": config}
    # Another port and pid of a server on this host is the same target, launched again.
    moved = {
        **base,
        "target": {**target, "base_url": "http://127.0.0.1:9002/v1", "description": "reference server (sim, pid 99)"},
    }
    assert incompatibilities(base, moved) == []
    other = {**base, "target": {**target, "model": "n"}, "config": {**config, "prompts": {"input_tokens": "512"}}}
    assert incompatibilities(base, other) == [
        "target model: baseline 'm', this run 'n'",
        "prompts input_tokens: baseline '256', this run '512'",
    ]
