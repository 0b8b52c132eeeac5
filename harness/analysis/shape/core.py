"""The summary's figures per step and overall, their bounds and verdict, the limit, timing error and conformance
(`harness.analysis.shape` gathers every part)."""

# No `from __future__ import annotations`: `NotRequired` must be evaluated for `__required_keys__` to be right.
from typing import Any, Literal, NotRequired, TypedDict

from harness.analysis.shape.server import ServerStep

ValidityVerdict = Literal["VALID", "INVALID", "UNUSABLE"]  # a gate's is PASS, FAIL, UNUSABLE
Cause = Literal["send", "reads", "loop", "granularity", "lateness", "load"]
Stat = Literal["mean", "min", "p50", "p90", "p95", "p99", "p99_9", "max"]


class Bounds(TypedDict, total=False):
    mean: float | None
    min: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    p99_9: float | None
    max: float | None


class Causes(TypedDict, total=False):
    mean: Cause | None
    min: Cause | None
    p50: Cause | None
    p90: Cause | None
    p95: Cause | None
    p99: Cause | None
    p99_9: Cause | None
    max: Cause | None


class Distribution(TypedDict):
    count: int
    mean: float | None
    min: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    p99_9: float | None
    max: float | None
    bounds: NotRequired[Bounds]
    causes: NotRequired[Causes]


class Requests(TypedDict):
    total: int
    ok: int
    errors: int
    rate_limited: int
    throttled: int
    by_error: dict[str, int]


class Rates(TypedDict):
    error: float | None
    rate_limited: float | None
    conformance_error: float | None
    output_error: NotRequired[float | None]


class Tokens(TypedDict):
    prompt: Distribution
    completion: Distribution
    prompt_target_mean: float | None
    completion_target_mean: float | None


class KeyShare(TypedDict):
    requests: int
    ok: int
    rate_limited: int
    output_tokens_per_s: float


class Fairness(TypedDict):
    jain_index: float | None
    keys: dict[str, KeyShare]


class Load(TypedDict):
    loop_lag_ms: Distribution
    cpu_s: float
    cpu_utilization: float | None


class FirstError(TypedDict):
    status: int | None
    kind: str
    detail: str | None


class Offered(TypedDict):
    mode: Literal["concurrency", "rate"]
    asked: float
    value: float
    bound: float
    relative_error: float


class Unserved(TypedDict):
    count: int
    max_age_ms: float | None
    ages_ms: list[float]


class Service(TypedDict):
    users: int | None
    starved_users: int | None
    starved_user_ids: list[int] | None
    starved_keys: list[str]
    wait_for_service_ms: Distribution
    fairness_users: float | None
    unserved_at_end: Unserved


class Tolerance(TypedDict):
    abs_ms: float
    rel: float


class Worst(TypedDict):
    step: NotRequired[int]
    label: NotRequired[str]
    metric: str
    stat: str
    value: float
    bound: float
    tolerance: float
    ratio: float
    cause: str | None


class Validity(TypedDict):
    verdict: ValidityVerdict
    reasons: list[str]
    warnings: list[str]
    limits: NotRequired[dict[str, Any]]
    tolerances: NotRequired[dict[str, Tolerance]]
    worst: NotRequired[Worst | None]


class Table(TypedDict):
    """The figures of one step, or of the whole run (`overall`)."""

    window_s: float
    requests: Requests
    rates: Rates
    throttled_s: float
    throughput: dict[str, float]
    goodput_fraction: float | None
    latency_ms: dict[str, Distribution]
    tokens: Tokens
    scheduled_rate: float | None
    achieved_rate: float | None
    fairness: Fairness | None
    load: Load
    validity: NotRequired[Validity]
    responses_429: NotRequired[int]
    first_error: NotRequired[FirstError | None]
    throughput_bounds: NotRequired[dict[str, float] | None]
    offered: NotRequired[Offered | None]
    service: NotRequired[Service]
    server: NotRequired[ServerStep | None]


class Trend(TypedDict):
    tau: float
    p: float
    rise: float
    level: float


class Saturation(TypedDict):
    saturated: bool | None
    stopped: bool
    stopped_at_s: float | None
    window_s: float
    in_flight: Trend | None
    ttft_ms: Trend | None


class SteadyState(TypedDict):
    method: Literal["fixed", "mser5"]
    start_ns: int
    warmup_s: float
    warmup_requests: int


class StepSummary(Table):
    step: int
    label: str
    mode: Literal["concurrency", "rate", "ramp"]
    concurrency: int | None
    rate: float | None
    rate_end: float | None
    arrival: str | None
    burstiness: float | None
    max_concurrency: int | None
    warmup_requests: int
    warmup_responses_429: NotRequired[int]
    warmup_errors: NotRequired[int]
    repeat: NotRequired[int | None]
    saturation: NotRequired[Saturation]
    steady_state: NotRequired[SteadyState]


class Knee(TypedDict):
    mode: Literal["concurrency", "rate"]
    load: float
    step: int
    label: str
    output_tokens_per_s: float
    best_output_tokens_per_s: float
    fraction: float


class LimitStep(TypedDict):
    step: int
    label: str
    concurrency: int
    side: Literal["at_or_below", "above", "not_judged"]
    responses_429: int
    errors: int
    requests: int
    honoured: bool | None
    starved_users: NotRequired[int | None]
    wait_for_service_p99_ms: NotRequired[float | None]
    wait_for_service_max_ms: NotRequired[float | None]
    unserved_at_end: NotRequired[int]
    fairness_users: NotRequired[float | None]


class Limit(TypedDict):
    concurrency_limit: int
    keys: int
    honoured: bool
    responses_429_at_or_below: int
    steps_above_without_429: int
    error_rate_at_or_below: float | None
    steps: list[LimitStep]


class TruthCell(TypedDict):
    measured: float | None
    true: float | None
    error: float | None
    bound: float | None
    covered: bool
    true_bound: NotRequired[float | None]


class ReceivedBy(TypedDict):
    kernel: int
    loop: int
    unknown: int


class TimingError(TypedDict):
    matched: int
    unmatched: int
    received_by: NotRequired[ReceivedBy]
    ttft: Distribution
    itl: Distribution
    cells: NotRequired[dict[str, dict[str, TruthCell]]]


class Failure(TypedDict):
    nodeid: str
    group: NotRequired[str | None]
    outcome: Literal["failed", "error"]
    message: str | None


class Conformance(TypedDict):
    passed: bool
    path: str
    summary: dict[str, int]
    features: NotRequired[dict[str, str]]
    failures: list[Failure]


class Slo(TypedDict, total=False):
    ttft_ms: float
    tpot_ms: float
    itl_ms: float
    e2e_ms: float
