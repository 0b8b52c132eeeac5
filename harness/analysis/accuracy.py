"""The harness's timing error against the reference server's ground truth, and whether the bounds covered it.

|measured − true| for TTFT per request and ITL per gap, against the server's own traces; and per statistic, the
measured statistic against the ground truth's over the same requests, beside its bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.analysis import bounds
from harness.analysis.frame import request_frame
from harness.analysis.stats import STATS, Floats, distribution
from harness.analysis.stats import round6 as _round
from harness.records.record import Record
from harness.records.truth import Truth

_NAN = float("nan")


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
