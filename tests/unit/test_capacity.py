"""A search's answer from its trials, as the summary gives it: each trial judged from its step's summary (INVALID not
used unless its bounds cannot change its outcome, SATURATED failed), the bracket, the status, the interval widened by
uncertain verdicts, and a capacity compared with a baseline's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from harness.analysis import capacity
from harness.analysis.summary import build_summary
from harness.records import rundir
from harness.records.record import RunFile
from tests.unit.built_runs import write_dir
from tests.unit.built_searches import flat_until, search_config, search_run

LOADS = [4.0, 8.0, 16.0, 11.31, 13.45, 12.33, 11.81]


def summary_of(tmp_path: Path, run: RunFile) -> dict[str, Any]:
    found: dict[str, Any] = dict(build_summary(rundir.load(write_dir(tmp_path / "run", run))))
    return found


def test_the_answer_is_the_largest_load_that_met_below_the_smallest_that_failed(tmp_path: Path) -> None:
    summary = summary_of(tmp_path, search_run(LOADS, flat_until(12.0), search_config({"ttft_p90_ms": 500})))
    found = summary["capacity"]
    assert [t["met"] for t in found["trials"]] == [True, True, False, True, False, False, True]
    assert (found["status"], found["answer"], found["bracket"]) == ("found", 11.81, {"met": 11.81, "failed": 12.33})
    assert found["interval"] == {"low": 11.81, "high": 12.33}
    assert found["message"] == "capacity 11.81 req/s: 11.81 met the objectives, 12.33 did not"
    assert found["trials"][2]["objectives"]["ttft_p90_ms"] == {
        "value": 2000.0, "limit": 500.0, "low": 2000.0, "high": 2000.0, "met": False, "certain": True
    }  # fmt: skip
    assert summary["validity"]["verdict"] == "VALID"


def test_an_invalid_trial_whose_bounds_cannot_change_its_outcome_is_used(tmp_path: Path) -> None:
    # Loop lag of 30 ms puts every latency beyond its 1 ms tolerance, but the TTFT p90 of 100 ms is 400 ms from its
    # limit: no error the client can have made moves it across, so the trial's outcome stands.
    run = search_run(LOADS, flat_until(12.0), search_config({"ttft_p90_ms": 500}), loop_lag_ms=[1.0, 30.0])
    summary = summary_of(tmp_path, run)
    trial = summary["capacity"]["trials"][1]
    assert summary["steps"][1]["validity"]["verdict"] == "INVALID"
    assert (trial["verdict"], trial["used"], trial["met"]) == ("INVALID", True, True)
    assert trial["reasons"][0] == "INVALID, used: no number out of tolerance could change its outcome"
    assert summary["capacity"]["answer"] == 11.81
    assert summary["validity"]["verdict"] == "VALID"
    assert any("INVALID, used by the search: its outcome stands" in w for w in summary["validity"]["warnings"])


def test_an_invalid_trial_whose_bound_straddles_a_limit_is_not_used(tmp_path: Path) -> None:
    # The same lag, and a limit within the client's bound of the figure: it could lie on either side.
    run = search_run(LOADS, flat_until(12.0), search_config({"ttft_p90_ms": 101}), loop_lag_ms=[1.0, 30.0])
    summary = summary_of(tmp_path, run)
    trial = summary["capacity"]["trials"][1]
    assert (trial["verdict"], trial["used"], trial["met"]) == ("INVALID", False, None)
    assert trial["reasons"][0].startswith("INVALID, not used: ttft_p90_ms 100 ± ")
    assert trial["reasons"][0].endswith("could lie on either side of 101")
    assert summary["validity"]["verdict"] == "VALID"
    assert any("INVALID, not used by the search" in w for w in summary["validity"]["warnings"])


def test_an_invalid_trial_of_a_goodput_search_is_not_used(tmp_path: Path) -> None:
    # Per-request SLOs judge each request against its limit: no single bound says whether the share could change.
    config = search_config({}, per_request={"ttft_ms": 500.0})
    run = search_run(LOADS, flat_until(12.0), config, loop_lag_ms=[1.0, 30.0])
    trial = summary_of(tmp_path, run)["capacity"]["trials"][1]
    assert (trial["verdict"], trial["used"]) == ("INVALID", False)
    assert trial["reasons"][0] == "INVALID, not used: per-request SLOs are judged request by request"


def test_a_pass_that_is_not_certain_widens_the_interval_to_the_last_certain_one(tmp_path: Path) -> None:
    def ttft(load: float, i: int) -> float:  # at 11.81, 5 of 60 over the limit: the p90 meets it, its bound does not
        return 2000.0 if load > 12 else 600.0 if load == 11.81 and i % 12 == 0 else 100.0

    found = summary_of(tmp_path, search_run(LOADS, ttft, search_config({"ttft_p90_ms": 500})))["capacity"]
    last = found["trials"][-1]
    assert (last["met"], last["certain"]) == (True, False)
    assert last["objectives"]["ttft_p90_ms"]["high"] == 600.0
    assert found["answer"] == 11.81
    assert found["interval"] == {"low": 11.31, "high": 12.33}


def test_a_saturated_trial_fails_whatever_its_percentiles(tmp_path: Path) -> None:
    def queue(load: float, i: int) -> float:  # above 12 req/s each request waits 20 ms longer than the one before
        return 100.0 + 20.0 * i if load > 12 else 100.0

    # A lenient p50 that the growing queue still meets at 12.33: saturation alone fails it.
    run = search_run([8.0, 16.0, 12.33], queue, search_config({"ttft_p50_ms": 5000}), n=150)
    summary = summary_of(tmp_path, run)
    trials = summary["capacity"]["trials"]
    assert summary["steps"][2]["saturation"]["saturated"] is True
    assert trials[2]["objectives"]["ttft_p50_ms"]["met"] is True
    assert (trials[2]["met"], trials[2]["saturated"]) == (False, True)
    assert trials[2]["reasons"][0] == "SATURATED: the queue kept growing"
    assert summary["capacity"]["status"] == "budget"  # a 1.54× bracket, not narrowed to 5 %


@pytest.mark.parametrize(
    ("loads", "capacity_rps", "max_trials", "status", "said"),
    [
        ([4.0, 8.0, 16.0], 12.0, 3, "budget", "the trial budget ran out first: the best bracket so far"),
        ([4.0, 2.0, 1.0], 0.5, 3, "none_met", "no load meets the objectives: even 1 req/s failed"),
        ([4.0, 8.0, 16.0], 100.0, 3, "all_met", "capacity at least 16 req/s: every load tried met the objectives"),
    ],
)
def test_each_way_a_search_ends_has_its_status_and_says_so(
    tmp_path: Path, loads: list[float], capacity_rps: float, max_trials: int, status: str, said: str
) -> None:
    config = search_config({"ttft_p90_ms": 500}, max_trials=max_trials)
    found = summary_of(tmp_path, search_run(loads, flat_until(capacity_rps), config))["capacity"]
    assert found["status"] == status
    assert said in found["message"]


def test_a_goodput_objective_is_judged_on_the_share_meeting_every_per_request_slo(tmp_path: Path) -> None:
    config = search_config({}, per_request={"ttft_ms": 500.0})
    found = summary_of(tmp_path, search_run([4.0, 16.0], flat_until(12.0), config))["capacity"]
    assert [t["objectives"]["goodput"]["value"] for t in found["trials"]] == [1.0, 0.0]
    assert [t["met"] for t in found["trials"]] == [True, False]


def test_the_quantile_bounds_cover_the_true_quantile_as_often_as_they_claim() -> None:
    rng = np.random.default_rng(7)
    q, n, true = 0.9, 80, float(stats.expon.ppf(0.9))
    low_misses = high_misses = 0
    for _ in range(2000):
        low, high = capacity.quantile_interval(rng.exponential(size=n), q)
        assert low is not None and high is not None
        low_misses += low > true
        high_misses += high < true
    assert low_misses / 2000 <= 0.05 + 0.015 and high_misses / 2000 <= 0.05 + 0.015
    assert capacity.quantile_interval(np.arange(1.0, 299.0), 0.99)[1] is None  # 298 samples cannot bound a p99
    assert capacity.quantile_interval(np.arange(1.0, 300.0), 0.99)[1] == 299.0  # 299: the largest one


def _capacity(answer: float | None, low: float | None, high: float | None) -> dict[str, Any]:
    return {"mode": "rate", "unit": "req/s", "answer": answer, "interval": {"low": low, "high": high}, "trials": [{}]}


@pytest.mark.parametrize(
    ("current", "status"),
    [
        (_capacity(8.0, 8.0, 9.0), "fail"),  # -32 %, its interval wholly below the baseline's
        (_capacity(10.0, 8.0, 11.5), "pass"),  # -15 %, but within both searches' uncertainty
        (_capacity(11.5, 11.0, 12.0), "pass"),  # -2.6 %: within the 5 % allowed
        (_capacity(None, 0.0, 1.0), "skip"),  # no capacity found: the gate's max_rate_min says what that means
    ],
)
def test_a_capacity_regresses_only_when_it_falls_beyond_both_searches_uncertainty(
    current: dict[str, Any], status: str
) -> None:
    compared = capacity.compare(_capacity(11.81, 11.31, 12.33), current, 0.05)
    assert compared.status == status
    assert compared.metric == "capacity (req/s)"
