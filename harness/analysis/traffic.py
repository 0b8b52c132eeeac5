"""The figures of real-traffic runs: multi-turn sessions, shared prefixes, prefix caching and trace replay.

From the measured records (`harness.analysis.service` says which), over the whole run:

- **by turn**: per turn index of a session, the requests, TTFT (first token − send, as `harness.analysis.frame`
  defines it), the prompt, history and cached tokens, and the cache-hit share;
- **by context length**: TTFT of the successful requests grouped by their prompt tokens (bins doubling from 128);
- **cache**: of the successful requests whose server reported `cached_tokens`, the prompt tokens and the cached
  ones; the hit share is cached ÷ prompt tokens (None when the server reported nothing: the `anyscale` profile,
  or a server without a prefix cache);
- **sessions**: how many were played, how many to their last turn (complete), how many a failed turn stopped
  (`harness.load.sessions` states the rule); per complete session its duration (first send to last end), the time
  its user thought (each turn's schedule less the end of the turn before) and the duration less that thinking:
  the think-time-corrected duration, what the endpoint and the client took;
- **replay** (a trace): how far each send came after its trace time — first send − schedule, the schedule being
  the trace's time (`dispatch_delay_ms` of the frame) — and the rates of the trace and of the sends, over the run
  and per second of the trace (the largest gap between the requests due and those sent in one second).

It is None for a run of plain requests whose server reported no cached tokens.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.analysis.frame import first_sent, request_frame
from harness.analysis.stats import distribution, round6
from harness.records.record import Record

CONTEXT_BINS = (0, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


def traffic(measured: Sequence[Record], config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The figures above, or None when the run had none of what they describe."""
    workload = config.get("workload") if isinstance(config.get("workload"), dict) else {}
    kind = str((workload or {}).get("kind") or "requests")
    sessions = any(r.session is not None for r in measured)
    cached = any(r.cached_tokens is not None for r in measured)
    grouped = any(r.prefix_group is not None for r in measured)
    if not (sessions or cached or grouped or kind != "requests"):
        return None
    if sessions and kind == "requests":
        kind = "sessions"  # records of sessions from a writer that does not describe its workload (Locust)
    ok = [r for r in measured if r.error_kind is None]
    return {
        "workload": kind,
        "turns": by_turn(measured) if sessions else None,
        "context": by_context(ok),
        "cache": cache(ok),
        "sessions": session_figures(measured) if sessions else None,
        "replay": replay(measured) if kind == "trace" else None,
    }


def _ttft_ms(records: Sequence[Record]) -> np.ndarray[Any, np.dtype[np.float64]]:
    values: np.ndarray[Any, np.dtype[np.float64]] = request_frame(records)["ttft_ms"].to_numpy(dtype=np.float64)
    return values


def _mean(values: Sequence[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round6(sum(known) / len(known)) if known else None


def _hit_share(records: Sequence[Record]) -> float | None:
    reported = [r for r in records if r.cached_tokens is not None and r.prompt_tokens]
    prompt = sum(r.prompt_tokens or 0 for r in reported)
    return round6(sum(r.cached_tokens or 0 for r in reported) / prompt) if prompt else None


def by_turn(measured: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per turn index."""
    rows = []
    for turn in sorted({r.turn for r in measured if r.turn is not None}):
        mine = [r for r in measured if r.turn == turn]
        ok = [r for r in mine if r.error_kind is None]
        rows.append(
            {
                "turn": turn,
                "requests": len(mine),
                "ok": len(ok),
                "ttft_ms": distribution(_ttft_ms(ok)),
                "prompt_tokens_mean": _mean([r.prompt_tokens for r in ok]),
                "history_tokens_mean": _mean([r.history_tokens for r in ok]),
                "cached_tokens_mean": _mean([r.cached_tokens for r in ok]),
                "cache_hit_share": _hit_share(ok),
            }
        )
    return rows


def by_context(ok: Sequence[Record]) -> list[dict[str, Any]]:
    """TTFT per bin of prompt tokens, for the bins that have requests."""
    rows = []
    edges = [*CONTEXT_BINS, math.inf]
    ttft = _ttft_ms(ok)
    tokens = np.array([r.prompt_tokens if r.prompt_tokens is not None else -1 for r in ok], dtype=np.float64)
    for low, high in itertools.pairwise(edges):
        inside = (tokens >= low) & (tokens < high)
        if inside.any():
            rows.append(
                {
                    "min_tokens": low,
                    "max_tokens": None if high == math.inf else int(high) - 1,
                    "requests": int(inside.sum()),
                    "ttft_ms": distribution(ttft[inside]),
                }
            )
    return rows


def cache(ok: Sequence[Record]) -> dict[str, Any]:
    reported = [r for r in ok if r.cached_tokens is not None]
    return {
        "requests": len(ok),
        "reported": len(reported),
        "with_hits": sum(1 for r in reported if r.cached_tokens),
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in reported),
        "cached_tokens": sum(r.cached_tokens or 0 for r in reported),
        "hit_share": _hit_share(reported),
        "prefix_groups": len({r.prefix_group for r in ok if r.prefix_group is not None}),
    }


def session_figures(measured: Sequence[Record]) -> dict[str, Any]:
    """Sessions as their users lived them (see the module's definitions)."""
    played: dict[int, list[Record]] = {}
    for r in measured:
        if r.session is not None:
            played.setdefault(r.session, []).append(r)
    durations, thinking, active, turns = [], [], [], []
    stopped = complete = 0
    for turns_of in played.values():
        turns_of.sort(key=lambda r: r.turn or 0)
        turns.append(len(turns_of))
        if turns_of[-1].error_kind is not None:
            stopped += 1
            continue
        if len(turns_of) != turns_of[0].session_turns:
            continue  # cut short: the run halted, or its first turns were not measured
        complete += 1
        began, ended = first_sent([turns_of[0]])[0], turns_of[-1].end_ns
        think = sum(b.scheduled_ns - (a.end_ns or b.scheduled_ns) for a, b in itertools.pairwise(turns_of))
        if np.isfinite(began) and ended is not None:
            durations.append((ended - began) / 1e6)
            thinking.append(think / 1e6)
            active.append((ended - began - think) / 1e6)
    return {
        "count": len(played),
        "complete": complete,
        "stopped": stopped,
        "turns": distribution(turns),
        "duration_ms": distribution(durations),
        "think_ms": distribution(thinking),
        "corrected_duration_ms": distribution(active),
    }


def replay(measured: Sequence[Record]) -> dict[str, Any]:
    """How closely the sends followed the trace's times."""
    frame = request_frame(measured)
    due = frame["scheduled_ns"].to_numpy(dtype=np.float64)
    sent = first_sent(measured)
    late = frame["dispatch_delay_ms"].to_numpy(dtype=np.float64)
    went = np.isfinite(sent)
    out: dict[str, Any] = {
        "requests": len(measured),
        "sent": int(went.sum()),
        "lag_ms": distribution(late),
        "trace_rate": _rate(due),
        "achieved_rate": _rate(sent[went]),
        "seconds": 0,
        "per_second_max_error": None,
        "per_second_mean_error": None,
    }
    if len(due) and went.any():
        start = float(due.min())
        seconds = int((max(float(due.max()), float(sent[went].max())) - start) // 1e9) + 1
        asked = np.bincount(((due - start) // 1e9).astype(np.int64), minlength=seconds)
        got = np.bincount(np.maximum(0, (sent[went] - start) // 1e9).astype(np.int64), minlength=seconds)
        error = np.abs(got - asked)
        out |= {
            "seconds": seconds,
            "per_second_max_error": int(error.max()),
            "per_second_mean_error": round6(float(error.mean())),
        }
    return out


def _rate(times_ns: np.ndarray[Any, np.dtype[np.float64]]) -> float | None:
    if len(times_ns) < 2 or times_ns.max() <= times_ns.min():
        return None
    return round6((len(times_ns) - 1) / ((float(times_ns.max()) - float(times_ns.min())) / 1e9))
