"""Load shapes: the steps of a run, and when each request of a step is due (`harness.load.loops` sends them).

- closed loop: `concurrency` users, each sending its next request as soon as the previous one ends;
- open loop: requests due at a rate, spaced constant, Poisson (exponential gaps) or gamma (`burstiness` is the
  shape: 1 is Poisson, below 1 burstier, above 1 more regular), optionally capped by `max_concurrency`;
- ramp: an open loop whose rate moves linearly from `rate` to `rate_end` over the step's duration;
- a given schedule (`schedule`, arrival "trace"): an open loop whose requests are due at offsets taken from a
  trace (`harness.load.traces`), its `rate` the trace's mean rate.

In a session workload (`per="session"`) each arrival starts a session, whose later turns its own task sends
(`harness.load.sessions`): a closed loop's users run sessions back to back, an open loop's rate is of sessions.

A step bounded by a request count (no duration) at a fixed Poisson or gamma rate draws the process *conditioned*
on its measured requests spanning exactly their expected time: the gaps between them are drawn, then scaled
together so that they sum to (requests − 1) / rate. For independent gamma gaps (exponential ones included),
gaps divided by their sum are independent of the sum, so each gap keeps its distribution and only the count
noise goes: N requests asked at rate r take N/r seconds, rather than a span whose rate is off by ±1/√N (1.4 % at
N = 5000). A duration-bounded step leaves the count random, as a Poisson count is.

Open-loop times are absolute offsets from the step's start, drawn from a seeded generator before anything is sent,
and each request is sent when its time comes: a late loop never shifts later requests (no drift) and never
drops one; a request sent late keeps its scheduled time in its record, so the delay shows instead of hiding
(no coordinated omission). With a concurrency cap, waiting for a free slot is part of that delay.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

Arrival = Literal["constant", "poisson", "gamma", "trace"]
Mode = Literal["concurrency", "rate", "ramp"]
Per = Literal["request", "session"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson", "gamma")  # the ones drawn; "trace" is given


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One load step. It ends after `duration_s` (past warm-up) or after `requests` measured requests."""

    index: int
    mode: Mode
    concurrency: int | None = None
    rate: float | None = None
    rate_end: float | None = None
    arrival: Arrival = "poisson"
    burstiness: float = 1.0
    max_concurrency: int | None = None
    warmup_s: float = 0.0
    warmup_requests: int = 0
    duration_s: float | None = None
    requests: int | None = None
    seed: int = 0
    send_ahead_s: float = 0.005  # open loop: how long before its due time a request is handed to the client
    per: Per = "request"  # what an arrival starts: a request, or a session of them
    schedule: tuple[float, ...] | None = None  # a trace's due times (seconds from the step's start, in order)
    name: str | None = None  # the step's label, when the load is not described by its numbers (a trace)
    warmup_auto: bool = False  # measure from the steady state found after the fact (`harness.analysis.steady`)
    repeat: int | None = None  # which run of a repeated plan (None: the plan runs once)

    def __post_init__(self) -> None:
        if self.duration_s is None and self.requests is None:
            raise ValueError("a step needs a duration or a request count")
        if self.send_ahead_s < 0:
            raise ValueError("the send-ahead time cannot be negative")
        if self.mode == "concurrency" and (self.concurrency is None or self.concurrency < 1):
            raise ValueError("a closed-loop step needs a concurrency of at least 1")
        if self.mode in ("rate", "ramp") and (self.rate is None or self.rate < 0):
            raise ValueError("an open-loop step needs a rate")
        if self.mode == "rate" and self.rate is not None and self.rate <= 0:
            raise ValueError("the rate must be positive")
        if self.mode == "ramp" and (self.rate_end is None or self.duration_s is None or self.rate_end < 0):
            raise ValueError("a ramp needs an end rate and a duration")
        if self.mode == "ramp" and self.rate == 0 and self.rate_end == 0:
            raise ValueError("a ramp from 0 to 0 sends nothing")
        if self.arrival == "gamma" and self.burstiness <= 0:
            raise ValueError("the burstiness (gamma shape) must be positive")
        if (self.schedule is not None) != (self.arrival == "trace") or (self.schedule and self.mode != "rate"):
            raise ValueError("a schedule is an open loop's, and its arrival is 'trace'")

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        if self.mode == "concurrency":
            return f"concurrency={self.concurrency}"
        cap = f",max_concurrency={self.max_concurrency}" if self.max_concurrency else ""
        shape = self.arrival if self.arrival != "gamma" else f"gamma({self.burstiness:g})"
        if self.mode == "ramp":
            return f"ramp={self.rate:g}->{self.rate_end:g}/s,{shape}{cap}"
        rate = "session_rate" if self.per == "session" else "rate"
        return f"{rate}={self.rate:g}/s,{shape}{cap}"


def sweep(template: StepPlan, *, concurrencies: Sequence[int] = (), rates: Sequence[float] = ()) -> list[StepPlan]:
    """One step per concurrency or per rate, each with the template's warm-up and length and its own seed."""
    if concurrencies:
        return [
            replace(template, index=i, mode="concurrency", concurrency=c, seed=template.seed + i)
            for i, c in enumerate(concurrencies)
        ]
    return [replace(template, index=i, mode="rate", rate=r, seed=template.seed + i) for i, r in enumerate(rates)]


def repeated(plans: Sequence[StepPlan], runs: int) -> list[StepPlan]:
    """The plan `runs` times over, each run's steps tagged with their repeat and drawn with seeds of their own."""
    if runs < 2:
        return list(plans)
    return [
        replace(p, index=r * len(plans) + i, repeat=r, seed=p.seed + 1009 * r)
        for r in range(runs)
        for i, p in enumerate(plans)
    ]


def unit_gaps(arrival: Arrival, burstiness: float, rng: random.Random) -> Iterator[float]:
    """Gaps of a unit-rate process: mean 1, coefficient of variation 0 (constant), 1 (Poisson) or 1/√shape."""
    if arrival == "constant":
        return itertools.repeat(1.0)
    if arrival == "poisson":
        return (rng.expovariate(1.0) for _ in itertools.count())
    if arrival == "trace":
        raise ValueError("a trace's arrivals are given, not drawn")
    shape = burstiness
    return (rng.gammavariate(shape, 1.0 / shape) for _ in itertools.count())


def _to_time(step: StepPlan, u: float) -> float | None:
    """Map unit-rate time `u` to the step's time through the inverse of its cumulative rate (time rescaling)."""
    r0 = step.rate or 0.0
    if step.mode == "rate":
        return u / r0
    warm = step.warmup_s
    assert step.duration_s is not None and step.rate_end is not None
    if u < r0 * warm:
        return u / r0
    u -= r0 * warm
    if u <= 0:
        return warm
    a = (step.rate_end - r0) / (2 * step.duration_s)
    if a == 0:
        return warm + u / r0
    disc = r0 * r0 + 4 * a * u
    if disc < 0:
        return None  # past what a falling ramp delivers
    # The root of a·t² + r0·t − u = 0 written to stay exact when a is tiny.
    return warm + 2 * u / (r0 + math.sqrt(disc))


def conditioned(gaps: Iterator[float], count: int) -> Iterator[float]:
    """The next `count` unit-rate gaps scaled to sum to `count`, then the rest as drawn."""
    drawn = list(itertools.islice(gaps, count))
    total = math.fsum(drawn)
    scale = count / total if total > 0 else 1.0
    return itertools.chain((g * scale for g in drawn), gaps)


def offsets(step: StepPlan) -> Iterator[tuple[float, bool]]:
    """The open-loop schedule: (seconds after the step's start, warm-up?) for every request, in order."""
    horizon = step.warmup_s + step.duration_s if step.duration_s is not None else math.inf
    if step.schedule is not None:
        yield from _given(step, horizon)
        return
    rng = random.Random(step.seed * 1_000_003 + step.index)
    # A request-bounded step at a random rate: the gaps of its measured requests are conditioned on their span.
    span_gaps = (
        step.requests - 1
        if step.mode == "rate" and step.duration_s is None and step.requests is not None and step.arrival != "constant"
        else None
    )
    gaps = unit_gaps(step.arrival, step.burstiness, rng)
    measured = 0
    u = 0.0
    for n in itertools.count():
        # The first request is due at once; a constant process then lands exactly on the grid.
        t = _to_time(step, u)
        if t is None or t >= horizon:
            return
        warm = n < step.warmup_requests or t < step.warmup_s
        if not warm:
            if step.requests is not None and measured >= step.requests:
                return
            if measured == 0 and span_gaps is not None:
                gaps = conditioned(gaps, span_gaps)
            measured += 1
        yield t, warm
        u += next(gaps)


def _given(step: StepPlan, horizon: float) -> Iterator[tuple[float, bool]]:
    """A given schedule, with the warm-up and the bounds of the step."""
    assert step.schedule is not None
    measured = 0
    for n, t in enumerate(step.schedule):
        if t >= horizon:
            return
        warm = n < step.warmup_requests or t < step.warmup_s
        if not warm:
            if step.requests is not None and measured >= step.requests:
                return
            measured += 1
        yield t, warm
