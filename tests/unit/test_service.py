"""Which step measures a request, and the service figures of a step above the limit, on hand-built records."""

from __future__ import annotations

import pytest

from harness.analysis import service
from harness.analysis.summary import summarize
from harness.records.record import Record, RunFile, RunInfo, StepInfo

MS = 1_000_000
S = 1000 * MS
RUN = RunInfo("r", "2024-01-01T00:00:00.000+00:00", 0, 0, target={}, config={})


def step(users: int = 3) -> StepInfo:
    # Warm-up until 1 s, sending until 11 s.
    return StepInfo("r", 0, f"concurrency={users}", "concurrency", 0, 1 * S, 11 * S, 12 * S, concurrency=users)


def ok(user: int, scheduled_s: float, sent_s: float, end_s: float, attempts: int = 1, warmup: bool = False) -> Record:
    return Record(
        run_id="r",
        user=user,
        warmup=warmup,
        scheduled_ns=round(scheduled_s * S),
        sent_ns=round(sent_s * S),
        first_token_ns=round(end_s * S) - MS,
        end_ns=round(end_s * S),
        chunk_ns=[round(end_s * S) - MS],
        chunk_tokens=[1],
        status=200,
        completion_tokens=1,
        attempts=attempts,
        throttled_ns=round((sent_s - scheduled_s) * S) if attempts > 1 else 0,
        kernel_timed=True,
    )


def throttled(user: int, scheduled_s: float, last_sent_s: float, attempts: int, warmup: bool = False) -> Record:
    """Refused with 429 `attempts` times and given up: never served."""
    r = Record(
        run_id="r",
        user=user,
        warmup=warmup,
        scheduled_ns=round(scheduled_s * S),
        sent_ns=round(last_sent_s * S),
        end_ns=round(last_sent_s * S) + MS,
        status=429,
        attempts=attempts,
        throttled_ns=round((last_sent_s - scheduled_s) * S),
    )
    r.fail("rate_limited", "limit")
    return r


def test_a_warm_up_request_retried_into_the_window_is_measured_and_one_sent_once_is_not() -> None:
    retried_in = ok(2, 0.5, 3.0, 4.0, attempts=4, warmup=True)  # scheduled in warm-up, admitted at 3 s
    served_early = ok(0, 0.5, 0.5, 0.9, warmup=True)
    retried_early = ok(1, 0.1, 0.6, 0.8, attempts=2, warmup=True)  # retried, but admitted before the window
    assert service.measured([retried_in, served_early, retried_early], [step()]) == [retried_in]


def test_starvation_above_the_limit_is_in_view() -> None:
    # Users 0 and 1 are served back to back; user 2's request, scheduled in warm-up, waits for a slot until 9 s and
    # ends at 10 s; a fourth request of user 2's was scheduled at 10 s and still waited when sending stopped.
    records = [ok(u, t, t, t + 1) for u in (0, 1) for t in range(1, 11)]
    records += [ok(2, 0.5, 9.0, 10.0, attempts=19, warmup=True), throttled(2, 10.0, 11.5, 3)]
    summary = summarize(RunFile(RUN, [step()], records))
    figures = summary["steps"][0]["service"]
    assert figures["starved_users"] == 0  # user 2 was served once, at the end
    wait = figures["wait_for_service_ms"]
    assert wait["max"] == pytest.approx(8500.0)  # scheduled at 0.5 s, admitted at 9 s
    assert figures["unserved_at_end"] == {"count": 1, "max_age_ms": 1000.0, "ages_ms": [1000.0]}
    # Completed in the window: 10, 10 and 1 → Jain (21²) / (3 · 201) = 0.731.
    assert figures["fairness_users"] == pytest.approx(441 / 603, abs=1e-6)
    step_row = summary["steps"][0]
    assert step_row["responses_429"] == 18 + 3  # the waiting request's 429s are in the step's counts now
    assert step_row["latency_ms"]["e2e_from_scheduled"]["max"] == pytest.approx(9500.0)


def test_a_user_that_got_nothing_in_the_window_is_starved() -> None:
    records = [ok(u, t, t, t + 1) for u in (0, 1) for t in range(1, 11)]
    records.append(throttled(2, 0.5, 11.5, 20, warmup=True))  # refused the whole step long
    summary = summarize(RunFile(RUN, [step()], records), concurrency_limit=2)
    figures = summary["steps"][0]["service"]
    assert figures["starved_users"] == 1 and figures["starved_user_ids"] == [2]
    assert figures["unserved_at_end"]["count"] == 1 and figures["unserved_at_end"]["max_age_ms"] == 10_500.0
    (row,) = summary["limit"]["steps"]
    assert row["starved_users"] == 1 and row["unserved_at_end"] == 1 and row["responses_429"] == 20
    assert summary["overall"]["service"]["starved_users"] == 1


def test_an_open_loop_has_no_users_but_keys_that_got_nothing_are_named() -> None:
    open_step = StepInfo("r", 0, "rate=1/s,poisson", "rate", 0, 0, 10 * S, 11 * S, rate=1.0)
    served = [ok(0, t, t, t + 0.5) for t in range(10)]
    for r in served:
        r.user, r.key = None, "key-1"
    refused = throttled(0, 2.0, 2.0, 1)
    refused.user, refused.key = None, "key-2"
    figures = summarize(RunFile(RUN, [open_step], [*served, refused]))["steps"][0]["service"]
    assert figures["users"] is None and figures["starved_users"] is None and figures["fairness_users"] is None
    assert figures["starved_keys"] == ["key-2"]
