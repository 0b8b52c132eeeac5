"""What happened over a run's time, in bins: requests in flight, token and request rates, 429s and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.stats import Floats
from harness.records.record import Record, RunFile


def _ramp_sums(starts: Floats, at: Floats) -> Floats:
    """Σ max(0, t − s) over the starts s, for each t: the integral of how many intervals have begun."""
    ordered = np.sort(starts)
    before = np.searchsorted(ordered, at, side="right")
    cumulative = np.concatenate(([0.0], np.cumsum(ordered)))
    return np.asarray(before * at - cumulative[before], dtype=np.float64)


def _bin_width(span_s: float) -> float:
    """A round bin width giving at most ~200 bins."""
    for width in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0):
        if span_s / width <= 200:
            return width
    return float(np.ceil(span_s / 200 / 60.0) * 60.0)


def timeline(run: RunFile, bin_s: float | None = None) -> pd.DataFrame:
    """What happened over time, every request included (warm-up too), in bins from the run's origin.

    Columns: `t_s` (bin start, s), `in_flight` (mean requests between their last send and their end),
    `output_tokens_per_s` (content tokens as they arrived), `requests_per_s` (successes by end time),
    `responses_429_per_s` and `errors_per_s` (other failures). The moments of the 429s a retried request met are
    not recorded: they are spread evenly over the time it was throttled.
    """
    records = [r for r in run.requests if r.sent_ns is not None]
    ends = np.array([last_ns(r) for r in records], dtype=np.float64) / 1e9
    sent = np.array([r.sent_ns for r in records], dtype=np.float64) / 1e9
    span = float(ends.max()) if len(ends) else 0.0
    width = bin_s or _bin_width(span)
    # Bins cover the whole run; the last end lands inside the last bin.
    edges: Floats = np.arange(int(span // width) + 2, dtype=np.float64) * width
    busy = _ramp_sums(sent, edges) - _ramp_sums(ends, edges)
    chunk_at = np.array([t for r in records for t in r.chunk_ns], dtype=np.float64) / 1e9
    chunk_tokens = np.array(
        [
            n
            for r in records
            for n in (r.chunk_tokens if len(r.chunk_tokens) == len(r.chunk_ns) else [1] * len(r.chunk_ns))
        ],
        dtype=np.float64,
    )
    ok = np.array([r.error_kind is None for r in records], dtype=bool)
    limited = np.array([r.error_kind == "rate_limited" for r in records], dtype=bool)
    rejected: list[float] = []
    for r in records:
        earlier = max(0, r.attempts - 1)
        if earlier:
            first = (r.sent_ns or 0) - r.throttled_ns
            rejected += [(first + r.throttled_ns * k / earlier) / 1e9 for k in range(earlier)]
        if r.status == 429:
            rejected.append((r.sent_ns or 0) / 1e9)

    def per_s(times: Floats, weights: Floats | None = None) -> Floats:
        counts, _ = np.histogram(times, bins=edges, weights=weights)
        return np.asarray(counts, dtype=np.float64) / width

    return pd.DataFrame(
        {
            "t_s": edges[:-1],
            "in_flight": np.diff(busy) / width,
            "output_tokens_per_s": per_s(chunk_at, chunk_tokens),
            "requests_per_s": per_s(ends[ok]),
            "responses_429_per_s": per_s(np.asarray(rejected, dtype=np.float64)),
            "errors_per_s": per_s(ends[~ok & ~limited]),
        }
    )


def last_ns(r: Record) -> int:
    """When a request was over: its end, else the last thing seen of it."""
    for value in (r.end_ns, r.chunk_ns[-1] if r.chunk_ns else None, r.headers_ns, r.sent_ns):
        if value is not None:
            return value
    return r.scheduled_ns
