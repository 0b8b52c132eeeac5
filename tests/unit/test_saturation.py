"""The saturation test on synthetic queues: a queue at twice its capacity is flagged within 10 s, live, as
`--stop-when-saturated` checks it; stable queues at 70 % load are not; a closed loop never is. The error rates the
module's docstring states are these counts."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from scipy import stats

from harness.analysis import saturation
from harness.analysis.stats import Floats

SERVERS, SERVICE_S, TTFT_S = 16, 1.4, 0.13  # the simulator's queue-bound setting in benchmarks/capacity_search
CAPACITY = SERVERS / SERVICE_S


def queue(load: float, duration_s: float, seed: int) -> tuple[Floats, Floats, Floats]:
    """Poisson arrivals at `load` × capacity for `duration_s`, served FIFO by `SERVERS` slots for `SERVICE_S` each,
    the first token `TTFT_S` after service starts: send, first-token and end times (ns)."""
    rng = np.random.default_rng(seed)
    sent, t = [], 0.0
    while t < duration_s:
        sent.append(t)
        t += rng.exponential(1 / (load * CAPACITY))
    free = [0.0] * SERVERS
    first, end = [], []
    for arrival in sent:
        begin = max(arrival, heapq.heappop(free))
        heapq.heappush(free, begin + SERVICE_S)
        first.append(begin + TTFT_S)
        end.append(begin + SERVICE_S)
    return np.array(sent) * 1e9, np.array(first) * 1e9, np.array(end) * 1e9


def flagged_at(sent: Floats, first: Floats, end: Floats, duration_s: float) -> float | None:
    """When a live check every 0.5 s, seeing only what has happened by then, first finds the step saturated."""
    for k in range(1, int(duration_s / 0.5) + 1):
        now = k * 0.5e9
        seen = sent <= now
        s = sent[seen]
        f = np.where(first[seen] <= now, first[seen], np.nan)
        e = np.where(end[seen] <= now, end[seen], np.nan)
        start = saturation.window_start(0.0, 0.0, s, e)
        if np.isfinite(start) and saturation.detect(s, f, e, start, now).saturated:
            return now / 1e9
    return None


def test_a_queue_at_twice_its_capacity_is_flagged_within_ten_seconds() -> None:
    times = [flagged_at(*queue(2.0, 10.0, seed), 10.0) for seed in range(100)]
    found = [t for t in times if t is not None]
    assert len(found) >= 99
    assert max(found) <= 10.0
    assert float(np.median(found)) <= 7.0


def test_stable_queues_at_70_percent_are_not_flagged() -> None:
    times = [flagged_at(*queue(0.7, 30.0, seed), 30.0) for seed in range(100)]
    assert sum(t is not None for t in times) <= 1


def test_the_whole_step_of_an_overloaded_queue_is_saturated_and_a_stable_one_is_not() -> None:
    for load, expected in ((2.0, True), (0.5, False)):
        sent, first, end = queue(load, 20.0, seed=1)
        start = saturation.window_start(0.0, 0.0, sent, end)
        found = saturation.detect(sent, first, end, start, 20e9)
        assert found.saturated is expected
        assert found.in_flight is not None and found.ttft is not None
        assert (found.in_flight.rise > 20) is expected


def test_a_closed_loop_holding_its_users_in_flight_is_never_saturated() -> None:
    # 8 users back to back, each request 1 s, its TTFT growing: the in-flight count stays 8.
    sent = np.array([u * 1e9 / 8 + k * 1e9 for k in range(20) for u in range(8)])
    end = sent + 1e9
    first = sent + np.linspace(1e7, 5e8, sent.size)
    found = saturation.detect(sent, first, end, 2e9, 19e9)
    assert found.saturated is False
    assert found.ttft is not None and found.ttft.p < 0.01  # TTFT rose, but no queue did


def test_a_window_too_short_is_not_judged() -> None:
    sent, first, end = queue(2.0, 10.0, seed=0)
    assert saturation.detect(sent, first, end, 1e9, 3.5e9).saturated is None
    assert saturation.window_start(0.0, 0.0, sent, np.full(sent.size, np.nan)) == np.inf


@pytest.mark.parametrize("n", [5, 6, 9, 14, 20])
def test_the_mann_kendall_p_value_is_exact_without_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(50):
        y = rng.normal(size=n) + 0.2 * np.arange(n)
        trend = saturation.detect_trend(y)
        assert trend is not None
        expected = stats.kendalltau(np.arange(n), y, alternative="greater")
        assert trend.tau == pytest.approx(expected.statistic)
        assert trend.p == pytest.approx(expected.pvalue)
        assert trend.rise == pytest.approx(stats.theilslopes(y).slope * (n - 1))


@pytest.mark.parametrize(("load", "duration_s", "low", "high"), [(0.9, 30.0, 0, 12), (1.1, 20.0, 40, 65)])
def test_near_capacity_the_test_flags_as_often_as_its_docstring_says(
    load: float, duration_s: float, low: int, high: int
) -> None:
    flagged = sum(flagged_at(*queue(load, duration_s, seed), duration_s) is not None for seed in range(100))
    assert low <= flagged <= high
