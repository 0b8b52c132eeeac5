"""The figures of sessions, prefix caching and trace replay (`summary.traffic`: `harness.analysis.traffic`)."""

# No `from __future__ import annotations`: `NotRequired` must be evaluated for `__required_keys__` to be right.
from typing import Literal, TypedDict

from harness.analysis.shape.core import Distribution


class TrafficTurn(TypedDict):
    turn: int
    requests: int
    ok: int
    ttft_ms: Distribution
    prompt_tokens_mean: float | None
    history_tokens_mean: float | None
    cached_tokens_mean: float | None
    cache_hit_share: float | None


class TrafficContext(TypedDict):
    min_tokens: int
    max_tokens: int | None
    requests: int
    ttft_ms: Distribution


class TrafficCache(TypedDict):
    requests: int
    reported: int
    with_hits: int
    prompt_tokens: int
    cached_tokens: int
    hit_share: float | None
    prefix_groups: int


class TrafficSessions(TypedDict):
    count: int
    complete: int
    stopped: int
    turns: Distribution
    duration_ms: Distribution
    think_ms: Distribution
    corrected_duration_ms: Distribution


class TrafficReplay(TypedDict):
    requests: int
    sent: int
    lag_ms: Distribution
    trace_rate: float | None
    achieved_rate: float | None
    seconds: int
    per_second_max_error: int | None
    per_second_mean_error: float | None


class Traffic(TypedDict):
    """Real-traffic figures: `harness.analysis.traffic`."""

    workload: Literal["requests", "sessions", "trace"]
    turns: list[TrafficTurn] | None
    context: list[TrafficContext]
    cache: TrafficCache
    sessions: TrafficSessions | None
    replay: TrafficReplay | None
