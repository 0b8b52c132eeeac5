"""Service as the load's users lived it: which requests a step measures, who waited, who got nothing, how fairly.

**Which step measures a request.** A request belongs to the step that scheduled it. The step measures it when it was
scheduled in the measurement window — or when it was scheduled during warm-up but was still waiting for service as
the window opened: refused with 429, it was retried, and its last attempt (the one the endpoint admitted, or its
final refusal) was sent at or after the window's start. A request sent once during warm-up stays warm-up. So a
request that the endpoint kept waiting (429s retried past the limit) is measured by its step, with its wait in its
E2E from the schedule and its 429s in the step's counts, instead of falling out of every step.

**Per step**, over the sending window (measurement start to the end of sending):
- starved users (closed loop) and keys: those with no successful response ending in the window;
- the wait for service: from a measured request's schedule to the send of its attempt that was admitted (for one
  never admitted, to its end — a lower bound of a wait that never ended);
- users' fairness: Jain's index of the successful requests each user completed in the window;
- unserved at the end: the step's requests scheduled by the window's end and not yet admitted then, with their ages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.analysis.stats import distribution, jain_index, round6
from harness.records.record import Record, StepInfo

MAX_AGES_LISTED = 20


def is_measured(r: Record, step: StepInfo | None) -> bool:
    """The rule above; a request of a step the run does not describe is measured unless scheduled in warm-up."""
    if not r.warmup:
        return True
    return step is not None and r.attempts > 1 and r.sent_ns is not None and r.sent_ns >= step.measure_start_ns


def measured(records: Sequence[Record], steps: Sequence[StepInfo]) -> list[Record]:
    by_index = {s.step: s for s in steps}
    return [r for r in records if is_measured(r, by_index.get(r.step))]


def _admitted_ns(r: Record) -> int | None:
    """When the attempt the endpoint admitted (any answer but 429) was sent; None if it never was."""
    return r.sent_ns if r.status is not None and r.status != 429 else None


def _waits_ms(records: Sequence[Record]) -> list[float]:
    waits = []
    for r in records:
        served = _admitted_ns(r)
        until = served if served is not None else r.end_ns
        if until is not None:
            waits.append((until - r.scheduled_ns) / 1e6)
    return waits


def _succeeded_in(r: Record, start_ns: int, end_ns: int) -> bool:
    return r.error_kind is None and r.end_ns is not None and start_ns <= r.end_ns <= end_ns


def service(step: StepInfo, records: Sequence[Record], measured: Sequence[Record]) -> dict[str, Any]:
    """The step's service figures; `records` are all of the step's requests, `measured` those it measures."""
    start, end = step.measure_start_ns, max(step.dispatch_end_ns, step.measure_start_ns)
    users = step.concurrency if step.mode == "concurrency" else None
    starved_users: list[int] | None = None
    fairness: float | None = None
    if users:
        completed = [0] * users
        for r in records:
            if r.user is not None and 0 <= r.user < users and _succeeded_in(r, start, end):
                completed[r.user] += 1
        starved_users = [u for u, n in enumerate(completed) if n == 0]
        fairness = jain_index(completed) if users > 1 else None
    keys = sorted({r.key for r in records})
    served_keys = {r.key for r in records if _succeeded_in(r, start, end)}
    unserved = sorted(
        (
            (end - r.scheduled_ns) / 1e6
            for r in records
            if r.scheduled_ns <= end and ((a := _admitted_ns(r)) is None or a > end)
        ),
        reverse=True,
    )
    return {
        "users": users,
        "starved_users": None if starved_users is None else len(starved_users),
        "starved_user_ids": starved_users,
        "starved_keys": [k for k in keys if k not in served_keys],
        "wait_for_service_ms": distribution(_waits_ms(measured)),
        "fairness_users": fairness,
        "unserved_at_end": {
            "count": len(unserved),
            "max_age_ms": round6(unserved[0]) if unserved else None,
            "ages_ms": [round6(a) for a in unserved[:MAX_AGES_LISTED]],
        },
    }


def overall(steps: Sequence[Mapping[str, Any]], measured: Sequence[Record]) -> dict[str, Any]:
    """Across the run: the most starved users and unserved requests of any step, and every measured wait."""
    starved = [s["service"]["starved_users"] for s in steps if s["service"]["starved_users"] is not None]
    unserved = [s["service"]["unserved_at_end"] for s in steps]
    ages = [a["max_age_ms"] for a in unserved if a["max_age_ms"] is not None]
    return {
        "users": None,
        "starved_users": max(starved) if starved else None,
        "starved_user_ids": None,
        "starved_keys": sorted({k for s in steps for k in s["service"]["starved_keys"]}),
        "wait_for_service_ms": distribution(_waits_ms(measured)),
        "fairness_users": None,
        "unserved_at_end": {
            "count": max((a["count"] for a in unserved), default=0),
            "max_age_ms": max(ages) if ages else None,
            "ages_ms": [],
        },
    }
