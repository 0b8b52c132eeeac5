"""Percentiles in the benchmarks' tables (`benchmarks.support.stats`): nearest rank, as the harness reports them."""

from __future__ import annotations

import math

from benchmarks.support.stats import abs_p99, percentile


def test_percentiles_are_samples_by_nearest_rank() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.0  # the smallest value with half of them at or below it
    assert percentile(values, 51) == 3.0
    assert percentile(values, 99) == 4.0
    assert percentile(values, 0) == 1.0
    assert percentile(list(range(1, 201)), 99) == 198


def test_no_values_have_no_percentile() -> None:
    assert math.isnan(percentile([], 50))
    assert math.isnan(abs_p99([]))


def test_abs_p99_takes_the_error_whichever_its_sign() -> None:
    assert abs_p99([-5.0, 1.0, 2.0]) == 5.0
    assert abs_p99([0.5, -0.25]) == 0.5
