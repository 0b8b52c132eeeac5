"""The gate on capacity searches: `max_rate_min` against the answer (a search that found none fails it), and a
capacity compared with a baseline's beyond both searches' uncertainty."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gate.evaluation import evaluate
from harness.gate.verdict import FAIL, PASS, UNUSABLE
from tests.unit.built_runs import summarized, write_dir
from tests.unit.built_searches import flat_until, search_config, search_run

LOADS = [4.0, 8.0, 16.0, 11.31, 13.45, 12.33, 11.81]


def searched(tmp_path: Path, name: str, capacity_rps: float, loads: list[float] = LOADS, **search: object) -> Path:
    run = search_run(loads, flat_until(capacity_rps), search_config({"ttft_p90_ms": 500}, **search))
    return summarized(write_dir(tmp_path / name, run))


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text("version = 1\n" + text)
    return path


@pytest.mark.parametrize(("minimum", "code"), [(10, PASS), (11.81, PASS), (12, FAIL)])
def test_max_rate_min_holds_the_search_to_a_capacity(tmp_path: Path, minimum: float, code: int) -> None:
    verdict = evaluate(searched(tmp_path, "run", 12.0), toml(tmp_path, f"[absolute]\nmax_rate_min = {minimum}\n"), None)
    assert verdict.code == code
    (check,) = verdict.checks
    assert (check.name, check.value) == ("max_rate_min", "11.81")


def test_a_search_that_found_no_load_fails_a_required_capacity(tmp_path: Path) -> None:
    summary = searched(tmp_path, "run", 0.5, loads=[4.0, 2.0, 1.0])
    verdict = evaluate(summary, toml(tmp_path, "[absolute]\nmax_rate_min = 1\nmax_concurrency_min = 1\n"), None)
    assert verdict.code == FAIL
    assert [(c.name, c.status, c.value) for c in verdict.checks] == [
        ("max_rate_min", "fail", "0"),
        ("max_concurrency_min", "skip", "–"),  # not a search of users
    ]


def test_a_capacity_is_compared_with_its_baseline(tmp_path: Path) -> None:
    baseline = searched(tmp_path, "base", 12.0)
    same = evaluate(searched(tmp_path, "same", 12.0), toml(tmp_path, ""), baseline)
    assert same.code == PASS
    (compared,) = same.comparisons
    assert (compared.metric, compared.baseline, compared.current, compared.status) == (
        "capacity (req/s)", 11.81, 11.81, "pass"
    )  # fmt: skip
    fallen = evaluate(searched(tmp_path, "fallen", 6.0, loads=[4.0, 8.0, 6.0, 7.0]), toml(tmp_path, ""), baseline)
    assert fallen.code == FAIL
    assert "regression" in fallen.comparisons[0].detail


def test_a_search_against_a_baseline_with_other_objectives_cannot_be_judged(tmp_path: Path) -> None:
    baseline = searched(tmp_path, "base", 12.0)
    run = search_run(LOADS, flat_until(12.0), search_config({"ttft_p90_ms": 800}))
    other = summarized(write_dir(tmp_path / "other", run))
    verdict = evaluate(other, toml(tmp_path, ""), baseline)
    assert verdict.code == UNUSABLE
    assert verdict.unusable == "the baseline is not comparable: its search had another mode or other objectives"
