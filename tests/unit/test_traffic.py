"""Real-traffic figures from hand-built records with round numbers: TTFT by turn and by context length, the cache's
hit share, sessions (complete, stopped, think-time-corrected) and a trace replay's timing; none for plain runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.analysis.bounds import idle_share
from harness.analysis.traffic import traffic
from harness.records.record import Record

from .built_runs import MS, ok_request

SESSIONS = {"workload": {"kind": "sessions"}}


def turn(session: int, index: int, sent_ms: float, ttft_ms: float, prompt: int, cached: int | None) -> Record:
    """Turn `index` of a 3-turn session: 4 ms after its first token it ends; it was due 1 ms before its send."""
    r = ok_request(0, 10 * session + index, sent_ms, ttft_ms, [2.0, 2.0])
    fields: dict[str, Any] = {
        "session": session,
        "turn": index,
        "session_turns": 3,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "history_tokens": 0 if index == 0 else prompt - 10,
        "scheduled_ns": round((sent_ms - 1) * MS),
        "user": 0,
    }
    return dataclasses.replace(r, **fields)


def session(number: int, start_ms: float, think_ms: float = 100.0) -> list[Record]:
    """Turns of 100, 300 and 700 prompt tokens, TTFT 10, 20 and 30 ms; each next turn due `think_ms` after the end."""
    records, due = [], start_ms
    for k, (prompt, cached) in enumerate(((100, 0), (300, 96), (700, 288))):
        r = turn(number, k, due + 1, 10.0 * (k + 1), prompt, cached)
        records.append(r)
        assert r.end_ns is not None
        due = r.end_ns / MS + think_ms
    return records


def test_turns_and_context_lengths_get_their_ttft_and_tokens() -> None:
    found = traffic([*session(0, 0.0), *session(1, 50.0)], SESSIONS)
    assert found is not None and found["workload"] == "sessions"
    turns = found["turns"]
    assert [(t["turn"], t["requests"], t["ok"]) for t in turns] == [(0, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert [t["ttft_ms"]["p50"] for t in turns] == [10.0, 20.0, 30.0]
    assert [t["prompt_tokens_mean"] for t in turns] == [100.0, 300.0, 700.0]
    assert [t["history_tokens_mean"] for t in turns] == [0.0, 290.0, 690.0]
    assert [t["cache_hit_share"] for t in turns] == [0.0, 0.32, round(288 / 700, 6)]
    context = found["context"]
    assert [(c["min_tokens"], c["max_tokens"], c["requests"]) for c in context] == [(0, 127, 2), (256, 511, 2),
                                                                                     (512, 1023, 2)]  # fmt: skip
    assert [c["ttft_ms"]["max"] for c in context] == [10.0, 20.0, 30.0]
    assert found["cache"] == {"requests": 6, "reported": 6, "with_hits": 4, "prompt_tokens": 2200,
                              "cached_tokens": 768, "hit_share": round(768 / 2200, 6), "prefix_groups": 0}  # fmt: skip


def test_sessions_are_complete_stopped_or_cut_and_their_thinking_is_taken_out() -> None:
    complete = session(0, 0.0, think_ms=100.0)
    stopped = session(1, 0.0)[:2]
    stopped[1] = dataclasses.replace(stopped[1], error_kind="rate_limited", status=429)
    cut = session(2, 0.0)[:2]
    found = traffic([*complete, *stopped, *cut], SESSIONS)
    assert found is not None and found["sessions"] is not None
    sessions = found["sessions"]
    assert (sessions["count"], sessions["complete"], sessions["stopped"]) == (3, 1, 1)
    assert (sessions["turns"]["min"], sessions["turns"]["max"]) == (2.0, 3.0)
    # Sent at 1 ms; turns of 14, 24 and 34 ms, each next one sent 101 ms after the one before ended (due after 100).
    assert sessions["duration_ms"]["max"] == 14 + 101 + 24 + 101 + 34
    assert sessions["think_ms"]["max"] == 200.0
    assert sessions["corrected_duration_ms"]["max"] == 14 + 1 + 24 + 1 + 34
    assert found["turns"] is not None and found["turns"][1]["ok"] == 2 and found["turns"][1]["requests"] == 3


def test_a_trace_replay_gets_its_lag_and_rates() -> None:
    records = []
    for i in range(30):
        r = ok_request(0, i, 100.0 * i + (3.0 if i % 10 == 9 else 0.0), 5.0, [1.0])
        records.append(dataclasses.replace(r, scheduled_ns=round(100.0 * i * MS)))
    found = traffic(records, {"workload": {"kind": "trace"}})
    assert found is not None and found["turns"] is None and found["sessions"] is None
    replay = found["replay"]
    assert replay is not None
    assert (replay["requests"], replay["sent"], replay["seconds"]) == (30, 30, 3)
    assert (replay["lag_ms"]["p50"], replay["lag_ms"]["max"], replay["lag_ms"]["count"]) == (0.0, 3.0, 30)
    assert replay["trace_rate"] == round(29 / 2.9, 6) and replay["achieved_rate"] == round(29 / 2.903, 6)
    assert (replay["per_second_max_error"], replay["per_second_mean_error"]) == (0, 0.0)
    late = [dataclasses.replace(r, sent_ns=r.scheduled_ns + 150 * MS) if r.index == 9 else r for r in records]
    moved = traffic(late, {"workload": {"kind": "trace"}})
    assert moved is not None and moved["replay"] is not None
    assert (moved["replay"]["per_second_max_error"], moved["replay"]["per_second_mean_error"]) == (1, round(2 / 3, 6))


def test_plain_requests_have_no_traffic_figures_unless_the_server_reported_its_cache() -> None:
    plain = [ok_request(0, i, 10.0 * i, 5.0, [1.0]) for i in range(3)]
    assert traffic(plain, {}) is None
    reported = [dataclasses.replace(r, cached_tokens=0) for r in plain]
    found = traffic(reported, {})
    assert found is not None and found["workload"] == "requests" and found["cache"]["hit_share"] == 0.0
    grouped = [dataclasses.replace(r, prefix_group=r.index % 2) for r in plain]
    found = traffic(grouped, {"workload": {"kind": "requests"}})
    assert found is not None and found["cache"]["prefix_groups"] == 2 and found["cache"]["hit_share"] is None


def test_a_sessions_user_thinking_is_not_idleness_of_the_closed_loop() -> None:
    records = session(0, 0.0, think_ms=100.0)
    start, end = records[0].sent_ns, records[-1].end_ns
    assert start is not None and end is not None
    assert idle_share(records, 1, start, end) == 0.0
    plain = [dataclasses.replace(r, session=None, turn=None) for r in records]
    share = idle_share(plain, 1, start, end)
    assert share is not None and share > 0.5  # the same gaps, without sessions, are the user doing nothing
