"""The absolute checks of a gate: each threshold against the run's summary (a chosen step, or the whole run).

Thresholds name the figures they bound (`ttft_p99_ms_max`, `goodput_fraction_min`, …, and of the server's own view
from its scraped metrics `server_preemptions_max`, `server_queue_time_p99_ms_max`, …); a figure the run lacks is
skipped, not failed. The limit checks judge the per-key limit again when the thresholds name another limit than
the one the run recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

from harness.analysis.shape import Limit, ServerStep, Summary, Table
from harness.analysis.sweep import limit_behaviour
from harness.gate.verdict import Check, Unusable

Kind = Literal["max", "min"]
Figure = Callable[[Table], "float | None"]


def _latency(metric: str, stat: Literal["p50", "p99"]) -> Figure:
    def figure(table: Table) -> float | None:
        dist = table["latency_ms"].get(metric)
        return None if dist is None else dist[stat]

    return figure


def _throughput(name: str) -> Figure:
    return lambda table: table["throughput"].get(name)


def _starved(table: Table) -> float | None:
    service = table.get("service")
    return None if service is None else service["starved_users"]


def _wait_p99(table: Table) -> float | None:
    service = table.get("service")
    return None if service is None else service["wait_for_service_ms"]["p99"]


def _server_figure(figure: Callable[[ServerStep], float | None]) -> Figure:
    """A figure of the server's own view of the table's requests (None: its metrics were not scraped)."""

    def read(table: Table) -> float | None:
        found = table.get("server")
        return None if found is None else figure(found)

    return read


def _server_stat(name: Literal["ttft_ms", "queue_time_ms"], stat: Literal["p50", "p99"]) -> Figure:
    return _server_figure(lambda s: None if (d := s[name]) is None else d[stat])


def _kv_cache_max(s: ServerStep) -> float | None:
    gauge = s["kv_cache_usage"]
    return None if gauge is None else gauge["max"]


def _timing(metric: Literal["ttft", "itl"], stat: Literal["p50", "p99"]) -> Callable[[Summary], float | None]:
    def figure(summary: Summary) -> float | None:
        errors = summary.get("timing_error_ms")
        return None if errors is None else errors[metric][stat]

    return figure


# Threshold → (the figure it bounds in the chosen table, which way). Figures a run lacks (None) are skipped.
_TABLE_BOUNDS: dict[str, tuple[Figure, Kind]] = {
    **{f"{m}_{q}_ms_max": (_latency(m, q), "max") for m in ("ttft", "itl", "tpot", "e2e") for q in ("p50", "p99")},
    "e2e_from_scheduled_p99_ms_max": (_latency("e2e_from_scheduled", "p99"), "max"),
    "output_tokens_per_s_min": (_throughput("output_tokens_per_s"), "min"),
    "requests_per_s_min": (_throughput("requests_per_s"), "min"),
    "goodput_requests_per_s_min": (_throughput("goodput_requests_per_s"), "min"),
    "goodput_fraction_min": (lambda table: table["goodput_fraction"], "min"),
    "error_rate_max": (lambda table: table["rates"]["error"], "max"),
    "rate_limited_rate_max": (lambda table: table["rates"]["rate_limited"], "max"),
    "chunk_conformance_error_rate_max": (lambda table: table["rates"]["conformance_error"], "max"),
    "starved_users_max": (_starved, "max"),
    "wait_for_service_p99_ms_max": (_wait_p99, "max"),
    "server_preemptions_max": (_server_figure(lambda s: s["preemptions"]), "max"),
    "server_queue_time_p99_ms_max": (_server_stat("queue_time_ms", "p99"), "max"),
    "server_ttft_p99_ms_max": (_server_stat("ttft_ms", "p99"), "max"),
    "server_kv_cache_usage_max": (_server_figure(_kv_cache_max), "max"),
}


def _capacity(mode: Literal["rate", "concurrency"]) -> Callable[[Summary], float | None]:
    """A search's answer; 0 when it found no load meeting the objectives (or could not tell): a capacity the gate
    requires is then missing, which fails rather than being skipped."""

    def figure(summary: Summary) -> float | None:
        found = summary.get("capacity")
        if not found or found["mode"] != mode:
            return None
        return 0.0 if found["answer"] is None else found["answer"]

    return figure


_RUN_BOUNDS: dict[str, tuple[Callable[[Summary], float | None], Kind]] = {
    **{f"timing_error_{m}_{q}_ms_max": (_timing(m, q), "max") for m in ("ttft", "itl") for q in ("p50", "p99")},
    "max_rate_min": (_capacity("rate"), "min"),
    "max_concurrency_min": (_capacity("concurrency"), "min"),
}


def _bound(name: str, value: float | None, limit: float, kind: Kind) -> Check:
    if value is None:
        return Check(name, "skip", "–", f"{'≤' if kind == 'max' else '≥'} {limit:g}", "not measured in this run")
    ok = value <= limit if kind == "max" else value >= limit
    return Check(name, "pass" if ok else "fail", f"{value:g}", f"{'≤' if kind == 'max' else '≥'} {limit:g}")


def _table(summary: Summary, step: str) -> Table:
    if step == "overall":
        return summary["overall"]
    for s in summary["steps"]:
        if s["label"] == step:
            return s
    raise Unusable(f"thresholds name step {step!r}, which the run does not have")


def _limit(summary: Summary, absolute: Mapping[str, Any]) -> Limit | None:
    recorded = summary.get("limit")
    wanted = absolute.get("concurrency_limit") or (recorded["concurrency_limit"] if recorded else 30)
    if recorded and recorded["concurrency_limit"] == wanted:
        return recorded
    fairness = summary["overall"]["fairness"]
    keys = recorded["keys"] if recorded else len(fairness["keys"]) if fairness else 1
    return limit_behaviour(summary["steps"], wanted, max(keys, 1))


def absolute_checks(summary: Summary, absolute: Mapping[str, Any]) -> list[Check]:
    table = _table(summary, absolute.get("step", "overall"))
    checks = [
        _bound(name, figure(table), absolute[name], kind)
        for name, (figure, kind) in _TABLE_BOUNDS.items()
        if name in absolute
    ]
    checks += [
        _bound(name, figure(summary), absolute[name], kind)
        for name, (figure, kind) in _RUN_BOUNDS.items()
        if name in absolute
    ]
    if "conformance_failures_max" in absolute:
        wanted = absolute["conformance_failures_max"]
        conformance = summary.get("conformance")
        if conformance is None:
            checks.append(Check("conformance_failures_max", "fail", "–", f"≤ {wanted}", "no conformance result"))
        else:
            counts = conformance["summary"]
            check = _bound("conformance_failures_max", counts["failed"] + counts["error"], wanted, "max")
            names = ", ".join(f["nodeid"] for f in conformance["failures"][:5])
            checks.append(dataclasses.replace(check, detail=names) if check.status == "fail" else check)
    if "limit_honoured" in absolute or "error_rate_at_or_below_limit_max" in absolute:
        checks += _limit_checks(_limit(summary, absolute), absolute)
    return checks


def _limit_checks(limit: Limit | None, absolute: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "limit_honoured" in absolute:
        wanted = absolute["limit_honoured"]
        if limit is None:
            checks.append(Check("limit_honoured", "skip", "–", str(wanted).lower(), "no closed-loop step"))
        else:
            wrong = [s["label"] for s in limit["steps"] if s["honoured"] is False]
            detail = (
                f"limit {limit['concurrency_limit']}: {limit['responses_429_at_or_below']} 429s at or below it, "
                f"{limit['steps_above_without_429']} step(s) above it without any"
                + (f" ({', '.join(wrong)})" if wrong else "")
            )
            ok = limit["honoured"] == wanted
            checks.append(Check("limit_honoured", "pass" if ok else "fail", str(limit["honoured"]).lower(),
                                str(wanted).lower(), detail))  # fmt: skip
    if "error_rate_at_or_below_limit_max" in absolute:
        rate = None if limit is None else limit["error_rate_at_or_below"]
        checks.append(_bound("error_rate_at_or_below_limit_max", rate, absolute["error_rate_at_or_below_limit_max"],
                             "max"))  # fmt: skip
    return checks
