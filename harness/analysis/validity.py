"""Can the run's numbers be trusted? The client watches itself, and each step is judged on its error bounds.

A load generator that cannot keep up does not fail: it quietly sends less than asked and stamps times late. So the
run measures itself — how late its event loop comes round to an event and how much CPU it burns
(`harness.load.meters`) — and `harness.analysis.bounds` turns that and the records into an error bound on every
number of the summary.

The verdict follows from the bounds, not from fixed limits on the client's internals: a step is VALID when every
bound is within the tolerance of its metric — by default the larger of 1 ms and 1 % of the value for latencies,
1 % for throughput and for the load offered — for the mean and every percentile up to p99.9. The min and the max are
single samples: their bounds are shown, not judged, and so is a percentile that is the max for lack of samples
(p99 of fewer than 100, p99.9 of fewer than 1,000). It is INVALID otherwise, naming the number, its bound, the
tolerance and the cause. A run is VALID when every step is; it is UNUSABLE when no request succeeded, whatever the
client did, with the first error. The gate refuses any run that is not VALID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from harness.analysis.shape import Figures, StepSummary, Summary, Table, Validity, ValidityVerdict, Worst

LATENCIES: tuple[str, ...] = ("ttft", "ttfo", "itl", "tpot", "e2e", "e2e_from_scheduled")
THROUGHPUTS: tuple[str, ...] = ("requests_per_s", "output_tokens_per_s")
JUDGED: tuple[str, ...] = ("mean", "p50", "p90", "p95", "p99", "p99_9")
_PERCENT = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9}


def is_extreme(stat: str, count: int) -> bool:
    """Whether a statistic of `count` samples is its largest sample (nearest rank: q·n/100 > n − 1)."""
    q = _PERCENT.get(stat)
    return stat == "max" or (q is not None and q * count / 100 > count - 1)


_NAMES = {
    "ttft": "TTFT",
    "ttfo": "TTFO",
    "itl": "ITL",
    "tpot": "TPOT",
    "e2e": "E2E",
    "e2e_from_scheduled": "E2E from schedule",
    "requests_per_s": "requests/s",
    "output_tokens_per_s": "output tokens/s",
}
CAUSES: Mapping[str, str] = {
    "send": "writes that returned late (the send lies between the stamp and the write's return)",
    "reads": "chunks read together (the client's loop came round after several had arrived)",
    "loop": "reads timed by the event loop, not the kernel (uvloop or no SO_TIMESTAMPNS): the loop's lag",
    "granularity": "the host's delivery and clock granularity",
    "lateness": "requests sent after they were due",
    "load": "the load offered fell short of the load asked",
}
CPU_WARN = 0.75
LOOP_LAG_P99_WARN_MS = 5.0


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How large a bound may be: the larger of `abs_ms` (for latencies) and `rel` of the value."""

    abs_ms: float = 0.0
    rel: float = 0.01

    def of(self, value: float) -> float:
        return max(self.abs_ms, self.rel * abs(value))


LATENCY_TOLERANCE = Tolerance(1.0, 0.01)


@dataclass(frozen=True, slots=True)
class Tolerances:
    """The tolerance of every judged metric: latencies by name, throughput, and the load offered."""

    latency: Mapping[str, Tolerance] = field(default_factory=lambda: dict.fromkeys(LATENCIES, LATENCY_TOLERANCE))
    throughput: Tolerance = Tolerance()
    load: Tolerance = Tolerance()

    @classmethod
    def parse(cls, specs: Sequence[str]) -> Tolerances:
        """`METRIC=VALUE` each, VALUE `2ms` (the absolute part) or `0.5%` (the relative part); METRIC one of the
        latencies, `latency` (all of them), `throughput` or `load`. The other part keeps its default."""
        latency = dict(cls().latency)
        throughput, load = Tolerance(), Tolerance()
        names = (*LATENCIES, "latency", "throughput", "load")
        for spec in specs:
            name, sep, raw = (part.strip() for part in spec.partition("="))
            if not sep or name not in names:
                raise ValueError(f"bad tolerance {spec!r}: use METRIC=2ms or METRIC=1% with METRIC one of {names}")
            if raw.endswith("%"):
                change: dict[str, float] = {"rel": _number(raw[:-1], spec) / 100}
            elif raw.endswith("ms") and name not in ("throughput", "load"):
                change = {"abs_ms": _number(raw[:-2], spec)}
            else:
                raise ValueError(f"bad tolerance {spec!r}: the value is N% or, for a latency, N ms (`2ms`)")
            if name == "throughput":
                throughput = replace(throughput, **change)
            elif name == "load":
                load = replace(load, **change)
            else:
                for metric in LATENCIES if name == "latency" else (name,):
                    latency[metric] = replace(latency[metric], **change)
        return cls(latency, throughput, load)

    @classmethod
    def from_dict(cls, kept: Mapping[str, Any]) -> Tolerances:
        """As `as_dict` wrote them; names it does not know are left at their defaults."""

        def one(name: str, default: Tolerance) -> Tolerance:
            found = kept.get(name)
            if not isinstance(found, Mapping):
                return default
            return Tolerance(float(found.get("abs_ms", default.abs_ms)), float(found.get("rel", default.rel)))

        base = cls()
        latency = {m: one(m, t) for m, t in base.latency.items()}
        return cls(latency, one("throughput", base.throughput), one("load", base.load))

    def as_dict(self) -> dict[str, Any]:
        return {
            **{m: {"abs_ms": t.abs_ms, "rel": t.rel} for m, t in self.latency.items()},
            "throughput": {"abs_ms": 0.0, "rel": self.throughput.rel},
            "load": {"abs_ms": 0.0, "rel": self.load.rel},
        }


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad tolerance {spec!r}: {text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"bad tolerance {spec!r}: a tolerance cannot be negative")
    return value


@dataclass(frozen=True, slots=True)
class _Cell:
    metric: str
    stat: str
    value: float
    bound: float
    tolerance: float
    cause: str | None
    unit: str

    @property
    def ratio(self) -> float:
        return self.bound / self.tolerance if self.tolerance > 0 else float("inf") if self.bound > 0 else 0.0

    def describe(self) -> str:
        stat = "" if self.stat == "value" else f" {self.stat.replace('_', '.')}"
        unit = f" {self.unit}" if self.unit else ""
        why = CAUSES.get(self.cause or "", "")
        return (
            f"{_NAMES.get(self.metric, self.metric)}{stat} {_num(self.value)}{unit} ± {_num(self.bound)}{unit} client"
            f" > tolerance {_num(self.tolerance)}{unit}" + (f": {why}" if why else "")
        )

    def as_dict(self) -> Worst:
        return {
            "metric": self.metric,
            "stat": self.stat,
            "value": self.value,
            "bound": self.bound,
            "tolerance": round(self.tolerance, 6),
            "ratio": round(self.ratio, 6),
            "cause": self.cause,
        }


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def cells(table: Table, tolerances: Tolerances) -> list[_Cell]:
    """Every judged number of a step's table with its bound and tolerance (none for a summary without bounds)."""
    out: list[_Cell] = []
    for metric in LATENCIES:
        dist = table["latency_ms"].get(metric)
        if dist is None:
            continue
        limits = cast("Mapping[str, float | None]", dist.get("bounds") or {})
        causes = cast("Mapping[str, str | None]", dist.get("causes") or {})
        for stat in JUDGED:
            value, bound = cast("float | None", dist.get(stat)), limits.get(stat)
            if value is not None and bound is not None and not is_extreme(stat, int(dist.get("count") or 0)):
                tol = tolerances.latency.get(metric, LATENCY_TOLERANCE).of(value)
                out.append(_Cell(metric, stat, value, bound, tol, causes.get(stat), "ms"))
    throughput_bounds = table.get("throughput_bounds") or {}
    for metric in THROUGHPUTS:
        value, bound = table["throughput"].get(metric), throughput_bounds.get(metric)
        if value is not None and bound is not None and value > 0:
            out.append(_Cell(metric, "value", value, bound, tolerances.throughput.of(value), "load", ""))
    offered = table.get("offered")
    # A closed loop's idle share already bounds its throughput (the number it moves); an open loop's offered
    # rate is a number of its own, the rate achieved.
    if offered and offered["mode"] == "rate":
        tolerance = tolerances.load.of(offered["asked"])
        out.append(_Cell("load offered", "value", offered["value"], offered["bound"], tolerance, "load", "req/s"))
    return out


def judge(table: Table, tolerances: Tolerances) -> Validity:
    """The verdict on one step's summary table, with its reasons, warnings and its largest bound."""
    reasons: list[str] = []
    warnings: list[str] = []
    found = cells(table, tolerances)
    cpu = table["load"]["cpu_utilization"]
    busy = f" (client CPU at {cpu:.0%} of a core)" if cpu is not None and cpu > CPU_WARN else ""
    over: dict[str, list[_Cell]] = {}
    for cell in found:
        if cell.bound > cell.tolerance:
            over.setdefault(cell.metric, []).append(cell)
    for broken in over.values():  # one reason per number: its worst statistic, and how many more are out
        worst_cell = max(broken, key=lambda c: c.ratio)
        more = f" (and {len(broken) - 1} more of its statistics)" if len(broken) > 1 else ""
        reasons.append(worst_cell.describe() + more + busy)
    if cpu is not None and cpu > CPU_WARN:
        warnings.append(f"client CPU at {cpu:.0%} of a core")
    lag = table["load"]["loop_lag_ms"]
    if lag["count"] and lag["p99"] is not None and lag["p99"] > LOOP_LAG_P99_WARN_MS:
        warnings.append(f"event-loop lag p99 {lag['p99']:.1f} ms")
    verdict: ValidityVerdict = "INVALID" if reasons else "VALID"
    if not table["requests"]["ok"]:
        verdict = "UNUSABLE"
        reasons.insert(0, "no successful request was measured" + _first_error(table))
    worst = max(found, key=lambda c: c.ratio, default=None)
    return {
        "verdict": verdict,
        "reasons": reasons,
        "warnings": warnings,
        "worst": None if worst is None else worst.as_dict(),
    }


def _first_error(table: Table) -> str:
    first = table.get("first_error")
    if not first:
        return ""
    status = f"HTTP {first['status']} " if first.get("status") is not None else ""
    return f"; first error: {status}{first['kind']}: {first.get('detail') or ''}".rstrip(": ")


def apply(figures: Figures, tolerances: Tolerances | None = None) -> Summary:
    """The summary of a run's figures (`harness.analysis.summary.summarize`): judged per step, and as a run."""
    tolerances = tolerances or Tolerances()
    reasons: list[str] = []
    warnings: list[str] = []
    worst: Worst | None = None
    steps: list[StepSummary] = []
    for step in figures["steps"]:
        step_validity = judge(step, tolerances)
        steps.append({**step, "validity": step_validity})
        where = f"step {step['step']} ({step['label']})"
        if step_validity["verdict"] == "UNUSABLE":
            reasons.append(f"{where}: measured no successful request")
        else:
            reasons += [f"{where}: {r}" for r in step_validity["reasons"]]
        warnings += [f"{where}: {w}" for w in step_validity["warnings"]]
        cell = step_validity.get("worst")
        if cell is not None and (worst is None or cell["ratio"] > worst["ratio"]):
            worst = cell | {"step": step["step"], "label": step["label"]}
    verdict: ValidityVerdict = "INVALID" if reasons else "VALID"
    if not figures["overall"]["requests"]["ok"]:
        verdict = "UNUSABLE"
        reasons = ["no request succeeded" + _first_error(figures["overall"])]
    judged: Validity = {
        "verdict": verdict,
        "reasons": reasons,
        "warnings": warnings,
        "tolerances": tolerances.as_dict(),
        "worst": worst,
    }
    return cast(Summary, {**figures, "steps": steps, "validity": judged})
