"""The server's own view of each step and of the run, from its Prometheus metrics scraped during the run
(`harness.analysis.server`: `steps[].server`, `summary.server_metrics`)."""

# No `from __future__ import annotations`: `NotRequired` must be evaluated for `__required_keys__` to be right.
from typing import TypedDict

# The server's own view (`harness.analysis.server`), from its Prometheus metrics scraped during the run.


class ServerGauge(TypedDict):
    mean: float
    max: float
    samples: int


class ServerDistribution(TypedDict):
    """Interpolated in the histogram's buckets; `buckets` holds the bucket of each percentile (upper None: +Inf)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    buckets: dict[str, list[float | None]]


class TtftGap(TypedDict):
    """The client's TTFT less the server's: the means' (exact) and the percentiles', with the range the server's
    histogram bucket allows."""

    mean: float | None
    p50: float | None
    p99: float | None
    ranges: dict[str, list[float | None]]


class ServerStep(TypedDict):
    window_s: float
    scrapes: int
    running: ServerGauge | None
    waiting: ServerGauge | None
    client_in_flight: float | None
    kv_cache_usage: ServerGauge | None
    prefix_cache_hit_rate: float | None
    preemptions: float | None
    generation_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    client_output_tokens_per_s: float | None
    ttft_ms: ServerDistribution | None
    queue_time_ms: ServerDistribution | None
    e2e_ms: ServerDistribution | None
    ttft_gap_ms: TtftGap | None


class ServerMetricsSummary(TypedDict):
    """What was scraped and how it went; `sources`: the family each common name was read from."""

    url: str
    interval_s: float
    scrapes: int
    failed: int
    first_error: str | None
    families: int
    sources: dict[str, str]
