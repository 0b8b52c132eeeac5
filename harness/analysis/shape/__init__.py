"""The types of `summary.json`: TypedDicts that mirror `schemas/summary.json`, field for field.

The summary is written by `harness.analysis.summary` and read by the verdict (`harness.analysis.validity`), the gate,
the report's tables and pages and the console table; they all name its fields through these types, so that mypy
checks every read against what is written. Fields the schema does not require are `NotRequired`: summaries written
before them (no error bounds, no service figures, no TTFO) are still read. `tests/unit/test_summary_shape.py` holds
these types and the schema to the same fields.

The top level is here; its parts are in modules of their own — `core` (steps, bounds, verdict, limit, timing
error, conformance), `server` (the server's own metrics), `environment`, `traffic`, `capacity` (with repeats) —
and every type is importable from this package.
"""

# No `from __future__ import annotations`: `NotRequired` must be evaluated for `__required_keys__` to be right.
from typing import Any, NotRequired, TypedDict

from harness.analysis.shape.capacity import (
    Bracket,
    Capacity,
    CapacitySlo,
    Check,
    Interval,
    RepeatedStep,
    Repeats,
    Spread,
    Trial,
)
from harness.analysis.shape.core import (
    Bounds,
    Cause,
    Causes,
    Conformance,
    Distribution,
    Failure,
    Fairness,
    FirstError,
    KeyShare,
    Knee,
    Limit,
    LimitStep,
    Load,
    Offered,
    Rates,
    ReceivedBy,
    Requests,
    Saturation,
    Service,
    Slo,
    Stat,
    SteadyState,
    StepSummary,
    Table,
    TimingError,
    Tokens,
    Tolerance,
    Trend,
    TruthCell,
    Unserved,
    Validity,
    ValidityVerdict,
    Worst,
)
from harness.analysis.shape.environment import ClientMachine, RunEnvironment, TargetSoftware
from harness.analysis.shape.server import ServerDistribution, ServerGauge, ServerMetricsSummary, ServerStep, TtftGap
from harness.analysis.shape.traffic import (
    Traffic,
    TrafficCache,
    TrafficContext,
    TrafficReplay,
    TrafficSessions,
    TrafficTurn,
)

__all__ = [
    "Bounds",
    "Bracket",
    "Capacity",
    "CapacitySlo",
    "Cause",
    "Causes",
    "Check",
    "ClientMachine",
    "Conformance",
    "Distribution",
    "Failure",
    "Fairness",
    "Figures",
    "FirstError",
    "Interval",
    "KeyShare",
    "Knee",
    "Limit",
    "LimitStep",
    "Load",
    "Offered",
    "Rates",
    "ReceivedBy",
    "RepeatedStep",
    "Repeats",
    "Requests",
    "RunEnvironment",
    "Saturation",
    "ServerDistribution",
    "ServerGauge",
    "ServerMetricsSummary",
    "ServerStep",
    "Service",
    "Slo",
    "Spread",
    "Stat",
    "SteadyState",
    "StepSummary",
    "Summary",
    "Table",
    "TargetSoftware",
    "TimingError",
    "Tokens",
    "Tolerance",
    "Traffic",
    "TrafficCache",
    "TrafficContext",
    "TrafficReplay",
    "TrafficSessions",
    "TrafficTurn",
    "Trend",
    "Trial",
    "TruthCell",
    "TtftGap",
    "Unserved",
    "Validity",
    "ValidityVerdict",
    "Worst",
]


class Figures(TypedDict):
    """What the records give, before the verdict: `harness.analysis.summary.summarize`."""

    version: int
    run_id: str
    started_at: str
    tool: str
    target: dict[str, Any]
    config: dict[str, Any]
    slo: Slo | None
    steps: list[StepSummary]
    overall: Table
    knee: NotRequired[Knee | None]
    limit: NotRequired[Limit | None]
    timing_error_ms: NotRequired[TimingError | None]
    traffic: NotRequired[Traffic | None]
    capacity: NotRequired[Capacity | None]
    repeats: NotRequired[Repeats | None]
    server_metrics: NotRequired[ServerMetricsSummary | None]
    environment: NotRequired[RunEnvironment | None]


class Summary(Figures):
    """`summary.json`: the figures, judged (`harness.analysis.validity.apply`), with the conformance result and the
    records files they came from."""

    validity: Validity
    conformance: NotRequired[Conformance | None]
    sources: NotRequired[list[str]]
