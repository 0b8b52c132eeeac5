"""Statistics of a sample, as every table of the project reports them: exact percentiles, Jain's index.

Percentiles are nearest rank (the smallest sample with at least q % of the samples at or below it), so a reported
percentile is always one of the samples, and it is monotone in every sample — which `harness.analysis.bounds` relies on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9))
STATS: tuple[str, ...] = ("mean", "min", *(name for name, _ in PERCENTILES), "max")
"""The statistics of a distribution, in the order `statistics` gives them."""
_QS = [q for _, q in PERCENTILES]


def round6(value: float) -> float:
    return round(value, 6)


def nearest_rank(values: Floats, q: float | Sequence[float], axis: int | None = None) -> Any:
    """The exact q-th percentile (0–100): the smallest sample with at least q% of the samples at or below it."""
    return np.percentile(values, q, axis=axis, method="inverted_cdf")


def statistics(values: Floats) -> Floats:
    """`STATS` of a non-empty array of finite values, in that order."""
    return np.concatenate(([values.mean(), values.min()], nearest_rank(values, _QS), [values.max()]))


def distribution(values: Iterable[float] | Floats) -> dict[str, Any]:
    """Count, mean, min, exact percentiles and max of the finite values (None for each when there are none)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    out: dict[str, Any] = {"count": int(a.size)}
    if a.size == 0:
        return out | dict.fromkeys(STATS)
    return out | {name: round6(float(v)) for name, v in zip(STATS, statistics(a), strict=True)}


def jain_index(values: Sequence[float]) -> float | None:
    """(Σx)² / (n·Σx²): 1 when every share is the same, 1/n when one got everything."""
    x = np.asarray(values, dtype=np.float64)
    squares = float((x * x).sum())
    if x.size == 0 or squares == 0:
        return None
    return round6(float(x.sum()) ** 2 / (x.size * squares))
