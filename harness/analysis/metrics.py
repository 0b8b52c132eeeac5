"""Every metric of a run, derived from its records (the one place where that happens).

Definitions (all latencies in milliseconds; only measured, non-warm-up requests count):
- TTFT: first chunk carrying content − send time. E2E: end ([DONE]) − send time, and end − *scheduled* time, so that
  queueing in the client (a late dispatch, a concurrency cap, 429 retries) cannot hide.
- ITL: the gap between consecutive content chunks; a chunk carrying k tokens contributes k samples of gap/k.
- TPOT: (last content chunk − first content chunk) / (output tokens − 1), per request.
- Dispatch delay: first send − scheduled time (the waits between 429 retries are throttling, reported apart).
- Throughput: over the step's window, from its measurement start to the end of its last measured request.
- Goodput: successful requests meeting every SLO given (TTFT, TPOT, worst ITL gap of the request, E2E from the
  scheduled time), per second and as a fraction of measured requests.
- Rates: errors (every failure but 429s), 429s (requests that ended rate-limited), and conformance errors (requests
  with at least one, among those that streamed).
- Percentiles are exact (nearest rank over every sample): p50, p90, p95, p99, p99.9 and max.
- Fairness: Jain's index of the output-token throughput each API key received, when there are several keys.
- 429 responses: every 429 a request met, the ones it retried past included (attempts − 1 when it was retried).
- Knee of a sweep: the lowest load (concurrency or rate) whose output-token throughput reaches 90% of the sweep's
  best; beyond it more load buys little throughput and mostly adds latency.
- Limit behaviour: closed-loop steps at or below the per-key concurrency limit must meet no 429, steps above it
  (every key over its limit) must meet some; steps in between (several keys) are not judged. Unlike every other
  figure it counts warm-up requests too: the limit holds at every moment, and a step's first 429s come at its start.
- Timing error: |measured − ground truth| for TTFT per request and ITL per gap, against the server's own traces;
  and per statistic, the measured statistic against the ground truth's over the same requests, beside its bound.
- Which requests a step measures, and its service figures (starved users, waits, fairness): `harness.analysis.service`.
- Every latency statistic and throughput carries its error bound: how far the client may have moved it
  (`harness.analysis.bounds`, which states the model).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from harness.analysis import bounds, service
from harness.analysis.stats import PERCENTILES, STATS, Floats, distribution, jain_index, nearest_rank
from harness.analysis.stats import round6 as _round
from harness.records.record import ERROR_KINDS, Record, RunFile, StepInfo
from harness.records.truth import Truth

__all__ = ["PERCENTILES", "Floats", "Slo", "distribution", "jain_index", "nearest_rank", "summarize"]
_NAN = float("nan")
KNEE_FRACTION = 0.9


@dataclass(frozen=True, slots=True)
class Slo:
    """Service-level objectives a request must all meet to count towards goodput."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None

    @classmethod
    def parse(cls, text: str) -> Slo:
        """`ttft_ms=500,itl_ms=50,e2e_ms=10000` (any subset, also `tpot_ms`)."""
        names = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = part.partition("=")
            if not sep or name.strip() not in names:
                raise ValueError(f"bad SLO {part!r}: use {', '.join(sorted(names))} as NAME=MILLISECONDS")
            values[name.strip()] = float(raw)
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def _nullable(values: Iterable[int | None]) -> Floats:
    return np.array([_NAN if v is None else float(v) for v in values], dtype=np.float64)


def _first_sent(records: Sequence[Record]) -> Floats:
    """When each request was first written: before the waits of its 429 retries, which are throttling."""
    return _nullable(bounds.first_sent_ns(r) for r in records)


def _first_output_ns(r: Record) -> int | None:
    return r.chunk_ns[r.reasoning_chunks] if len(r.chunk_ns) > r.reasoning_chunks else None


def request_frame(records: Sequence[Record]) -> pd.DataFrame:
    """One row per request with its derived per-request metrics (ms) and the columns the tables group by."""
    rows = len(records)
    tpot = np.full(rows, _NAN)
    max_gap = np.full(rows, _NAN)
    chunks = np.zeros(rows, dtype=np.int64)
    out_tokens = np.full(rows, _NAN)
    for i, r in enumerate(records):
        chunks[i] = len(r.chunk_ns)
        tokens = r.completion_tokens if r.completion_tokens is not None else sum(r.chunk_tokens)
        out_tokens[i] = tokens
        if len(r.chunk_ns) > 1:
            if tokens > 1:
                tpot[i] = (r.chunk_ns[-1] - r.chunk_ns[0]) / (tokens - 1) / 1e6
            max_gap[i] = float(np.diff(np.asarray(r.chunk_ns, dtype=np.int64)).max()) / 1e6
    sent = _nullable(r.sent_ns for r in records)
    end = _nullable(r.end_ns for r in records)
    frame = pd.DataFrame(
        {
            "step": np.array([r.step for r in records], dtype=np.int64),
            "key": [r.key for r in records],
            "warmup": np.array([r.warmup for r in records], dtype=bool),
            "ok": np.array([r.error_kind is None for r in records], dtype=bool),
            "error_kind": [r.error_kind or "" for r in records],
            "streamed": np.array([r.status == 200 for r in records], dtype=bool),
            "conformance_errors": np.array([r.conformance_error_count for r in records], dtype=np.int64),
            "output_checked": np.array([r.output_error is not None for r in records], dtype=bool),
            "output_error": np.array([bool(r.output_error) for r in records], dtype=bool),
            "reasoning": np.array([r.reasoning_chunks > 0 for r in records], dtype=bool),
            "throttled": np.array([r.attempts > 1 for r in records], dtype=bool),
            "throttled_ms": np.array([r.throttled_ns / 1e6 for r in records], dtype=np.float64),
            "responses_429": np.array([_rejections(r) for r in records], dtype=np.int64),
            "scheduled_ns": np.array([r.scheduled_ns for r in records], dtype=np.float64),
            "sent_ns": sent,
            "end_ns": end,
            "ttft_ms": (_nullable(r.first_token_ns for r in records) - sent) / 1e6,
            # The first output token: the first token after a reasoning model's thinking (the first token otherwise).
            "ttfo_ms": (_nullable(_first_output_ns(r) for r in records) - sent) / 1e6,
            "e2e_ms": (end - sent) / 1e6,
            "e2e_from_scheduled_ms": (end - np.array([r.scheduled_ns for r in records], dtype=np.float64)) / 1e6,
            # Scheduled -> first sent: the client's lateness, building the request included (an open loop builds it
            # ahead and writes it when due); the waits between 429 retries are throttling, reported apart.
            "dispatch_delay_ms": (_first_sent(records) - np.array([r.scheduled_ns for r in records], dtype=np.float64))
            / 1e6,
            "tpot_ms": tpot,
            "max_itl_ms": max_gap,
            "chunks": chunks,
            "prompt_tokens": _nullable(r.prompt_tokens for r in records),
            "completion_tokens": out_tokens,
            "input_tokens_target": _nullable(r.input_tokens_target for r in records),
            "max_tokens": _nullable(r.max_tokens for r in records),
        }
    )
    return frame


def _rejections(r: Record) -> int:
    """429s met: every attempt before the last was one (only 429s are retried), and the last one may be."""
    return max(0, r.attempts - 1) + (1 if r.status == 429 else 0)


def itl_samples(records: Sequence[Record]) -> Floats:
    """Inter-token latencies (ms) of the given requests, per token (see the module's definitions)."""
    return bounds.itl(records, bounds.Estimates.none(len(records))).value


def _meets(frame: pd.DataFrame, slo: Slo | None) -> pd.Series:
    good = frame["ok"].copy()
    if slo is None:
        return good
    for column, limit in (
        ("ttft_ms", slo.ttft_ms),
        ("tpot_ms", slo.tpot_ms),
        ("max_itl_ms", slo.itl_ms),
        ("e2e_from_scheduled_ms", slo.e2e_ms),
    ):
        if limit is not None:
            # A request without the sample (e.g. one token, so no gap) does not fail that objective.
            good &= frame[column].isna() | (frame[column] <= limit)
    return good


def _rate(n: int, span_ns: float) -> float | None:
    return _round((n - 1) / (span_ns / 1e9)) if n > 1 and span_ns > 0 else None


@dataclass(frozen=True, slots=True)
class _Group:
    """Measured requests to summarize together, with what their bounds need: per request, what its step measured
    of the client and the client's lateness (ms); and the relative error of the load the client offered."""

    frame: pd.DataFrame
    records: Sequence[Record]
    estimates: bounds.Estimates
    lateness_ms: Floats
    window_s: float
    load_error: float | None  # None: not known (a whole run's table sums its steps' throughput bounds instead)


def _bounded(dist: dict[str, Any], samples: bounds.Samples) -> dict[str, Any]:
    limits, causes = samples.bounds()
    return dist | {"bounds": limits, "causes": causes}


def _latency(g: _Group) -> dict[str, Any]:
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


def _table(g: _Group, slo: Slo | None) -> dict[str, Any]:
    """The metrics of one group of measured requests over a window of `window_s` seconds."""
    frame, records, window_s = g.frame, g.records, g.window_s
    ok = frame[frame["ok"]]
    n = len(frame)
    streamed = int(frame["streamed"].sum())
    errors = frame[~frame["ok"]]
    rate_limited = int((frame["error_kind"] == "rate_limited").sum())
    failed = len(errors) - rate_limited
    good = int(_meets(frame, slo).sum())
    per_s = 1.0 / window_s if window_s > 0 else 0.0
    sent = _first_sent(records)
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


def _window_s(step: StepInfo, frame: pd.DataFrame) -> float:
    last = frame["end_ns"].max() if len(frame) else _NAN
    end = float(last) if np.isfinite(last) else float(step.dispatch_end_ns)
    return max(0.0, (max(end, float(step.dispatch_end_ns)) - step.measure_start_ns) / 1e9)


def _load(steps: Sequence[StepInfo]) -> dict[str, Any]:
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


def _offered(step: StepInfo, records: Sequence[Record], measured: Sequence[Record]) -> dict[str, Any] | None:
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


def summarize(
    run: RunFile,
    slo: Slo | None = None,
    *,
    concurrency_limit: int | None = None,
    truth: Mapping[str, Truth] | None = None,
) -> dict[str, Any]:
    """The run's summary: a table per step and one over every measured request (no validity verdict yet).

    With the target's per-key `concurrency_limit` it says whether the limit showed as it should; with the
    server's ground truth, how far the measured timings are from it.
    """
    measured = service.measured(run.requests, run.steps)
    frame = request_frame(measured)
    by_step: dict[int, list[int]] = {}
    for i, r in enumerate(measured):
        by_step.setdefault(r.step, []).append(i)
    loop_ms, wake_ms = np.zeros(len(measured)), np.zeros(len(measured))
    lateness = np.zeros(len(measured))
    steps: list[dict[str, Any]] = []
    total_window = 0.0
    for step in run.steps:
        rows = by_step.get(step.step, [])
        ours = [measured[i] for i in rows]
        loop_ms[rows] = loop_estimate_ms(step)
        wake_ms[rows] = step.wake_ns / 1e6
        lateness[rows] = bounds.lateness_ms(ours, capped=step.mode != "concurrency" and bool(step.max_concurrency))
        sub = frame.iloc[rows]
        window = _window_s(step, sub)
        total_window += window
        everything = [r for r in run.requests if r.step == step.step]
        offered = _offered(step, everything, ours)
        error = None if offered is None else float(offered["relative_error"])
        group = _Group(sub, ours, bounds.Estimates(loop_ms[rows], wake_ms[rows]), lateness[rows], window, error)
        table = _table(group, slo)
        taken = {id(r) for r in ours}
        warm = [r for r in everything if id(r) not in taken]
        header = {
            "step": step.step,
            "label": step.label,
            "mode": step.mode,
            "concurrency": step.concurrency,
            "rate": step.rate,
            "rate_end": step.rate_end,
            "arrival": step.arrival,
            "burstiness": step.burstiness,
            "max_concurrency": step.max_concurrency,
            "warmup_requests": len(warm),
            "warmup_responses_429": sum(_rejections(r) for r in warm),
            "warmup_errors": sum(1 for r in warm if r.error_kind not in (None, "rate_limited")),
        }
        extra = {"load": _load([step]), "offered": offered, "service": service.service(step, everything, ours)}
        steps.append(header | table | extra)
    estimates = bounds.Estimates(loop_ms, wake_ms)
    overall = _table(_Group(frame, measured, estimates, lateness, total_window, None), slo)
    overall["throughput_bounds"] = _summed_bounds(steps, total_window)
    overall |= {"load": _load(run.steps), "offered": None, "service": service.overall(steps, measured)}
    return {
        "version": 1,
        "run_id": run.run.run_id,
        "started_at": run.run.started_at,
        "tool": run.run.tool,
        "target": run.run.target,
        "config": run.run.config,
        "slo": slo.as_dict() if slo is not None else None,
        "steps": steps,
        "overall": overall,
        "knee": knee(steps),
        "limit": None if concurrency_limit is None else limit_behaviour(steps, concurrency_limit, _keys(measured)),
        "timing_error_ms": timing_errors(measured, truth, estimates) if truth else None,
    }


def _summed_bounds(steps: Sequence[Mapping[str, Any]], window_s: float) -> dict[str, float] | None:
    """A whole run's throughput bound: each step's, weighted by its window (the run's rate is their weighted sum)."""
    if window_s <= 0 or any(s["throughput_bounds"] is None for s in steps if s["window_s"] > 0):
        return None
    names = steps[0]["throughput"].keys() if steps else ()
    return {
        name: _round(sum(s["throughput_bounds"][name] * s["window_s"] for s in steps if s["window_s"] > 0) / window_s)
        for name in names
    }


def _keys(records: Sequence[Record]) -> int:
    return max(1, len({r.key for r in records}))


def _load_level(step: Mapping[str, Any]) -> float | None:
    value = step["concurrency"] if step["mode"] == "concurrency" else step["rate"] if step["mode"] == "rate" else None
    return None if value is None else float(value)


def knee(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
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


def limit_behaviour(steps: Sequence[Mapping[str, Any]], limit: int, keys: int = 1) -> dict[str, Any] | None:
    """Did 429s come exactly where the per-key limit says? None when the run has no closed-loop step."""
    judged: list[dict[str, Any]] = []
    for s in steps:
        if s["mode"] != "concurrency" or s["concurrency"] is None:
            continue
        users = int(s["concurrency"])
        side = "at_or_below" if users <= limit else "above" if users > limit * keys else "not_judged"
        # The limit holds at every moment: warm-up requests count here (a step's first 429s come at its start).
        rejections = int(s["responses_429"]) + int(s.get("warmup_responses_429", 0))
        honoured = None if side == "not_judged" else (rejections == 0) == (side == "at_or_below")
        judged.append(
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
            | _service_columns(s.get("service"))
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


def timing_errors(
    records: Sequence[Record], truth: Mapping[str, Truth], estimates: bounds.Estimates | None = None
) -> dict[str, Any]:
    """|measured − true| TTFT per request and ITL per gap, for the measured successful requests the server traced;
    and `cells`: per statistic of TTFT, ITL, TPOT and E2E over those requests, the measured and the true statistic,
    their difference and the bound the client gave it — `covered` when the bound holds the difference.

    Both sides are differences of one clock each, so the client's and the server's origins cancel. `estimates` are
    what each record's step measured of its client, as the summary's bounds use them. `received_by` counts the
    matched requests by whose clock took their arrival on the server: the event loop's includes the server's own
    lateness in reading them in the TTFT error.
    """
    est = estimates if estimates is not None else bounds.Estimates.none(len(records))
    pairs: list[tuple[Record, Truth, int]] = []
    unmatched = 0
    received_by = {"kernel": 0, "loop": 0, "unknown": 0}
    for i, r in enumerate(records):
        if r.error_kind is not None:
            continue
        t = truth.get(r.request_id or "")
        if t is None or r.first_token_ns is None or r.sent_ns is None or len(r.chunk_ns) != len(t.token_chunk_ns):
            unmatched += 1
            continue
        pairs.append((r, t, i))
        received_by[t.received_by or "unknown"] += 1
    ttft = [
        abs((r.first_token_ns or 0) - (r.sent_ns or 0) - (t.token_chunk_ns[0] - t.received_ns)) / 1e6
        for r, t, _ in pairs
    ]
    itl = [
        np.abs(np.diff(np.asarray(r.chunk_ns, dtype=np.int64)) - np.diff(np.asarray(t.token_chunk_ns, dtype=np.int64)))
        / 1e6
        for r, t, _ in pairs
    ]
    gaps = np.concatenate(itl) if itl else np.empty(0, dtype=np.float64)
    return {
        "matched": len(pairs),
        "unmatched": unmatched,
        "received_by": received_by,
        "ttft": distribution(ttft),
        "itl": distribution(gaps),
        "cells": _truth_cells(pairs, est),
    }


def _truth_cells(pairs: Sequence[tuple[Record, Truth, int]], estimates: bounds.Estimates) -> dict[str, Any]:
    """Measured against true statistics over the same requests, each with the measured one's bound and the truth's
    own (a server that took a while to write a chunk after stamping it says so: see `Truth`)."""
    if not pairs:
        return {}
    records = [r for r, _, _ in pairs]
    est = estimates[[i for _, _, i in pairs]]
    frame = request_frame(records)
    w = bounds.Widths.of(records, est, np.zeros(len(records)))
    tokens = frame["completion_tokens"].to_numpy(dtype=np.float64)
    ttft, tpot, e2e = (frame[c].to_numpy(dtype=np.float64) for c in ("ttft_ms", "tpot_ms", "e2e_ms"))
    true = _TrueSamples.of(pairs, tokens)
    return {
        "ttft": _cells(bounds.ttft(ttft, w), true.ttft),
        "itl": _cells(bounds.itl(records, est), true.itl),
        "tpot": _cells(bounds.tpot(tpot, w, tokens), true.tpot),
        "e2e": _cells(bounds.e2e(e2e, w), true.e2e),
    }


@dataclass(frozen=True, slots=True)
class _TrueSamples:
    """The ground truth's TTFT, ITL, TPOT and E2E (ms), each with how much later than stamped its writes may have
    left (up to each write's return)."""

    ttft: bounds.Samples
    itl: bounds.Samples
    tpot: bounds.Samples
    e2e: bounds.Samples

    @classmethod
    def of(cls, pairs: Sequence[tuple[Record, Truth, int]], tokens: Floats) -> _TrueSamples:
        n = len(pairs)
        first, last, ttft, span, e2e, end = (np.zeros(n) for _ in range(6))
        itl: list[tuple[Floats, ...]] = []
        for i, (r, t, _) in enumerate(pairs):
            late = np.zeros(len(t.token_chunk_ns))
            if t.token_written_ns:
                late = np.maximum(0, np.subtract(t.token_written_ns, t.token_chunk_ns)) / 1e6
            first[i], last[i] = late[0], late[-1]
            ttft[i] = (t.token_chunk_ns[0] - t.received_ns) / 1e6
            span[i] = (t.token_chunk_ns[-1] - t.token_chunk_ns[0]) / 1e6
            e2e[i] = _NAN if t.end_ns is None else (t.end_ns - t.received_ns) / 1e6
            end[i] = 0.0 if t.end_ns is None or t.end_written_ns is None else (t.end_written_ns - t.end_ns) / 1e6
            itl.append(bounds.gaps(t.token_chunk_ns, r.chunk_tokens, np.zeros(len(late)), late))
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(tokens > 1, 1.0 / (tokens - 1), np.nan)
        zero = np.zeros(n)
        gap_value, gap_down, gap_up = (np.concatenate([g[j] for g in itl]) for j in range(3))
        return cls(
            bounds.Samples(ttft, {"send": zero}, {"send": first}),
            bounds.Samples(gap_value, {"send": gap_down}, {"send": gap_up}),
            bounds.Samples(span * per, {"send": first * per}, {"send": last * per}),
            bounds.Samples(e2e, {"send": zero}, {"send": end}),
        )


def _cells(samples: bounds.Samples, true: bounds.Samples) -> dict[str, Any]:
    """Per statistic: covered when the measured and the true statistic are no further apart than both bounds."""
    keep = np.isfinite(samples.value) & np.isfinite(true.value)
    if not keep.any() or len(samples.value) != len(true.value):
        return {}
    limits, _ = _part(samples, keep).bounds()
    true_limits, _ = _part(true, keep).bounds()
    measured, actual = distribution(samples.value[keep]), distribution(true.value[keep])
    out: dict[str, Any] = {}
    for name in STATS:
        m, t, b, tb = measured[name], actual[name], limits[name], true_limits[name]
        error = _round(abs(m - t))
        covered = b is not None and tb is not None and error <= b + tb
        out[name] = {"measured": m, "true": t, "error": error, "bound": b, "true_bound": tb, "covered": covered}
    return out


def _part(samples: bounds.Samples, keep: npt.NDArray[np.bool_]) -> bounds.Samples:
    return bounds.Samples(
        samples.value[keep], {c: v[keep] for c, v in samples.down.items()}, {c: v[keep] for c, v in samples.up.items()}
    )


def latency_samples(run: RunFile) -> dict[str, Floats]:
    """Per-request samples of the successful measured requests (TTFT, TPOT, E2E in ms; prompt and output
    tokens), and ITL per token: what CDFs are drawn from and what a baseline comparison resamples."""
    ok = [r for r in service.measured(run.requests, run.steps) if r.error_kind is None]
    frame = request_frame(ok)
    out: dict[str, Floats] = {
        name: frame[column].to_numpy(dtype=np.float64)
        for name, column in (
            ("ttft", "ttft_ms"),
            ("tpot", "tpot_ms"),
            ("e2e", "e2e_ms"),
            ("prompt_tokens", "prompt_tokens"),
            ("completion_tokens", "completion_tokens"),
        )
    }
    out["itl"] = itl_samples(ok)
    return {name: values[np.isfinite(values)] for name, values in out.items()}


def _ramp_sums(starts: Floats, at: Floats) -> Floats:
    """Σ max(0, t − s) over the starts s, for each t: the integral of how many intervals have begun."""
    ordered = np.sort(starts)
    before = np.searchsorted(ordered, at, side="right")
    cumulative = np.concatenate(([0.0], np.cumsum(ordered)))
    return np.asarray(before * at - cumulative[before], dtype=np.float64)


def _bin_width(span_s: float) -> float:
    """A round bin width giving at most ~200 bins."""
    for width in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0):
        if span_s / width <= 200:
            return width
    return float(np.ceil(span_s / 200 / 60.0) * 60.0)


def timeline(run: RunFile, bin_s: float | None = None) -> pd.DataFrame:
    """What happened over time, every request included (warm-up too), in bins from the run's origin.

    Columns: `t_s` (bin start, s), `in_flight` (mean requests between their last send and their end),
    `output_tokens_per_s` (content tokens as they arrived), `requests_per_s` (successes by end time),
    `responses_429_per_s` and `errors_per_s` (other failures). The moments of the 429s a retried request met are
    not recorded: they are spread evenly over the time it was throttled.
    """
    records = [r for r in run.requests if r.sent_ns is not None]
    ends = np.array([_last_ns(r) for r in records], dtype=np.float64) / 1e9
    sent = np.array([r.sent_ns for r in records], dtype=np.float64) / 1e9
    span = float(ends.max()) if len(ends) else 0.0
    width = bin_s or _bin_width(span)
    # Bins cover the whole run; the last end lands inside the last bin.
    edges: Floats = np.arange(int(span // width) + 2, dtype=np.float64) * width
    busy = _ramp_sums(sent, edges) - _ramp_sums(ends, edges)
    chunk_at = np.array([t for r in records for t in r.chunk_ns], dtype=np.float64) / 1e9
    chunk_tokens = np.array(
        [
            n
            for r in records
            for n in (r.chunk_tokens if len(r.chunk_tokens) == len(r.chunk_ns) else [1] * len(r.chunk_ns))
        ],
        dtype=np.float64,
    )
    ok = np.array([r.error_kind is None for r in records], dtype=bool)
    limited = np.array([r.error_kind == "rate_limited" for r in records], dtype=bool)
    rejected: list[float] = []
    for r in records:
        earlier = max(0, r.attempts - 1)
        if earlier:
            first = (r.sent_ns or 0) - r.throttled_ns
            rejected += [(first + r.throttled_ns * k / earlier) / 1e9 for k in range(earlier)]
        if r.status == 429:
            rejected.append((r.sent_ns or 0) / 1e9)

    def per_s(times: Floats, weights: Floats | None = None) -> Floats:
        counts, _ = np.histogram(times, bins=edges, weights=weights)
        return np.asarray(counts, dtype=np.float64) / width

    return pd.DataFrame(
        {
            "t_s": edges[:-1],
            "in_flight": np.diff(busy) / width,
            "output_tokens_per_s": per_s(chunk_at, chunk_tokens),
            "requests_per_s": per_s(ends[ok]),
            "responses_429_per_s": per_s(np.asarray(rejected, dtype=np.float64)),
            "errors_per_s": per_s(ends[~ok & ~limited]),
        }
    )


def _last_ns(r: Record) -> int:
    """When a request was over: its end, else the last thing seen of it."""
    for value in (r.end_ns, r.chunk_ns[-1] if r.chunk_ns else None, r.headers_ns, r.sent_ns):
        if value is not None:
            return value
    return r.scheduled_ns
