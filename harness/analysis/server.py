"""The server's own view of each step, from its Prometheus metrics scraped during the run, beside the client's.

A step's server figures cover its measurement window (from the end of its warm-up to its last send), between the
successful scrapes nearest to each end (for a window shorter than the scrape interval, the scrapes around it) — the
scrapes are on the records' clock (`harness.records.server_metrics`).
Over that span: the server's running and waiting requests (mean and max of the scrapes inside) against the client's
requests in flight, its KV-cache use, its prefix-cache hit rate (hits over queries, as vLLM counts them in tokens),
its preemptions, its generation and prompt tokens per second against the output tokens per second the client
received, and its own TTFT, queue time and E2E distributions from the differences of its histograms' buckets.
A histogram's percentile is interpolated inside its bucket, as Prometheus's `histogram_quantile` does; the bucket
is kept beside it (`buckets`), since the truth may lie anywhere in it. The client's TTFT minus the server's, at p50 and
p99, is what lies outside the server's clock: the network, the front end, and the client itself.

The whole run's figures (`overall`) pool every step's window. `summary()` says what was scraped and which family each
common name was read from (`harness.analysis.families`); `timeline()` gives the series to draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.families import Histogram, Series, read
from harness.analysis.shape import (
    Distribution,
    ServerDistribution,
    ServerGauge,
    ServerMetricsSummary,
    ServerStep,
    TtftGap,
)
from harness.analysis.stats import Floats
from harness.analysis.stats import round6 as _round
from harness.analysis.timeline import last_ns
from harness.records.record import Record, StepInfo
from harness.records.server_metrics import ServerMetrics

QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
Window = tuple[int, int]  # ns since the run's origin


class Scraped:
    """A run's successful scrapes and the known series read from them."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        ok = metrics.ok
        self.at_ns = np.array([s.at_ns for s in ok], dtype=np.float64)
        self.series: dict[str, Series] = read(ok)

    def bracket(self, window: Window) -> tuple[int, int] | None:
        """The scrapes nearest to the window's start and end; for a window shorter than the scrape interval, whose
        ends are nearest to the same scrape, the scrapes around it. None: fewer than two scrapes span it."""
        at = self.at_ns
        if len(at) < 2:
            return None
        first, last = int(np.abs(at - window[0]).argmin()), int(np.abs(at - window[1]).argmin())
        if last <= first:
            first = max(0, int(np.searchsorted(at, window[0], side="right")) - 1)
            last = min(len(at) - 1, int(np.searchsorted(at, window[1], side="left")))
        return (first, last) if last > first else None


def windows(steps: Sequence[StepInfo]) -> dict[int, Window]:
    """Each step's measurement window: the end of its warm-up to its last send."""
    return {s.step: (s.measure_start_ns, max(s.dispatch_end_ns, s.measure_start_ns)) for s in steps}


def _gauge(scraped: Scraped, name: str, spans: Sequence[tuple[int, int]]) -> ServerGauge | None:
    series = scraped.series.get(name)
    if series is None:
        return None
    values = np.concatenate([series.values[a : b + 1] for a, b in spans])
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    return {"mean": _round(float(values.mean())), "max": _round(float(values.max())), "samples": int(values.size)}


def _delta(scraped: Scraped, name: str, spans: Sequence[tuple[int, int]]) -> float | None:
    series = scraped.series.get(name)
    return None if series is None else float(sum(series.values[b] - series.values[a] for a, b in spans))


def _per_s(value: float | None, seconds: float) -> float | None:
    return None if value is None or seconds <= 0 else _round(value / seconds)


def quantile(les: Floats, cumulative: Floats, q: float) -> tuple[float, float, float | None] | None:
    """The q-quantile of a histogram's cumulative bucket counts, interpolated in its bucket as Prometheus does, with
    that bucket's bounds (upper None: the +Inf bucket, where the value is the largest finite bound)."""
    total = float(cumulative[-1]) if cumulative.size else 0.0
    if total <= 0:
        return None
    rank = q * total
    j = int(np.searchsorted(cumulative, rank, side="left"))
    j = min(j, len(les) - 1)
    lower = float(les[j - 1]) if j > 0 else min(0.0, float(les[0]))
    upper = float(les[j])
    if not np.isfinite(upper):
        return lower, lower, None
    below = float(cumulative[j - 1]) if j > 0 else 0.0
    inside = float(cumulative[j]) - below
    value = upper if inside <= 0 else lower + (upper - lower) * (rank - below) / inside
    return value, lower, upper


def distribution_of(histogram: Histogram, scale: float, spans: Sequence[tuple[int, int]]) -> ServerDistribution | None:
    """What the histogram observed over the spans, in the common unit."""
    cumulative = sum((histogram.buckets[b] - histogram.buckets[a] for a, b in spans), np.zeros(len(histogram.les)))
    count = float(sum(histogram.count[b] - histogram.count[a] for a, b in spans))
    total = float(sum(histogram.sum[b] - histogram.sum[a] for a, b in spans))
    if count <= 0 or not len(histogram.les):
        return None
    out: dict[str, Any] = {"count": round(count), "mean": _round(total / count * scale), "buckets": {}}
    for name, q in QUANTILES:
        found = quantile(histogram.les, cumulative, q)
        out[name] = None if found is None else _round(found[0] * scale)
        if found is not None:
            upper = found[2]
            out["buckets"][name] = [_round(found[1] * scale), None if upper is None else _round(upper * scale)]
    result: ServerDistribution = out  # type: ignore[assignment]  # built key by key above
    return result


def _histogram(scraped: Scraped, name: str, spans: Sequence[tuple[int, int]]) -> ServerDistribution | None:
    series = scraped.series.get(name)
    if series is None or series.histogram is None:
        return None
    return distribution_of(series.histogram, series.known.scale, spans)


def _client(records: Sequence[Record], intervals: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The client's requests in flight (mean, from each one's last send to its end) and the output tokens per second
    it received, over the intervals (ns): warm-up requests too, since the server serves them as well."""
    sent = [r for r in records if r.sent_ns is not None]
    starts = np.array([r.sent_ns for r in sent], dtype=np.float64)
    ends = np.array([last_ns(r) for r in sent], dtype=np.float64)
    chunk_at = np.array([t for r in sent for t in r.chunk_ns], dtype=np.float64)
    tokens = np.array([n for r in sent for n in _chunk_tokens(r)], dtype=np.float64)
    span = sum(b - a for a, b in intervals)
    busy = sum(float(np.clip(np.minimum(ends, b) - np.maximum(starts, a), 0, None).sum()) for a, b in intervals)
    received = sum(float(tokens[(chunk_at >= a) & (chunk_at < b)].sum()) for a, b in intervals)
    return busy / span, received / span * 1e9


def _chunk_tokens(r: Record) -> Sequence[int]:
    return r.chunk_tokens if len(r.chunk_tokens) == len(r.chunk_ns) else [1] * len(r.chunk_ns)


def figures(
    scraped: Scraped, records: Sequence[Record], wanted: Sequence[Window], client_ttft: Distribution | None
) -> ServerStep | None:
    """The server's figures over the windows (one step's, or every step's for the whole run); None when the scrapes
    do not span them."""
    spans = [found for w in wanted if (found := scraped.bracket(w)) is not None]
    if not spans:
        return None
    intervals = [(float(scraped.at_ns[a]), float(scraped.at_ns[b])) for a, b in spans]
    seconds = sum(b - a for a, b in intervals) / 1e9
    in_flight, client_tokens = _client(records, intervals)
    queries, hits = _delta(scraped, "prefix_cache_queries", spans), _delta(scraped, "prefix_cache_hits", spans)
    hit_rate = _round(hits / queries) if hits is not None and queries else None
    gauge_rate = _gauge(scraped, "prefix_cache_hit_rate", spans)
    ttft = _histogram(scraped, "ttft", spans)
    result: ServerStep = {
        "window_s": _round(seconds),
        "scrapes": sum(b - a + 1 for a, b in spans),
        "running": _gauge(scraped, "running", spans),
        "waiting": _gauge(scraped, "waiting", spans),
        "client_in_flight": _round(in_flight),
        "kv_cache_usage": _gauge(scraped, "kv_cache_usage", spans),
        "prefix_cache_hit_rate": hit_rate if hit_rate is not None or gauge_rate is None else gauge_rate["mean"],
        "preemptions": _delta(scraped, "preemptions", spans),
        "generation_tokens_per_s": _per_s(_delta(scraped, "generation_tokens", spans), seconds),
        "prompt_tokens_per_s": _per_s(_delta(scraped, "prompt_tokens", spans), seconds),
        "client_output_tokens_per_s": _round(client_tokens),
        "ttft_ms": ttft,
        "queue_time_ms": _histogram(scraped, "queue_time", spans),
        "e2e_ms": _histogram(scraped, "e2e", spans),
        "ttft_gap_ms": _gap(client_ttft, ttft),
    }
    return result


def _gap(client: Distribution | None, server: ServerDistribution | None) -> TtftGap | None:
    """The client's TTFT less the server's: the network, the front end and the client. The means' difference is
    exact (a histogram's sum and count are); a server percentile may lie anywhere in its bucket, so each percentile's
    difference comes with the range that allows (`ranges`: the client's less the bucket's upper and lower bound;
    None where the bucket is unbounded)."""
    if client is None or server is None:
        return None
    gap: dict[str, Any] = {"mean": _difference(client["mean"], server["mean"]), "ranges": {}}
    for q in ("p50", "p99"):
        mine, theirs = client.get(q), server.get(q)
        if not isinstance(mine, int | float) or not isinstance(theirs, int | float):
            gap[q] = None
            continue
        gap[q] = _round(mine - theirs)
        lower, upper = server["buckets"].get(q, [theirs, theirs])
        gap["ranges"][q] = [_difference(mine, upper), _difference(mine, lower)]
    result: TtftGap = gap  # type: ignore[assignment]  # built key by key above
    return result


def _difference(value: float | None, less: float | None) -> float | None:
    return None if value is None or less is None else _round(value - less)


def summary(scraped: Scraped) -> ServerMetricsSummary:
    """What was scraped, how it went, and which family each common name was read from."""
    scrapes = scraped.metrics.scrapes
    failed = [s for s in scrapes if s.error is not None]
    names = {f.name for s in scrapes for f in s.families}
    return {
        "url": scraped.metrics.source.url,
        "interval_s": scraped.metrics.source.interval_s,
        "scrapes": len(scrapes),
        "failed": len(failed),
        "first_error": failed[0].error if failed else None,
        "families": len(names),
        "sources": {name: series.family for name, series in scraped.series.items()},
    }


def timeline(scraped: Scraped) -> pd.DataFrame:
    """At each successful scrape (`t_s` since the run's origin): the gauges, and since the scrape before it the
    generation tokens per second, the prefix-cache hit rate and the preemptions (NaN: not exported)."""
    n = len(scraped.at_ns)
    t_s = scraped.at_ns / 1e9

    def values(name: str) -> Floats:
        series = scraped.series.get(name)
        return series.values if series is not None else np.full(n, np.nan)

    def since_last(name: str) -> Floats:
        return np.concatenate(([np.nan], np.diff(values(name)))) if n else np.empty(0)

    with np.errstate(divide="ignore", invalid="ignore"):
        hit_rate = since_last("prefix_cache_hits") / since_last("prefix_cache_queries")
        tokens = since_last("generation_tokens") / np.concatenate(([np.nan], np.diff(t_s)))
    if "prefix_cache_hits" not in scraped.series:
        hit_rate = values("prefix_cache_hit_rate")
    return pd.DataFrame(
        {
            "t_s": t_s,
            "running": values("running"),
            "waiting": values("waiting"),
            "kv_cache_usage": values("kv_cache_usage"),
            "prefix_cache_hit_rate": hit_rate,
            "generation_tokens_per_s": tokens,
            "preemptions": since_last("preemptions"),
        }
    )
