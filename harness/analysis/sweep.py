"""Across a sweep's steps: its knee, and whether 429s came exactly where the per-key limit says.

The knee is the lowest load (concurrency or rate) whose output-token throughput reaches 90 % of the sweep's best;
beyond it more load buys little throughput and mostly adds latency. Limit behaviour: closed-loop steps at or below
the per-key concurrency limit must meet no 429, steps above it (every key over its limit) must meet some; steps in
between (several keys) are not judged. Unlike every other figure it counts warm-up requests too: the limit holds at
every moment, and a step's first 429s come at its start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from harness.analysis.shape import Knee, Limit, LimitStep
from harness.analysis.stats import round6 as _round

KNEE_FRACTION = 0.9


def _load_level(step: Mapping[str, Any]) -> float | None:
    value = step["concurrency"] if step["mode"] == "concurrency" else step["rate"] if step["mode"] == "rate" else None
    return None if value is None else float(value)


def knee(steps: Sequence[Mapping[str, Any]]) -> Knee | None:
    """The knee of a sweep of at least three steps of one mode (see the module's definitions); None otherwise."""
    # A step that measured nothing (its requests outlasted it) says nothing about throughput.
    levels = [(level, s) for s in steps if (level := _load_level(s)) is not None and s["requests"]["ok"]]
    if len(levels) < 3 or len({s["mode"] for _, s in levels}) != 1:
        return None
    levels.sort(key=lambda pair: pair[0])
    best = max(s["throughput"]["output_tokens_per_s"] for _, s in levels)
    if best <= 0:
        return None
    level, step = next((lv, s) for lv, s in levels if s["throughput"]["output_tokens_per_s"] >= KNEE_FRACTION * best)
    return {
        "mode": step["mode"],
        "load": level,
        "step": step["step"],
        "label": step["label"],
        "output_tokens_per_s": step["throughput"]["output_tokens_per_s"],
        "best_output_tokens_per_s": best,
        "fraction": KNEE_FRACTION,
    }


def limit_behaviour(steps: Sequence[Mapping[str, Any]], limit: int, keys: int = 1) -> Limit | None:
    """Did 429s come exactly where the per-key limit says? None when the run has no closed-loop step."""
    judged: list[LimitStep] = []
    for s in steps:
        if s["mode"] != "concurrency" or s["concurrency"] is None:
            continue
        users = int(s["concurrency"])
        side = "at_or_below" if users <= limit else "above" if users > limit * keys else "not_judged"
        # The limit holds at every moment: warm-up requests count here (a step's first 429s come at its start).
        rejections = int(s["responses_429"]) + int(s.get("warmup_responses_429", 0))
        honoured = None if side == "not_judged" else (rejections == 0) == (side == "at_or_below")
        judged.append(
            cast(
                LimitStep,
                {
                    "step": s["step"],
                    "label": s["label"],
                    "concurrency": users,
                    "side": side,
                    "responses_429": rejections,
                    "errors": s["requests"]["errors"] + int(s.get("warmup_errors", 0)),
                    "requests": s["requests"]["total"] + int(s["warmup_requests"]),
                    "honoured": honoured,
                }
                | _service_columns(s.get("service")),
            )
        )
    if not judged:
        return None
    below = [j for j in judged if j["side"] == "at_or_below"]
    below_requests = sum(j["requests"] for j in below)
    return {
        "concurrency_limit": limit,
        "keys": keys,
        "honoured": all(j["honoured"] is not False for j in judged),
        "responses_429_at_or_below": sum(j["responses_429"] for j in below),
        "steps_above_without_429": sum(1 for j in judged if j["side"] == "above" and j["responses_429"] == 0),
        "error_rate_at_or_below": _round(sum(j["errors"] for j in below) / below_requests) if below_requests else None,
        "steps": judged,
    }


def _service_columns(figures: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the limit section shows beside the 429s: who got nothing, how long service took, who was left waiting."""
    if not figures:
        return {}
    wait = figures["wait_for_service_ms"]
    return {
        "starved_users": figures["starved_users"],
        "wait_for_service_p99_ms": wait["p99"],
        "wait_for_service_max_ms": wait["max"],
        "unserved_at_end": figures["unserved_at_end"]["count"],
        "fairness_users": figures["fairness_users"],
    }
