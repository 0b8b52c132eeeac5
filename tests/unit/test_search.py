"""The search's choices, driven by a fake trial function instead of a target: monotone and noisy targets, an SLO no
load meets, a budget too small, INVALID trials, users, and each trial's plan."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from harness.analysis import capacity
from harness.analysis.capacity import Mode, Trial
from harness.analysis.objectives import Objectives
from harness.load.plan import StepPlan
from harness.load.search import MIN_TRIAL_S, Search, SearchConfig, trial_plan

TEMPLATE = StepPlan(0, "concurrency", concurrency=1, warmup_s=1.0, duration_s=20.0, seed=3)
SLO = Objectives.parse("ttft_p99_ms=2000")
Outcome = Callable[[float], "bool | None"]  # met, failed, or None for an INVALID trial


def searched(config: SearchConfig, outcome: Outcome, e2e_s: float = 1.0) -> tuple[list[Trial], list[StepPlan]]:
    """Run a search whose trial at load L comes out `outcome(L)`, with L · `e2e_s` requests in flight."""
    plans: list[StepPlan] = []

    def judge(trial: int) -> Trial:
        plan = plans[-1]
        load = float(plan.rate if config.mode == "rate" else plan.concurrency or 0)
        met = outcome(load)
        in_flight = load if config.mode == "concurrency" else load * e2e_s
        return Trial(trial, plan.index, plan.label, load, "INVALID" if met is None else "VALID", met, True, False,
                     in_flight, plan.requests or 0, load)  # fmt: skip

    search = Search(config, TEMPLATE, judge)
    for plan in search.plans():
        plans.append(plan)
    return search.trials, plans


def status(trials: list[Trial], config: SearchConfig) -> capacity.Status:
    return capacity.status(trials, config.precision, config.mode, config.max_trials)


def test_a_monotone_target_is_bracketed_by_doubling_and_bisected_to_the_precision() -> None:
    config = SearchConfig("rate", SLO, start=1.0)
    trials, _ = searched(config, lambda load: load <= 12.3)
    assert [t.load for t in trials[:5]] == [1.0, 2.0, 4.0, 8.0, 16.0]
    low, high = capacity.bracket(trials)
    assert low is not None and high is not None
    assert status(trials, config) == "found"
    assert len(trials) == 9  # five to bracket, four to narrow a 2× bracket to 5 %
    assert 12.3 / 1.05 <= low.load <= 12.3 < high.load <= low.load * 1.05


@pytest.mark.parametrize("true", [float(c) for c in np.geomspace(1.05, 31.5, 25)])
def test_a_capacity_within_32_times_the_start_is_found_within_5_percent_in_10_trials(true: float) -> None:
    config = SearchConfig("rate", SLO, start=1.0)
    trials, _ = searched(config, lambda load: bool(load <= true))
    answer, _ = capacity.bracket(trials)
    assert status(trials, config) == "found" and len(trials) <= 10
    assert answer is not None and true / 1.05 <= answer.load <= true


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_target_still_ends_near_its_capacity(seed: int) -> None:
    rng = random.Random(seed)
    config = SearchConfig("rate", SLO, start=2.0)
    trials, _ = searched(config, lambda load: load <= 20.0 * (1 + rng.uniform(-0.02, 0.02)))
    answer, _ = capacity.bracket(trials)
    assert status(trials, config) == "found" and len(trials) <= 10
    assert answer is not None and 20.0 / 1.05 / 1.02 <= answer.load <= 20.0 * 1.02


def test_an_slo_no_load_meets_ends_where_requests_no_longer_overlap_with_a_clear_answer() -> None:
    config = SearchConfig("rate", SLO, start=8.0)
    trials, _ = searched(config, lambda load: False, e2e_s=0.5)
    assert [t.load for t in trials] == [8.0, 4.0, 2.0]  # at 2 req/s of 0.5 s requests, one is in flight at a time
    assert status(trials, config) == "none_met"
    said = capacity.message("none_met", None, trials[-1], "rate", trials)
    assert said.startswith("no load meets the objectives: even 2 req/s failed with 1.00 requests in flight")


def test_an_slo_no_number_of_users_meets_ends_at_one_user() -> None:
    config = SearchConfig("concurrency", SLO, start=4.0)
    trials, _ = searched(config, lambda users: False)
    assert [t.load for t in trials] == [4.0, 2.0, 1.0]
    assert status(trials, config) == "none_met"


def test_a_budget_too_small_ends_with_the_best_bracket_so_far_and_says_so() -> None:
    config = SearchConfig("rate", SLO, start=8.0, max_trials=3)
    trials, _ = searched(config, lambda load: load <= 12.3)
    assert [t.load for t in trials] == [8.0, 16.0, 11.31]
    assert status(trials, config) == "budget"
    low, high = capacity.bracket(trials)
    said = capacity.message("budget", low, high, "rate", trials)
    assert said == (
        "capacity 11.31 req/s: 11.31 met the objectives, 16 did not; the trial budget ran out first: the best "
        "bracket so far"
    )


def test_an_invalid_trial_is_run_once_more_and_twice_invalid_stops_the_search() -> None:
    config = SearchConfig("rate", SLO, start=4.0)
    flaky = iter([None, True, True, None, None])
    trials, _ = searched(config, lambda load: next(flaky))
    assert [(t.load, t.met) for t in trials] == [(4.0, None), (4.0, True), (8.0, True), (16.0, None), (16.0, None)]
    assert status(trials, config) == "invalid"


def test_users_are_bisected_in_whole_numbers_until_adjacent() -> None:
    config = SearchConfig("concurrency", SLO, start=1.0)
    trials, plans = searched(config, lambda users: users <= 13)
    assert all(p.mode == "concurrency" and p.concurrency == t.load for p, t in zip(plans, trials, strict=True))
    low, high = capacity.bracket(trials)
    assert (low and low.load, high and high.load) == (13.0, 14.0)
    assert status(trials, config) == "found"


def test_a_trial_lasts_for_its_percentiles_and_at_least_ten_seconds_of_sending() -> None:
    config = SearchConfig("rate", SLO, trial_requests=299)
    slow, fast = trial_plan(TEMPLATE, 1, 2.0, config), trial_plan(TEMPLATE, 2, 64.0, config)
    assert (slow.mode, slow.rate, slow.requests, slow.duration_s) == ("rate", 2.0, 299, None)
    assert fast.requests == 64 * MIN_TRIAL_S
    assert (slow.seed, fast.seed, slow.warmup_s, slow.index) == (4, 5, 1.0, 1)
    users = trial_plan(TEMPLATE, 0, 300.0, SearchConfig("concurrency", SLO, trial_requests=299))
    assert (users.concurrency, users.requests) == (300, 600)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"precision": 0.0}, "precision must be above 0"),
        ({"precision": -0.05}, "precision must be above 0"),
        ({"max_trials": 0}, "at least 1"),
        ({"objectives": Objectives()}, "needs objectives"),
        ({"start": 0.0}, "positive rate"),
        ({"mode": "concurrency", "start": 2.5}, "whole number of users"),
    ],
)
def test_a_search_that_cannot_be_run_is_refused(change: dict[str, object], said: str) -> None:
    fields: dict[str, object] = {"mode": "rate", "objectives": SLO} | change
    mode: Mode = "concurrency" if fields.pop("mode") == "concurrency" else "rate"
    with pytest.raises(ValueError, match=said):
        SearchConfig(mode, **fields)  # type: ignore[arg-type]
