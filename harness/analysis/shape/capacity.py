"""A capacity search's trials and answer (`summary.capacity`: `harness.analysis.capacity`) and repeated runs'
spread (`summary.repeats`: `harness.analysis.repeats`)."""

# No `from __future__ import annotations`: `NotRequired` must be evaluated for `__required_keys__` to be right.
from typing import Literal, TypedDict

from harness.analysis.shape.core import Slo, ValidityVerdict


class CapacitySlo(TypedDict):
    percentiles: dict[str, float]
    per_request: Slo | None
    goodput: float


class Check(TypedDict):
    value: float | None
    limit: float
    low: float | None
    high: float | None
    met: bool
    certain: bool


class Trial(TypedDict):
    trial: int
    step: int
    label: str
    load: float
    verdict: ValidityVerdict
    used: bool
    met: bool | None
    certain: bool
    saturated: bool
    in_flight: float | None
    requests: int
    achieved_rate: float | None
    objectives: dict[str, Check]
    reasons: list[str]


class Bracket(TypedDict):
    met: float | None
    failed: float | None


class Interval(TypedDict):
    low: float | None
    high: float | None


class Capacity(TypedDict):
    mode: Literal["rate", "concurrency"]
    unit: str
    slo: CapacitySlo
    precision: float
    max_trials: int
    trial_requests: int | None
    status: Literal["found", "budget", "none_met", "all_met", "invalid"]
    answer: float | None
    bracket: Bracket
    interval: Interval
    message: str
    trials: list[Trial]


class Spread(TypedDict):
    values: list[float]
    mean: float
    sd: float | None
    low: float | None
    high: float | None


class RepeatedStep(TypedDict):
    label: str
    runs: int
    metrics: dict[str, Spread]


class Repeats(TypedDict):
    runs: int
    confidence: float
    steps: list[RepeatedStep]
