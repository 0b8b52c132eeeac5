"""Repeated runs: each headline figure's mean and Student-t interval across runs, in the summary, and the gate's
comparison of two repeated runs by their run-to-run spread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import orjson
import pytest

from harness.analysis import repeats
from harness.analysis.regression import ComparisonSettings
from harness.gate.evaluation import evaluate
from harness.gate.verdict import FAIL, PASS
from harness.records.record import Record, RunFile, RunInfo
from tests.unit.built_runs import CONFIG, ORIGIN_NS, TARGET, ok_request, step_info, summarized, write_dir


def test_a_figure_across_runs_has_its_mean_and_student_t_interval() -> None:
    found = repeats.spread([10.0, 12.0, 14.0])
    # t(0.975, 2 degrees of freedom) = 4.302653; sd 2; half-width 4.302653 · 2 / √3 = 4.968275
    assert found == {"values": [10.0, 12.0, 14.0], "mean": 12.0, "sd": 2.0, "low": 7.031725, "high": 16.968275}
    assert repeats.spread([5.0]) == {"values": [5.0], "mean": 5.0, "sd": None, "low": None, "high": None}


def test_an_interval_stays_within_the_figures_range() -> None:
    # Two runs: t(0.975, 1) = 12.706205, standard error 30, half-width 381.186142 about the mean 70: not below 0.
    two = repeats.spread([40.0, 100.0])
    assert (two["low"], two["high"]) == (0.0, 451.186142)
    # A share is not above 1 either.
    share = repeats.spread([0.9, 1.0], highest=1.0)
    assert (share["low"], share["high"]) == (0.314690, 1.0)


def repeated_run(seed: int, scale: float = 1.0, runs: int = 3, per_run_sd: float = 0.02) -> RunFile:
    """`runs` repeats of one 8-user step of 200 requests; each run's latencies scaled by its own factor (sd
    `per_run_sd`), all by `scale`."""
    rng = np.random.default_rng(seed)
    requests: list[Record] = []
    steps = []
    for r in range(runs):
        factor = scale * (1 + rng.normal(0, per_run_sd))
        start = 10_000 * r
        for i in range(200):
            ttft = float(rng.lognormal(np.log(100), 0.2)) * factor
            gaps = [float(g) * factor for g in rng.lognormal(np.log(10), 0.1, size=7)]
            requests.append(ok_request(r, len(requests), start + 20 * i, ttft, gaps))
        steps.append(dataclasses.replace(step_info("run", r, 8, start + 5000, start), label="concurrency=8", repeat=r))
    config = CONFIG | {"steps": ["concurrency=8"], "repeat": runs}
    info = RunInfo("run", "2026-01-01T00:00:00.000+00:00", 1_767_225_600 * 10**9, ORIGIN_NS, target=TARGET,
                   config=config)  # fmt: skip
    return RunFile(info, steps, requests)


def summary_path(tmp_path: Path, name: str, run: RunFile) -> Path:
    return summarized(write_dir(tmp_path / name, run))


def test_the_summary_groups_each_step_across_its_runs(tmp_path: Path) -> None:
    path = summary_path(tmp_path, "run", repeated_run(seed=0))
    summary = orjson.loads(path.read_bytes())
    assert [s["repeat"] for s in summary["steps"]] == [0, 1, 2]
    found = summary["repeats"]
    assert (found["runs"], found["confidence"]) == (3, 0.95)
    (step,) = found["steps"]
    assert (step["label"], step["runs"]) == ("concurrency=8", 3)
    ttft = step["metrics"]["ttft_p50_ms"]
    assert ttft["values"] == [s["latency_ms"]["ttft"]["p50"] for s in summary["steps"]]
    assert ttft["low"] < ttft["mean"] < ttft["high"]
    assert set(step["metrics"]) >= {"ttft_p99_ms", "e2e_p50_ms", "requests_per_s", "output_tokens_per_s"}


REGRESSION = "version = 1\n[regression]\nmetrics = ['ttft', 'e2e']\nquantiles = ['p50']\n"


@pytest.mark.parametrize(("scale", "code"), [(1.0, PASS), (1.02, PASS), (1.25, FAIL)])
def test_the_gate_compares_repeated_runs_by_their_spread(tmp_path: Path, scale: float, code: int) -> None:
    baseline = summary_path(tmp_path, "base", repeated_run(seed=1, runs=4))
    current = summary_path(tmp_path, "current", repeated_run(seed=2, scale=scale, runs=3))
    thresholds = tmp_path / "gate.toml"
    thresholds.write_text(REGRESSION)
    verdict = evaluate(current, thresholds, baseline)
    assert verdict.code == code, [c.detail for c in verdict.comparisons]
    assert {(c.metric, c.quantile, c.n_baseline, c.n_current) for c in verdict.comparisons} == {
        ("ttft [concurrency=8]", "p50", 4, 3),
        ("e2e [concurrency=8]", "p50", 4, 3),
    }
    assert all("across runs" in c.detail for c in verdict.comparisons)


def test_runs_compared_across_runs_need_two_on_each_side() -> None:
    one = {"runs": 1, "confidence": 0.95, "steps": [{"label": "a", "runs": 1, "metrics": {
        "ttft_p50_ms": repeats.spread([100.0])}}]}  # fmt: skip
    two = {"runs": 2, "confidence": 0.95, "steps": [{"label": "a", "runs": 2, "metrics": {
        "ttft_p50_ms": repeats.spread([100.0, 102.0])}}]}  # fmt: skip
    settings = ComparisonSettings(metrics=("ttft",), quantiles=("p50",))
    (compared,) = repeats.compare(one, two, settings)
    assert (compared.status, compared.detail) == ("skip", "needs two runs or more on each side")
