"""One row per request: the per-request metrics every figure of a summary is computed from.

Definitions (latencies in milliseconds): TTFT is the first chunk carrying a token − the send; TTFO the first
chunk of the answer after a reasoning model's thinking (TTFT otherwise); E2E the end ([DONE]) − the send, and the
end − the *scheduled* time, so that queueing in the client (a late dispatch, a concurrency cap, 429 retries) cannot
hide; ITL the gap between consecutive chunks carrying tokens (a chunk of k tokens gives k samples of gap/k); TPOT
(last content chunk − first) / (output tokens − 1); dispatch delay the first send − the scheduled time (the waits
between 429 retries are throttling, reported apart); 429 responses every 429 a request met, the ones it retried
past included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from harness.analysis import bounds, service
from harness.analysis.stats import Floats
from harness.records.record import Record, RunFile

_NAN = float("nan")


def _nullable(values: Iterable[int | None]) -> Floats:
    return np.array([_NAN if v is None else float(v) for v in values], dtype=np.float64)


def first_sent(records: Sequence[Record]) -> Floats:
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
            "responses_429": np.array([rejections(r) for r in records], dtype=np.int64),
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
            "dispatch_delay_ms": (first_sent(records) - np.array([r.scheduled_ns for r in records], dtype=np.float64))
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


def rejections(r: Record) -> int:
    """429s met: every attempt before the last was one (only 429s are retried), and the last one may be."""
    return max(0, r.attempts - 1) + (1 if r.status == 429 else 0)


def itl_samples(records: Sequence[Record]) -> Floats:
    """Inter-token latencies (ms) of the given requests, per token (see the module's definitions)."""
    return bounds.itl(records, bounds.Estimates.none(len(records))).value


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
