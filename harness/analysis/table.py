"""The table of one step (or of a whole run): counts, rates, throughput, latency distributions with their error
bounds, tokens, rates scheduled and achieved, fairness between keys, the client's load and the load it offered.

Throughput is over the step's window, from its measurement start to the end of its last measured request; goodput
counts the successful requests meeting every SLO given (TTFT, TPOT, the request's worst ITL gap, E2E from the
scheduled time). Rates: errors (every failure but 429s), 429s (requests that ended rate-limited), conformance errors
(requests with at least one, among those that streamed) and output errors (structured outputs and tool calls that
broke what was asked, among the answers checked). Percentiles are exact (nearest rank over every sample). Fairness is
Jain's index of the output-token throughput each API key received, when there are several. Every latency statistic
and the throughput carry their error bound: how far the client may have moved them (`harness.analysis.bounds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import bounds
from harness.analysis.frame import first_sent
from harness.analysis.slo import Slo, meets
from harness.analysis.stats import Floats, distribution, jain_index
from harness.analysis.stats import round6 as _round
from harness.records.record import ERROR_KINDS, Record, StepInfo

_NAN = float("nan")


def _rate(n: int, span_ns: float) -> float | None:
    return _round((n - 1) / (span_ns / 1e9)) if n > 1 and span_ns > 0 else None


@dataclass(frozen=True, slots=True)
class Group:
    """Measured requests to summarize together, with what their bounds need: per request, what its step measured
    of the client and the client's lateness (ms); and the relative error of the load the client offered."""

    frame: pd.DataFrame
    records: Sequence[Record]
    estimates: bounds.Estimates
    lateness_ms: Floats
    window_s: float
    load_error: float | None = None  # None: not known (a whole run's table sums its steps' throughput bounds instead)


def _bounded(dist: dict[str, Any], samples: bounds.Samples) -> dict[str, Any]:
    limits, causes = samples.bounds()
    return dist | {"bounds": limits, "causes": causes}


def _latency(g: Group) -> dict[str, Any]:
    """The latency distributions of the successful requests, each statistic with its error bound."""
    fine = g.frame["ok"].to_numpy(dtype=bool)
    ok = g.frame[fine]
    records = [r for r, keep in zip(g.records, fine, strict=True) if keep]
    est, late = g.estimates[fine], g.lateness_ms[fine]
    w = bounds.Widths.of(records, est, late)

    def column(name: str) -> Floats:
        values: Floats = ok[name].to_numpy(dtype=np.float64)
        return values

    ttft, e2e, e2e_s, tpot = column("ttft_ms"), column("e2e_ms"), column("e2e_from_scheduled_ms"), column("tpot_ms")
    itl = bounds.itl(records, est)
    # TTFO only when it differs from TTFT: some request thought before it answered.
    ttfo = {}
    if ok["reasoning"].any():
        first_output = column("ttfo_ms")
        ttfo = {"ttfo": _bounded(distribution(first_output), bounds.ttfo(first_output, w))}
    return {
        "ttft": _bounded(distribution(ttft), bounds.ttft(ttft, w)),
        **ttfo,
        "itl": _bounded(distribution(itl.value), itl),
        "tpot": _bounded(distribution(tpot), bounds.tpot(tpot, w, column("completion_tokens"))),
        "e2e": _bounded(distribution(e2e), bounds.e2e(e2e, w)),
        "e2e_from_scheduled": _bounded(distribution(e2e_s), bounds.e2e_from_scheduled(e2e_s, w)),
        "dispatch_delay": distribution(g.frame["dispatch_delay_ms"].to_numpy()),
    }


def _first_error(records: Sequence[Record]) -> dict[str, Any] | None:
    """The earliest failure other than a 429: what a run that measured nothing is told first."""
    failed = [r for r in records if r.error_kind not in (None, "rate_limited")]
    if not failed:
        return None
    first = min(failed, key=lambda r: r.end_ns if r.end_ns is not None else r.scheduled_ns)
    return {"status": first.status, "kind": first.error_kind, "detail": first.error_detail}


def step_table(g: Group, slo: Slo | None) -> dict[str, Any]:
    """The metrics of one group of measured requests over a window of `window_s` seconds."""
    frame, records, window_s = g.frame, g.records, g.window_s
    ok = frame[frame["ok"]]
    n = len(frame)
    streamed = int(frame["streamed"].sum())
    errors = frame[~frame["ok"]]
    rate_limited = int((frame["error_kind"] == "rate_limited").sum())
    failed = len(errors) - rate_limited
    good = int(meets(frame, slo).sum())
    per_s = 1.0 / window_s if window_s > 0 else 0.0
    sent = first_sent(records)
    sent = sent[np.isfinite(sent)]
    scheduled = frame["scheduled_ns"].to_numpy()
    throughput = {
        "requests_per_s": _round(len(ok) * per_s),
        "output_tokens_per_s": _round(float(ok["completion_tokens"].sum()) * per_s),
        "input_tokens_per_s": _round(float(ok["prompt_tokens"].sum()) * per_s),
        "chunks_per_s": _round(float(frame["chunks"].sum()) * per_s),
        "goodput_requests_per_s": _round(good * per_s),
    }
    table: dict[str, Any] = {
        "window_s": _round(window_s),
        "requests": {
            "total": n,
            "ok": len(ok),
            "errors": failed,
            "rate_limited": rate_limited,
            "throttled": int(frame["throttled"].sum()),
            "by_error": {k: int(c) for k in ERROR_KINDS if (c := int((frame["error_kind"] == k).sum()))},
        },
        "rates": {
            "error": _round(failed / n) if n else None,
            "rate_limited": _round(rate_limited / n) if n else None,
            "conformance_error": _round(int((frame["conformance_errors"] > 0).sum()) / streamed) if streamed else None,
            # Structured outputs and tool calls that broke what was asked, among the successful answers checked.
            "output_error": _round(int(ok["output_error"].sum()) / checked)
            if (checked := int(ok["output_checked"].sum()))
            else None,
        },
        "first_error": _first_error(records),
        "throttled_s": _round(float(frame["throttled_ms"].sum()) / 1e3),
        "responses_429": int(frame["responses_429"].sum()),
        "throughput": throughput,
        "throughput_bounds": None
        if g.load_error is None
        else {name: _round(value * g.load_error) for name, value in throughput.items()},
        "goodput_fraction": _round(good / n) if n else None,
        "latency_ms": _latency(g),
        "tokens": {
            "prompt": distribution(ok["prompt_tokens"].to_numpy()),
            "completion": distribution(ok["completion_tokens"].to_numpy()),
            "prompt_target_mean": _mean(frame["input_tokens_target"]),
            "completion_target_mean": _mean(frame["max_tokens"]),
        },
        "scheduled_rate": _rate(len(scheduled), float(scheduled.max() - scheduled.min()) if n else 0.0),
        "achieved_rate": _rate(len(sent), float(sent.max() - sent.min()) if len(sent) else 0.0),
        "fairness": _fairness(frame, window_s),
    }
    return table


def _mean(column: pd.Series) -> float | None:
    values = column.dropna()
    return _round(float(values.mean())) if len(values) else None


def _fairness(frame: pd.DataFrame, window_s: float) -> dict[str, Any] | None:
    keys = sorted(set(frame["key"]))
    if len(keys) < 2:
        return None
    per_key: dict[str, Any] = {}
    for key, group in frame.groupby("key", sort=True):
        ok = group[group["ok"]]
        per_key[str(key)] = {
            "requests": len(group),
            "ok": len(ok),
            "rate_limited": int((group["error_kind"] == "rate_limited").sum()),
            "output_tokens_per_s": _round(float(ok["completion_tokens"].sum()) / window_s) if window_s > 0 else 0.0,
        }
    return {"jain_index": jain_index([v["output_tokens_per_s"] for v in per_key.values()]), "keys": per_key}


def window_s(step: StepInfo, frame: pd.DataFrame) -> float:
    last = frame["end_ns"].max() if len(frame) else _NAN
    end = float(last) if np.isfinite(last) else float(step.dispatch_end_ns)
    return max(0.0, (max(end, float(step.dispatch_end_ns)) - step.measure_start_ns) / 1e9)


def load_figures(steps: Sequence[StepInfo]) -> dict[str, Any]:
    wall_s = sum((s.ended_ns - s.started_ns) / 1e9 for s in steps)
    cpu_s = sum(s.cpu_s for s in steps)
    lags = np.concatenate([np.asarray(s.loop_lag_ns, dtype=np.float64) for s in steps]) if steps else np.empty(0)
    return {
        "loop_lag_ms": distribution(lags / 1e6),
        "cpu_s": _round(cpu_s),
        "cpu_utilization": _round(cpu_s / wall_s) if wall_s > 0 else None,
    }


def loop_estimate_ms(step: StepInfo) -> float:
    """How late the step's loop may have read a socket it did not have the kernel time: its largest lag seen."""
    return max(step.loop_lag_ns, default=0) / 1e6


def offered(step: StepInfo, records: Sequence[Record], measured: Sequence[Record]) -> dict[str, Any] | None:
    """The load the client really offered, against the load asked for, and its relative error
    (`harness.analysis.bounds`)."""
    if step.mode == "concurrency":
        users = step.concurrency or 0
        end = max(step.dispatch_end_ns, step.measure_start_ns)
        idle = bounds.idle_share(records, users, step.measure_start_ns, end)
        if idle is None:
            return None
        return {
            "mode": "concurrency",
            "asked": users,
            "value": _round(users * (1 - idle)),
            "bound": _round(users * idle),
            "relative_error": idle,
        }
    found = bounds.rate_error(measured, capped=step.max_concurrency is not None)
    if found is None:
        return None
    asked, achieved, error = found
    return {
        "mode": "rate",
        "asked": asked,
        "value": achieved,
        "bound": _round(abs(achieved - asked)),
        "relative_error": error,
    }
