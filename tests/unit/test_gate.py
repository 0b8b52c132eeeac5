"""`harness gate` on hand-built runs: absolute thresholds, the statistical baseline comparison, unusable inputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from harness.analysis import regression
from harness.cli import main
from harness.gate.evaluation import evaluate
from harness.gate.output import markdown
from harness.gate.thresholds import load_thresholds
from harness.gate.verdict import FAIL, PASS, UNUSABLE
from harness.records.record import RunFile
from tests.unit.built_runs import conformance_result, noisy_run, summarized, sweep_run, write_dir

REGRESSION_ONLY = "version = 1\n[regression]\nresamples = 1000\n"


def run_dir(tmp_path: Path, name: str, run: RunFile, failed_checks: int = 0) -> Path:
    directory = write_dir(tmp_path / name, run, conformance_result(failed=failed_checks))
    summarized(directory)
    return directory / "summary.json"


def thresholds(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(text)
    return path


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    return run_dir(tmp_path, "baseline", noisy_run(seed=0))


def gate_code(summary: Path, toml: Path, baseline: Path | None = None) -> int:
    return evaluate(summary, toml, baseline).code


def test_a_baseline_against_itself_passes(tmp_path: Path, baseline: Path) -> None:
    verdict = evaluate(baseline, thresholds(tmp_path, REGRESSION_ONLY), baseline)
    assert verdict.code == PASS
    assert {(c.metric, c.quantile) for c in verdict.comparisons} == {
        (m, q) for m in ("ttft", "tpot", "e2e") for q in ("p50", "p99")
    }
    assert all(c.status == "pass" and c.change == 0 for c in verdict.comparisons)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_latencies_15_percent_higher_fail(tmp_path: Path, baseline: Path, seed: int) -> None:
    slower = run_dir(tmp_path, "slower", noisy_run(seed=seed, scale=1.15))
    verdict = evaluate(slower, thresholds(tmp_path, REGRESSION_ONLY), baseline)
    assert verdict.code == FAIL
    failed = {(c.metric, c.quantile) for c in verdict.comparisons if c.status == "fail"}
    assert {("ttft", "p50"), ("tpot", "p50"), ("e2e", "p50")} <= failed


def test_a_real_10_percent_regression_fails(tmp_path: Path, baseline: Path) -> None:
    slower = run_dir(tmp_path, "slower", noisy_run(seed=4, scale=1.10))
    assert gate_code(slower, thresholds(tmp_path, REGRESSION_ONLY), baseline) == FAIL


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_fresh_sample_2_percent_slower_is_within_noise(tmp_path: Path, baseline: Path, seed: int) -> None:
    other = run_dir(tmp_path, "other", noisy_run(seed=seed, scale=1.02))
    verdict = evaluate(other, thresholds(tmp_path, REGRESSION_ONLY), baseline)
    assert verdict.code == PASS, markdown(verdict)


def test_an_invalid_run_is_refused(tmp_path: Path, baseline: Path) -> None:
    blocked = run_dir(tmp_path, "blocked", noisy_run(seed=1, lag_ms=300, kernel_timed=False))
    verdict = evaluate(blocked, thresholds(tmp_path, REGRESSION_ONLY), baseline)
    assert verdict.code == UNUSABLE
    assert verdict.unusable is not None and "INVALID" in verdict.unusable


def test_an_invalid_baseline_is_refused(tmp_path: Path) -> None:
    blocked = run_dir(tmp_path, "blocked", noisy_run(seed=0, lag_ms=300, kernel_timed=False))
    current = run_dir(tmp_path, "current", noisy_run(seed=1))
    assert gate_code(current, thresholds(tmp_path, REGRESSION_ONLY), blocked) == UNUSABLE


@pytest.mark.parametrize(
    "change",
    [
        {"model": "meta-llama/Meta-Llama-3-70B-Instruct"},
        {"base_url": "https://api.endpoints.anyscale.com/v1"},
        {"endpoint": "completion"},
    ],
)
def test_a_baseline_of_another_target_is_refused(tmp_path: Path, baseline: Path, change: dict[str, str]) -> None:
    other = run_dir(tmp_path, "other", noisy_run(seed=1, **change))
    verdict = evaluate(other, thresholds(tmp_path, REGRESSION_ONLY), baseline)
    assert verdict.code == UNUSABLE
    assert verdict.unusable is not None and "not comparable" in verdict.unusable


def test_a_baseline_run_another_way_is_refused(tmp_path: Path, baseline: Path) -> None:
    run = noisy_run(seed=1)
    config = run.run.config | {"duration_s": 60.0}
    other = run_dir(tmp_path, "other", dataclasses.replace(run, run=dataclasses.replace(run.run, config=config)))
    verdict = evaluate(other, thresholds(tmp_path, REGRESSION_ONLY), baseline)
    assert verdict.code == UNUSABLE and "config duration_s" in (verdict.unusable or "")


def test_the_same_local_server_on_another_port_is_the_same_target(tmp_path: Path, baseline: Path) -> None:
    moved = run_dir(tmp_path, "moved", noisy_run(seed=0, base_url="http://127.0.0.1:9999/v1"))
    assert gate_code(moved, thresholds(tmp_path, REGRESSION_ONLY), baseline) == PASS


def test_a_baseline_without_its_records_is_unusable(tmp_path: Path, baseline: Path) -> None:
    current = run_dir(tmp_path, "current", noisy_run(seed=1))
    (baseline.parent / "records.jsonl").unlink()
    assert gate_code(current, thresholds(tmp_path, REGRESSION_ONLY), baseline) == UNUSABLE


def test_absolute_thresholds_on_the_known_sweep(tmp_path: Path) -> None:
    summary = run_dir(tmp_path, "sweep", sweep_run())
    # By construction TTFT is 50 ms for 4 requests, 100 ms for 30 and 200 ms for 30: p50 100, p99 200.
    passing = "version = 1\n[absolute]\nttft_p99_ms_max = 200\nttft_p50_ms_max = 100\nerror_rate_max = 0.0\n"
    passing += "conformance_failures_max = 0\nlimit_honoured = true\nerror_rate_at_or_below_limit_max = 0.0\n"
    verdict = evaluate(summary, thresholds(tmp_path, passing), None)
    assert verdict.code == PASS, markdown(verdict)
    assert [c.name for c in verdict.checks] == [
        "ttft_p50_ms_max",
        "ttft_p99_ms_max",
        "error_rate_max",
        "conformance_failures_max",
        "limit_honoured",
        "error_rate_at_or_below_limit_max",
    ]
    failing = "version = 1\n[absolute]\nttft_p99_ms_max = 199.9\noutput_tokens_per_s_min = 1000\n"
    verdict = evaluate(summary, thresholds(tmp_path, failing), None)
    assert verdict.code == FAIL
    assert [c.status for c in verdict.checks] == ["fail", "fail"]


def test_thresholds_can_name_one_step(tmp_path: Path) -> None:
    summary = run_dir(tmp_path, "sweep", sweep_run())
    text = 'version = 1\n[absolute]\nstep = "concurrency=30"\nttft_p99_ms_max = 100\noutput_tokens_per_s_min = 150\n'
    assert gate_code(summary, thresholds(tmp_path, text)) == PASS
    missing = 'version = 1\n[absolute]\nstep = "concurrency=64"\nttft_p99_ms_max = 100\n'
    assert gate_code(summary, thresholds(tmp_path, missing)) == UNUSABLE


def test_conformance_failures_fail_and_a_missing_result_fails(tmp_path: Path) -> None:
    toml = thresholds(tmp_path, "version = 1\n[absolute]\nconformance_failures_max = 0\n")
    broken = run_dir(tmp_path, "broken", sweep_run(), failed_checks=1)
    verdict = evaluate(broken, toml, None)
    assert verdict.code == FAIL and "test_limits.py::test_check_0" in verdict.checks[0].detail
    directory = write_dir(tmp_path / "unchecked", sweep_run())
    summarized(directory)
    assert gate_code(directory / "summary.json", toml) == FAIL


def test_429s_at_the_limit_fail_the_limit_check(tmp_path: Path) -> None:
    run = sweep_run()
    moved = [dataclasses.replace(r, step=1) if r.error_kind == "rate_limited" else r for r in run.requests]
    summary = run_dir(tmp_path, "early", dataclasses.replace(run, requests=moved))
    verdict = evaluate(summary, thresholds(tmp_path, "version = 1\n[absolute]\nlimit_honoured = true\n"), None)
    assert verdict.code == FAIL
    assert "10 429s at or below it" in verdict.checks[0].detail


def test_the_limit_can_be_given_by_the_thresholds(tmp_path: Path) -> None:
    summary = run_dir(tmp_path, "sweep", sweep_run())
    # With a limit of 40 the 429s at 40 users come too early.
    text = "version = 1\n[absolute]\nconcurrency_limit = 40\nlimit_honoured = true\n"
    assert gate_code(summary, thresholds(tmp_path, text)) == FAIL


def test_missing_ground_truth_is_skipped_not_failed(tmp_path: Path) -> None:
    summary = run_dir(tmp_path, "sweep", sweep_run())
    verdict = evaluate(
        summary, thresholds(tmp_path, "version = 1\n[absolute]\ntiming_error_ttft_p99_ms_max = 5\n"), None
    )
    assert verdict.code == PASS and verdict.checks[0].status == "skip"


def test_bad_thresholds_are_unusable(tmp_path: Path) -> None:
    summary = run_dir(tmp_path, "sweep", sweep_run())
    assert gate_code(summary, thresholds(tmp_path, "version = 1\n[absolute]\nttft_p99 = 5\n")) == UNUSABLE
    assert gate_code(summary, thresholds(tmp_path, "version = 1\n[absolute\n")) == UNUSABLE


def test_the_shipped_default_thresholds_validate_and_pass_the_known_sweep(tmp_path: Path) -> None:
    assert load_thresholds(None)["absolute"]["conformance_failures_max"] == 0
    summary = run_dir(tmp_path, "sweep", sweep_run())
    verdict = evaluate(summary, None, None)
    assert verdict.code == PASS, markdown(verdict)
    assert {c.name for c in verdict.checks if c.status == "skip"} == {
        "timing_error_itl_p50_ms_max",
        "timing_error_itl_p99_ms_max",
    }


def test_junit_and_markdown_are_written_beside_the_summary(tmp_path: Path, baseline: Path) -> None:
    slower = run_dir(tmp_path, "slower", noisy_run(seed=1, scale=1.15))
    code = main(["gate", str(slower), "--thresholds", str(thresholds(tmp_path, REGRESSION_ONLY)), "--baseline",
                 str(baseline)])  # fmt: skip
    assert code == 1
    suite = ElementTree.parse(slower.parent / "gate.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "6" and int(suite.get("failures") or 0) >= 3
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "ttft_p50" in failed
    text = (slower.parent / "gate.md").read_text()
    assert text.startswith("## Gate: **FAIL**") and "| ttft p50 |" in text


def test_an_unusable_input_is_written_as_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "summary.json").write_text(json.dumps({"version": 1}))
    assert main(["gate", str(directory / "summary.json")]) == 2
    suite = ElementTree.parse(directory / "gate.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    assert "cannot be judged" in (directory / "gate.md").read_text()


def test_too_few_samples_skip_a_quantile() -> None:
    rng = np.random.default_rng(0)
    small = rng.lognormal(0, 0.3, 100)
    result = regression.compare_one("ttft", "p99", small, small * 2, regression.ComparisonSettings(), tests=1)
    assert result.status == "skip" and "100 < 500" in result.detail
    result = regression.compare_one("ttft", "p50", small, small * 2, regression.ComparisonSettings(), tests=1)
    assert result.status == "fail" and result.change == pytest.approx(1.0)


def _older(summary: dict[str, object]) -> dict[str, object]:
    """A summary as written before error bounds and service figures: their keys taken out."""
    for table in [*summary["steps"], summary["overall"]]:  # type: ignore[misc]
        for key in ("first_error", "throughput_bounds", "offered", "service"):
            table.pop(key, None)
        for dist in table["latency_ms"].values():
            dist.pop("bounds", None)
            dist.pop("causes", None)
        table.get("validity", {}).pop("worst", None)
    summary["validity"].pop("tolerances", None)  # type: ignore[attr-defined]
    summary["validity"].pop("worst", None)  # type: ignore[attr-defined]
    for row in (summary.get("limit") or {}).get("steps", []):  # type: ignore[attr-defined]
        for key in ("starved_users", "wait_for_service_p99_ms", "wait_for_service_max_ms", "unserved_at_end",
                    "fairness_users"):  # fmt: skip
            row.pop(key, None)
    return summary


def test_a_summary_written_before_bounds_still_validates_gates_and_renders(tmp_path: Path) -> None:
    from harness.report import tables

    directory = write_dir(tmp_path / "old", sweep_run(), conformance_result(failed=0))
    path = summarized(directory)
    old = _older(json.loads(path.read_text()))
    path.write_text(json.dumps(old))
    toml = thresholds(tmp_path, "version = 1\n[absolute]\nttft_p99_ms_max = 1000\nstarved_users_max = 0\n")
    verdict = evaluate(path, toml, None)
    assert verdict.code == PASS, verdict.unusable
    assert [c.status for c in verdict.checks if c.name == "starved_users_max"] == ["skip"]  # not measured then
    rows = tables.steps_table(old).rows
    assert rows[0][6] == "50.0"  # TTFT p50 with no ± to show
    assert tables.bounds_table(old["steps"][0], None) is None and tables.load_line(old["steps"][0]) is None
