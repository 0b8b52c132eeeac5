"""Saturation within a step: a queue that keeps growing, so that the step measures its own length, not the target.

**The test.** The step's window opens one median E2E after the step's start (an open loop's in-flight count takes
about one service time to rise to its level; that rise is no queue), and not before its measurement starts; it
closes when the step stops sending. It is cut into K equal bins (one per 0.5 s, 6 ≤ K ≤ 20), and two series are formed:
- in flight: the mean number of the step's requests between their send and their end, per bin;
- TTFT: the median TTFT of the requests whose first token came in each bin (bins without one left out): the wait of
  the requests the target was taking up then, which in a growing queue grows with the queue.
Each series gets the Mann–Kendall trend test (Kendall's τ against bin order, one-sided: rising; exact without
ties) and a Theil–Sen slope. The step is SATURATED when both series rise with p < 0.01 and each grew over the
window, along its Theil–Sen line, by at least half its median level — the in-flight count also by at least four
times its Poisson spread (√level) and 2 requests, which a stable queue's count seldom wanders in a window. A window
shorter than 3 s, or with fewer than 5 TTFT bins, is not judged. A closed loop cannot saturate this way: its users
hold the in-flight count constant.

**Error rates.** Bin means of a stable queue are autocorrelated, so the nominal α (0.01 per series, both required)
is not the false-alarm rate; the growth criteria are what keep stable steps quiet. Measured on synthetic M/D/16
queues (Poisson arrivals; `tests/unit/test_saturation.py`, 100 seeds each, checked live every 0.5 s as
`--stop-when-saturated` does): at 2× capacity 99 flagged within 10 s (median 6.5 s); at 0.7× one false alarm (a
real episode of waits up to 0.6 s); at 0.9× 9 and at 0.97× 19 over 30 s — near capacity a stable queue wanders,
and over a finite step that wander is hard to tell from growth; at 1.1× 51 within 20 s: a queue growing by a tenth
of the rate shows slowly. On the simulator (`python -m benchmarks.capacity_search`, `benchmarks/RESULTS.md`): 2×
capacity is flagged within 10 s, and 0.7× counts its false alarms over 20 seeded runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.analysis.stats import Floats, round6
from harness.records.record import Record, StepInfo

ALPHA = 0.01
GROWTH = 0.5  # of the series' median level, over the window
MIN_RISE_REQUESTS = 2.0
SPREAD = 4.0  # an in-flight count's rise, in units of its Poisson spread (√level)
BIN_S = 0.5
MIN_BINS, MAX_BINS = 6, 20
MIN_WINDOW_S = 3.0
MIN_TTFT_BINS = 5
_NAN = float("nan")


@dataclass(frozen=True, slots=True)
class Trend:
    """One series' trend: Kendall's τ and its one-sided p-value, the Theil–Sen rise over the window, the level."""

    tau: float
    p: float
    rise: float
    level: float

    def rising(self, counted: bool = False) -> bool:
        """Significant, and grown by half its level — a count (in flight) also by `SPREAD` of its Poisson spread and
        by `MIN_RISE_REQUESTS`."""
        floor = max(SPREAD * math.sqrt(max(self.level, 1.0)), MIN_RISE_REQUESTS) if counted else 0.0
        return self.p < ALPHA and self.rise >= max(GROWTH * self.level, floor)

    def as_dict(self) -> dict[str, float]:
        return {"tau": round6(self.tau), "p": round6(self.p), "rise": round6(self.rise), "level": round6(self.level)}


@dataclass(frozen=True, slots=True)
class Finding:
    """The test's result over one window: `saturated` None when the window was too short to judge."""

    saturated: bool | None
    window_s: float
    in_flight: Trend | None = None
    ttft: Trend | None = None

    def describe(self) -> str:
        if self.saturated is None or self.in_flight is None or self.ttft is None:
            return f"not judged ({self.window_s:.1f} s window)"
        return (
            f"in flight {self.in_flight.level:.3g} → +{self.in_flight.rise:.3g} (p {self.in_flight.p:.2g}), "
            f"TTFT {self.ttft.level:.4g} ms → +{self.ttft.rise:.4g} ms (p {self.ttft.p:.2g}) over {self.window_s:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "saturated": self.saturated,
            "window_s": round6(self.window_s),
            "in_flight": None if self.in_flight is None else self.in_flight.as_dict(),
            "ttft_ms": None if self.ttft is None else self.ttft.as_dict(),
        }


@functools.lru_cache(maxsize=64)
def _at_most(n: int) -> Floats:
    """P(at most k inversions), k = 0 … n(n − 1)/2, for n untied values in random order: the exact null
    distribution of the Mann–Kendall statistic, from the Mahonian numbers (permutations by inversions)."""
    counts: Floats = np.ones(1)
    for k in range(2, n + 1):
        counts = np.asarray(np.convolve(counts, np.ones(k)), dtype=np.float64)  # a k-th value: 0 … k − 1 more
    return np.asarray(np.cumsum(counts) / counts.sum(), dtype=np.float64)


def _mann_kendall(y: Floats) -> tuple[float, float]:
    """Kendall's τ of the series against its order and the one-sided p-value of a rise: exact without ties (the
    permutation distribution), else the normal approximation with the ties' variance and a continuity correction."""
    n = y.size
    i, j = np.triu_indices(n, 1)
    s = float(np.sign(y[j] - y[i]).sum())
    pairs = n * (n - 1) / 2
    _, ties = np.unique(y, return_counts=True)
    if np.all(ties == 1):
        # S = pairs in order − pairs out of order = pairs − 2 · inversions, so S ≥ s ⇔ inversions ≤ (pairs − s) / 2.
        return s / pairs, float(_at_most(n)[round((pairs - s) / 2)])
    variance = (n * (n - 1) * (2 * n + 5) - float(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18
    z = (s - math.copysign(1.0, s)) / math.sqrt(variance) if s else 0.0
    return s / pairs, 0.5 * math.erfc(z / math.sqrt(2))


def _theil_sen(x: Floats, y: Floats) -> float:
    """The median of the slopes between every two points."""
    i, j = np.triu_indices(x.size, 1)
    return float(np.median((y[j] - y[i]) / (x[j] - x[i])))


def detect_trend(values: Floats) -> Trend | None:
    """Mann–Kendall and Theil–Sen over a series indexed by bin (a flat one does not rise); None with too few points."""
    x = np.arange(values.size, dtype=np.float64)
    keep = np.isfinite(values)
    x, y = x[keep], values[keep]
    if y.size < MIN_TTFT_BINS:
        return None
    if np.all(y == y[0]):
        return Trend(0.0, 1.0, 0.0, float(y[0]))
    tau, p = _mann_kendall(y)
    return Trend(tau, p, _theil_sen(x, y) * float(x[-1] - x[0]), float(np.median(y)))


def _in_flight(sent: Floats, end: Floats, edges: Floats) -> Floats:
    """Mean requests in flight per bin: each request's overlap with each bin, summed, over the bin's width."""
    a, b = edges[:-1], edges[1:]
    overlap = np.minimum(end[:, None], b[None, :]) - np.maximum(sent[:, None], a[None, :])
    return np.asarray(np.clip(overlap, 0, None).sum(axis=0) / (b - a), dtype=np.float64)


def _ttft_medians(first: Floats, ttft: Floats, edges: Floats) -> Floats:
    """The median TTFT of the requests whose first token came in each bin (NaN for a bin with none)."""
    bins = np.searchsorted(edges, first, side="right") - 1
    keep = np.isfinite(ttft) & (bins >= 0) & (bins < edges.size - 1)
    bins, values = bins[keep], ttft[keep]
    order = np.lexsort((values, bins))
    bins, values = bins[order], values[order]
    counts = np.bincount(bins, minlength=edges.size - 1)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full(edges.size - 1, _NAN)
    has = counts > 0
    low, high = starts[has] + (counts[has] - 1) // 2, starts[has] + counts[has] // 2
    out[has] = (values[low] + values[high]) / 2
    return out


def detect(sent_ns: Floats, first_ns: Floats, end_ns: Floats, start_ns: float, stop_ns: float) -> Finding:
    """The test over [start_ns, stop_ns] on the requests' send, first-token and end times (NaN: not yet, or never);
    a request not ended by `stop_ns` is in flight until then."""
    window_s = max(0.0, (stop_ns - start_ns) / 1e9)
    if window_s < MIN_WINDOW_S:
        return Finding(None, window_s)
    bins = min(MAX_BINS, max(MIN_BINS, math.floor(window_s / BIN_S)))
    edges = np.linspace(start_ns, stop_ns, bins + 1)
    sent = sent_ns[np.isfinite(sent_ns)]
    first, end = first_ns[np.isfinite(sent_ns)], end_ns[np.isfinite(sent_ns)]
    flight = detect_trend(_in_flight(sent, np.where(np.isfinite(end), end, stop_ns), edges))
    waits = detect_trend(_ttft_medians(first, (first - sent) / 1e6, edges))
    if flight is None or waits is None:
        return Finding(None, window_s, flight, waits)
    return Finding(flight.rising(counted=True) and waits.rising(), window_s, flight, waits)


def times(records: Sequence[Record]) -> tuple[Floats, Floats, Floats]:
    """Send, first-token and end times (ns) of requests, NaN where the moment has not come (or never came)."""
    out = np.full((3, len(records)), _NAN)
    for i, r in enumerate(records):
        if r.sent_ns is not None:
            out[0, i] = r.sent_ns
        if r.first_token_ns is not None:
            out[1, i] = r.first_token_ns
        if r.end_ns is not None:
            out[2, i] = r.end_ns
    return out[0], out[1], out[2]


def window_start(measure_start_ns: float, started_ns: float, sent_ns: Floats, end_ns: Floats) -> float:
    """Where the test's window opens: one median E2E (of the requests ended by then; `end_ns` NaN for the others)
    after the step's start — an open loop's in-flight count takes about one service time to rise to its level — and
    not before the measurement starts; infinity while no request has ended."""
    ended = np.isfinite(end_ns) & np.isfinite(sent_ns)
    if not ended.any():
        return math.inf
    return max(measure_start_ns, started_ns + float(np.median(end_ns[ended] - sent_ns[ended])))


def of_step(step: StepInfo, records: Sequence[Record]) -> Finding:
    """The test over a whole step, from its records (every one of the step's requests, warm-up included)."""
    sent, first, end = times(records)
    stop = float(max(step.dispatch_end_ns, step.measure_start_ns))
    # As the live test saw it: the window opens by the E2E of the requests ended when sending stopped.
    ended = np.where(end <= stop, end, np.nan)
    start = window_start(float(step.measure_start_ns), float(step.started_ns), sent, ended)
    if not math.isfinite(start):
        return Finding(None, 0.0)
    return detect(sent, first, end, start, stop)
