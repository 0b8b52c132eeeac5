"""Percentiles as every table of the harness reports them: nearest rank (`harness.analysis.stats`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.analysis.stats import nearest_rank


def percentile(values: Sequence[float], q: float) -> float:
    """The exact q-th percentile (0–100) of the values, one of them; NaN when there are none."""
    if len(values) == 0:
        return float("nan")
    return float(nearest_rank(np.asarray(values, dtype=np.float64), q))


def abs_p99(values: Sequence[float]) -> float:
    """The 99th percentile of the absolute values: how far off an error gets, whichever its sign."""
    return percentile([abs(v) for v in values], 99)
