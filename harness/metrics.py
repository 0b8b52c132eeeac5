"""Every metric of a run, derived from its records (the one place where that happens).

Definitions (all latencies in milliseconds; only measured, non-warm-up requests count):
- TTFT: first chunk carrying content − send time. E2E: end ([DONE]) − send time, and end − *scheduled* time, so that
  queueing in the client (a late dispatch, a concurrency cap, 429 retries) cannot hide.
- ITL: the gap between consecutive content chunks; a chunk carrying k tokens contributes k samples of gap/k.
- TPOT: (last content chunk − first content chunk) / (output tokens − 1), per request.
- Throughput: over the step's window, from its measurement start to the end of its last measured request.
- Goodput: successful requests meeting every SLO given (TTFT, TPOT, worst ITL gap of the request, E2E from the
  scheduled time), per second and as a fraction of measured requests.
- Rates: errors (every failure but 429s), 429s (requests that ended rate-limited), and conformance errors (requests
  with at least one, among those that streamed).
- Percentiles are exact (nearest rank over every sample): p50, p90, p95, p99, p99.9 and max.
- Fairness: Jain's index of the output-token throughput each API key received, when there are several keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from harness.records import ERROR_KINDS, Record, RunFile, StepInfo

Floats = npt.NDArray[np.float64]
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9))
_NAN = float("nan")


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


def distribution(values: Iterable[float] | Floats) -> dict[str, Any]:
    """Count, mean, min, exact percentiles and max of the finite values (None for each when there are none)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    out: dict[str, Any] = {"count": int(a.size)}
    if a.size == 0:
        return out | {"mean": None, "min": None} | {name: None for name, _ in PERCENTILES} | {"max": None}
    out["mean"] = _round(float(a.mean()))
    out["min"] = _round(float(a.min()))
    for name, q in PERCENTILES:
        out[name] = _round(float(np.percentile(a, q, method="inverted_cdf")))
    out["max"] = _round(float(a.max()))
    return out


def jain_index(values: Sequence[float]) -> float | None:
    """(Σx)² / (n·Σx²): 1 when every key got the same, 1/n when one key got everything."""
    x = np.asarray(values, dtype=np.float64)
    squares = float((x * x).sum())
    if x.size == 0 or squares == 0:
        return None
    return _round(float(x.sum()) ** 2 / (x.size * squares))


def _round(value: float) -> float:
    return round(value, 6)


def _nullable(values: Iterable[int | None]) -> Floats:
    return np.array([_NAN if v is None else float(v) for v in values], dtype=np.float64)


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
            "throttled": np.array([r.attempts > 1 for r in records], dtype=bool),
            "throttled_ms": np.array([r.throttled_ns / 1e6 for r in records], dtype=np.float64),
            "scheduled_ns": np.array([r.scheduled_ns for r in records], dtype=np.float64),
            "sent_ns": sent,
            "end_ns": end,
            "ttft_ms": (_nullable(r.first_token_ns for r in records) - sent) / 1e6,
            "e2e_ms": (end - sent) / 1e6,
            "e2e_from_scheduled_ms": (end - np.array([r.scheduled_ns for r in records], dtype=np.float64)) / 1e6,
            "dispatch_delay_ms": (sent - np.array([r.scheduled_ns for r in records], dtype=np.float64)) / 1e6,
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


def itl_samples(records: Iterable[Record]) -> Floats:
    """Inter-token latencies (ms) of the given requests, per token (see the module's definitions)."""
    parts: list[Floats] = []
    for r in records:
        if len(r.chunk_ns) < 2:
            continue
        at = np.asarray(r.chunk_ns, dtype=np.int64)
        tokens = np.asarray(r.chunk_tokens, dtype=np.int64)
        if len(tokens) != len(at):
            tokens = np.ones(len(at), dtype=np.int64)
        keep = tokens > 0
        at, tokens = at[keep], tokens[keep]
        if len(at) < 2:
            continue
        per_token = np.diff(at) / tokens[1:] / 1e6
        parts.append(np.repeat(per_token, tokens[1:]))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


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


def _table(frame: pd.DataFrame, records: Sequence[Record], window_s: float, slo: Slo | None) -> dict[str, Any]:
    """The metrics of one group of measured requests over a window of `window_s` seconds."""
    ok = frame[frame["ok"]]
    n = len(frame)
    streamed = int(frame["streamed"].sum())
    errors = frame[~frame["ok"]]
    rate_limited = int((frame["error_kind"] == "rate_limited").sum())
    failed = len(errors) - rate_limited
    good = int(_meets(frame, slo).sum())
    per_s = 1.0 / window_s if window_s > 0 else 0.0
    ok_records = [r for r, fine in zip(records, frame["ok"].to_numpy(), strict=True) if fine]
    sent = frame["sent_ns"].dropna().to_numpy()
    scheduled = frame["scheduled_ns"].to_numpy()
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
        },
        "throttled_s": _round(float(frame["throttled_ms"].sum()) / 1e3),
        "throughput": {
            "requests_per_s": _round(len(ok) * per_s),
            "output_tokens_per_s": _round(float(ok["completion_tokens"].sum()) * per_s),
            "input_tokens_per_s": _round(float(ok["prompt_tokens"].sum()) * per_s),
            "chunks_per_s": _round(float(frame["chunks"].sum()) * per_s),
            "goodput_requests_per_s": _round(good * per_s),
        },
        "goodput_fraction": _round(good / n) if n else None,
        "latency_ms": {
            "ttft": distribution(ok["ttft_ms"].to_numpy()),
            "itl": distribution(itl_samples(ok_records)),
            "tpot": distribution(ok["tpot_ms"].to_numpy()),
            "e2e": distribution(ok["e2e_ms"].to_numpy()),
            "e2e_from_scheduled": distribution(ok["e2e_from_scheduled_ms"].to_numpy()),
            "dispatch_delay": distribution(frame["dispatch_delay_ms"].to_numpy()),
        },
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


def summarize(run: RunFile, slo: Slo | None = None) -> dict[str, Any]:
    """The run's summary: a table per step and one over every measured request (no validity verdict yet)."""
    measured = [r for r in run.requests if not r.warmup]
    frame = request_frame(measured)
    by_step: dict[int, list[int]] = {}
    for i, r in enumerate(measured):
        by_step.setdefault(r.step, []).append(i)
    steps: list[dict[str, Any]] = []
    total_window = 0.0
    for step in run.steps:
        rows = by_step.get(step.step, [])
        sub = frame.iloc[rows]
        window = _window_s(step, sub)
        total_window += window
        table = _table(sub, [measured[i] for i in rows], window, slo)
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
            "warmup_requests": sum(1 for r in run.requests if r.warmup and r.step == step.step),
        }
        steps.append(header | table | {"load": _load([step])})
    overall = _table(frame, measured, total_window, slo) | {"load": _load(run.steps)}
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
    }
