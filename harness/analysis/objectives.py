"""What a load must meet to count as served: percentile objectives, per-request SLOs with a goodput target, and how
many samples judging each of them takes.

`--slo` names each objective `NAME=MILLISECONDS`:
- a **percentile objective** `METRIC_STAT_ms` (`ttft_p99_ms=2000`, `itl_p99_ms=200`): the step's percentile, as
  its summary reports it (`latency_ms.ttft.p99`, over its successful measured requests; ITL per token), at most the
  limit — and no more than 1 − q of its requests failed (errors and 429s): a failed request has no latency, and
  counting it neither way would let a server that fails fast look fast. METRIC is one of ttft, ttfo, itl, tpot,
  e2e, e2e_from_scheduled; STAT one of p50, p90, p95, p99, p99_9.
- a **per-request SLO** `METRIC_ms` (`ttft_ms`, `tpot_ms`, `itl_ms` — the request's worst gap — `e2e_ms`, from the
  schedule; `harness.analysis.slo`): a request meets it or not. A load meets them when its goodput fraction — the
  share of *all* its measured requests, failed ones included, that succeeded meeting every per-request SLO — is at
  least the goodput target (default 95 %).

The two forms are one idea seen twice: `ttft_p99_ms=2000` says that 99 % of the successful requests have a TTFT
within 2 s, `ttft_ms=2000 --goodput 99%` that 99 % of all requests succeeded with one. The per-request form is
joint (one request must meet every bound at once) and counts failures in the share; the percentile form is one
metric at a time, over that metric's own samples (every token's gap, for ITL).

**How many samples a percentile needs.** Whatever the distribution, the chance that n samples all lie at or below
the true q-quantile is qⁿ. So before n reaches ln(α)/ln(q) even a step whose every sample meets the limit cannot show
at confidence 1 − α = 95 % that its q-quantile does: a p99 needs 299 samples, a p95 59, a p90 29, a p50 5. A goodput
target g is judged on requests the same way (g = 0.95: 59). ITL yields a sample per token, so a request of L output
tokens brings L − 1 of them; every other metric one per request. A trial of a capacity search lasts for the most
that any of its objectives needs, and at least 20 requests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.analysis.slo import Slo

METRICS: tuple[str, ...] = ("ttft", "ttfo", "itl", "tpot", "e2e", "e2e_from_scheduled")
QUANTILES: Mapping[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}
CONFIDENCE = 0.95
MIN_TRIAL_REQUESTS = 20
DEFAULT_GOODPUT = 0.95
_PER_REQUEST = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")


def samples_needed(q: float, confidence: float = CONFIDENCE) -> int:
    """The fewest samples that can show, at this confidence and whatever the distribution, that a q-quantile is at or
    below a limit every sample met: the smallest n with qⁿ ≤ 1 − confidence."""
    if not 0 < q < 1:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    return math.ceil(math.log(1 - confidence) / math.log(q) - 1e-9)


@dataclass(frozen=True, slots=True)
class Objective:
    """One percentile objective: the step's `stat` of `metric` at most `limit_ms`."""

    metric: str
    stat: str
    limit_ms: float

    @property
    def name(self) -> str:
        return f"{self.metric}_{self.stat}_ms"

    @property
    def q(self) -> float:
        return QUANTILES[self.stat]

    def describe(self) -> str:
        return f"{self.metric.upper().replace('_', ' ')} {self.stat.replace('_', '.')} ≤ {self.limit_ms:g} ms"


def _objective(name: str) -> tuple[str, str] | None:
    """(metric, stat) of a percentile objective's name, e.g. `ttft_p99_ms`; None for any other name."""
    if not name.endswith("_ms"):
        return None
    stem = name[: -len("_ms")]
    for stat in QUANTILES:
        metric = stem.removesuffix(f"_{stat}")
        if metric != stem and metric in METRICS:
            return metric, stat
    return None


def _limit(part: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"bad SLO {part!r}: {raw.strip()!r} is not a number of milliseconds") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"bad SLO {part!r}: the limit must be a positive number of milliseconds")
    return value


def _names() -> str:
    return (
        f"per-request {', '.join(_PER_REQUEST)}, or METRIC_STAT_ms with METRIC one of {', '.join(METRICS)} "
        f"and STAT one of {', '.join(QUANTILES)} (e.g. ttft_p99_ms)"
    )


@dataclass(frozen=True, slots=True)
class Objectives:
    """Everything a load must meet: percentile objectives, and per-request SLOs met by a goodput share."""

    percentiles: tuple[Objective, ...] = ()
    per_request: Slo | None = None
    goodput: float = DEFAULT_GOODPUT

    @classmethod
    def parse(cls, text: str) -> Objectives:
        """`ttft_p99_ms=2000,itl_p99_ms=200`, `ttft_ms=500,e2e_ms=10000`, or both kinds (ValueError otherwise)."""
        percentiles: dict[str, Objective] = {}
        per_request: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            name = name.strip()
            found = _objective(name)
            if not sep or (found is None and name not in _PER_REQUEST):
                raise ValueError(f"unknown SLO {name!r} in {part!r}: use {_names()}, as NAME=MILLISECONDS")
            if found is not None:
                percentiles[name] = Objective(*found, _limit(part, raw))
            else:
                per_request[name] = _limit(part, raw)
        if not percentiles and not per_request:
            raise ValueError(f"an SLO names at least one objective: {_names()}")
        return cls(tuple(percentiles.values()), Slo(**per_request) if per_request else None)

    def with_goodput(self, share: float) -> Objectives:
        return Objectives(self.percentiles, self.per_request, share)

    def samples_needed(self, output_tokens: float) -> int:
        """Measured requests a step needs for every objective to be judged (see the module's docstring)."""
        needed = [MIN_TRIAL_REQUESTS]
        gaps = max(1.0, output_tokens - 1)
        for o in self.percentiles:
            per_request = samples_needed(o.q)
            needed.append(math.ceil(per_request / gaps) if o.metric == "itl" else per_request)
        if self.per_request is not None:
            needed.append(samples_needed(self.goodput))
        return max(needed)

    def describe(self) -> str:
        parts = [o.describe() for o in self.percentiles]
        if self.per_request is not None:
            bounds = ", ".join(f"{k} ≤ {v:g}" for k, v in self.per_request.as_dict().items())
            parts.append(f"goodput ≥ {self.goodput:.0%} ({bounds})")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """As the run's configuration and its summary keep them (`capacity.slo` in `schemas/summary.json`)."""
        return {
            "percentiles": {o.name: o.limit_ms for o in self.percentiles},
            "per_request": None if self.per_request is None else self.per_request.as_dict(),
            "goodput": self.goodput,
        }

    @classmethod
    def from_dict(cls, kept: Mapping[str, Any]) -> Objectives:
        percentiles = []
        for name, limit in (kept.get("percentiles") or {}).items():
            found = _objective(name)
            if found is not None:
                percentiles.append(Objective(*found, float(limit)))
        per_request = kept.get("per_request")
        return cls(tuple(percentiles), Slo(**per_request) if per_request else None,
                   float(kept.get("goodput", DEFAULT_GOODPUT)))  # fmt: skip


def goodput_share(text: str) -> float:
    """`--goodput`: a share, `95%` or `0.95`, above 0 and below 1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"bad goodput {text!r}: a share such as 95% or 0.95") from None
    if not 0 < value < 1:
        raise ValueError(f"bad goodput {text!r}: the share must be above 0 and below 100%")
    return value
