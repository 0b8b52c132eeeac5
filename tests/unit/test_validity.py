"""The verdict follows from the error bounds: hand-built runs whose bounds are worked out in the comments."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.analysis import validity
from harness.analysis.stats import distribution
from harness.analysis.summary import summarize
from harness.analysis.validity import Tolerance, Tolerances, judge
from harness.records.record import Record, RunFile, RunInfo, StepInfo

MS = 1_000_000
RUN = RunInfo("r", "2024-01-01T00:00:00.000+00:00", 0, 0, target={}, config={})


def closed_step(users: int, end_ms: int, lag_ms: float = 0.1, wake_ms: float = 0.0) -> StepInfo:
    return StepInfo(
        "r",
        0,
        f"concurrency={users}",
        "concurrency",
        started_ns=0,
        measure_start_ns=0,
        dispatch_end_ns=end_ms * MS,
        ended_ns=end_ms * MS,
        concurrency=users,
        cpu_s=0.01,
        loop_lag_ns=[round(lag_ms * MS)] * 10,
        loop_lag_interval_ns=20 * MS,
        wake_ns=round(wake_ms * MS),
    )


def streamed(
    user: int | None,
    scheduled_ms: float,
    sent_ms: float,
    ttft_ms: float,
    chunks: int,
    itl_ms: float,
    **fields: Any,
) -> Record:
    """A kernel-timed success: sent `sent_ms` (written 10 µs later), `chunks` one-token chunks `itl_ms` apart.

    With no `user` (an open loop's, or an older writer's) the step's idle share is unknown, so the load offered and
    the throughput carry no bound."""
    sent = round(sent_ms * MS)
    times = [sent + round((ttft_ms + i * itl_ms) * MS) for i in range(chunks)]
    base: dict[str, Any] = {
        "run_id": "r",
        "user": user,
        "scheduled_ns": round(scheduled_ms * MS),
        "sent_ns": sent,
        "written_ns": sent + 10_000,
        "first_token_ns": times[0],
        "end_ns": times[-1],
        "chunk_ns": times,
        "chunk_tokens": [1] * chunks,
        "status": 200,
        "completion_tokens": chunks,
        "prompt_tokens": 10,
        "attempts": 1,
        "kernel_timed": True,
    }
    return Record(**(base | fields))


def lockstep(users: int, rounds: int, e2e_ms: float, build_ms: float) -> list[Record]:
    """Users that finish together (one engine step ends every sequence) and build their next requests back to back:
    user u's request of round k is taken up at the round's end and sent u × `build_ms` later."""
    out = []
    for k in range(rounds):
        start = k * (e2e_ms + users * build_ms)
        for u in range(users):
            sent = start + u * build_ms
            ttft = e2e_ms - 7 * 100.0 - u * build_ms  # every stream ends in the same engine step
            out.append(streamed(u, start, sent, ttft, 8, 100.0))
    return out


def judged(records: list[Record], step: StepInfo) -> dict[str, Any]:
    return validity.apply(summarize(RunFile(RUN, [step], records)))


def test_a_closed_loop_whose_users_finish_together_is_valid_when_the_lateness_is_small_against_the_latency() -> None:
    # The case that a fixed 10 ms limit on dispatch delay refused: 30 users, E2E ~5.3 s, requests built 0.7 ms apart,
    # so the last user sends 21 ms after the round began. E2E from the schedule carries up to 21 ms of lateness
    # (0.4 % of 5.3 s, under the 1 % tolerance); users idle 0.2 % of the time (under 1 %).
    records = lockstep(users=30, rounds=4, e2e_ms=5300.0, build_ms=0.7)
    summary = judged(records, closed_step(30, end_ms=4 * 5321))
    step = summary["steps"][0]
    assert summary["validity"]["verdict"] == "VALID", summary["validity"]["reasons"]
    assert step["latency_ms"]["dispatch_delay"]["max"] == pytest.approx(20.3)
    e2e_s = step["latency_ms"]["e2e_from_scheduled"]
    # Every E2E from the schedule is 5,300 ms; user u's holds u × 0.7 ms of lateness: its mean 10.15 ms of it, its
    # min as much as the latest user's 20.3 ms (each with 50 µs of granularity).
    assert e2e_s["bounds"]["mean"] == pytest.approx(10.2) and e2e_s["bounds"]["min"] == pytest.approx(20.35)
    assert e2e_s["causes"]["mean"] == "lateness"
    assert 0 < step["offered"]["relative_error"] < 0.01
    worst = summary["validity"]["worst"]
    assert worst["ratio"] < 1  # the largest bound against its tolerance: still within it


def test_the_same_lateness_against_short_requests_is_invalid_and_says_why() -> None:
    # 21 ms of lateness against E2E of 800 ms is 2.6 %: E2E from the schedule cannot be trusted to 1 %, and users
    # were idle 1.3 % of the time (the load offered is off by more than 1 %).
    records = lockstep(users=30, rounds=4, e2e_ms=800.0, build_ms=0.7)
    summary = judged(records, closed_step(30, end_ms=4 * 821))
    reasons = summary["steps"][0]["validity"]["reasons"]
    assert summary["validity"]["verdict"] == "INVALID"
    assert any(r.startswith("E2E from schedule") and "requests sent after they were due" in r for r in reasons)
    assert any(r.startswith("output tokens/s") and "the load offered fell short" in r for r in reasons)
    assert not any(r.startswith(("TTFT", "ITL")) for r in reasons)  # the stamps themselves are exact


def test_chunks_read_together_widen_itl_and_one_reason_names_the_number_its_bound_and_the_cause() -> None:
    # Every request's chunks 2 and 3 came in one read 40 ms after the read before it: chunk 2 may have come up to
    # 40 ms early, so the gaps on either side of it are uncertain by 40 ms.
    records = [
        streamed(None, 1000.0 * i, 1000.0 * i, 50.0, 8, 10.0, chunk_early_ns=[[2, 40 * MS, None]]) for i in range(10)
    ]
    summary = judged(records, closed_step(1, end_ms=10_000))
    itl = summary["steps"][0]["latency_ms"]["itl"]
    assert itl["bounds"]["max"] == pytest.approx(40.05)  # 40 ms, and 50 µs of delivery granularity
    assert itl["causes"]["max"] == "reads"
    reasons = [r for r in summary["steps"][0]["validity"]["reasons"] if r.startswith("ITL")]
    assert len(reasons) == 1 and "chunks read together" in reasons[0] and "more of its statistics" in reasons[0]


def test_a_woken_iteration_narrows_what_a_read_together_chunk_can_be_off_by_to_the_wake_up_latency() -> None:
    # The same reads, but they came in an iteration woken from a wait 0.2 ms after the stamp, and the step's
    # largest wake-up latency was 0.3 ms: the early chunk arrived no sooner than 0.1 ms before its stamp.
    early = [[2, 40 * MS, -200_000]]
    records = [streamed(None, 1000.0 * i, 1000.0 * i, 50.0, 8, 10.0, chunk_early_ns=early) for i in range(10)]
    summary = judged(records, closed_step(1, end_ms=10_000, wake_ms=0.3))
    assert summary["steps"][0]["latency_ms"]["itl"]["bounds"]["max"] == pytest.approx(0.15)
    assert summary["validity"]["verdict"] == "VALID", summary["validity"]["reasons"]


def test_reads_the_loop_timed_carry_the_step_s_largest_loop_lag() -> None:
    records = [streamed(0, 1000.0 * i, 1000.0 * i, 50.0, 4, 10.0, kernel_timed=False) for i in range(10)]
    summary = judged(records, closed_step(1, end_ms=10_000, lag_ms=3.0))
    ttft = summary["steps"][0]["latency_ms"]["ttft"]
    # 3 ms of lag, 10 µs of send, 50 µs of granularity; TTFT 50 ms → tolerance 1 ms.
    assert ttft["bounds"]["p50"] == pytest.approx(3.06) and ttft["causes"]["p50"] == "loop"
    assert summary["validity"]["verdict"] == "INVALID"


def test_a_run_that_measured_nothing_is_unusable_with_its_first_error() -> None:
    refused = [
        Record(run_id="r", user=0, scheduled_ns=i * MS, sent_ns=i * MS, end_ns=i * MS + 1, status=422, attempts=1)
        for i in range(5)
    ]
    for r in refused:
        r.fail("http_4xx", "422: ignore_eos is not a known field")
    summary = judged(refused, closed_step(1, end_ms=10))
    assert summary["validity"]["verdict"] == "UNUSABLE"
    assert summary["validity"]["reasons"] == [
        "no request succeeded; first error: HTTP 422 http_4xx: 422: ignore_eos is not a known field"
    ]
    assert summary["steps"][0]["validity"]["verdict"] == "UNUSABLE"


def test_a_step_that_measured_no_success_makes_the_run_invalid() -> None:
    good = [streamed(None, 0.0, 0.0, 50.0, 4, 10.0)]
    steps = [closed_step(1, end_ms=100), StepInfo("r", 1, "concurrency=1", "concurrency", 100 * MS, 100 * MS,
                                                  200 * MS, 200 * MS, concurrency=1)]  # fmt: skip
    summary = validity.apply(summarize(RunFile(RUN, steps, good)))
    assert summary["validity"]["verdict"] == "INVALID"
    assert summary["validity"]["reasons"] == ["step 1 (concurrency=1): measured no successful request"]


def test_the_max_and_the_min_are_shown_with_their_bound_but_not_judged() -> None:
    # One request in 200 had a chunk read together with a later one, 30 ms early: the max ITL is uncertain by 30 ms,
    # every percentile up to p99.9 is not.
    records = [streamed(None, 100.0 * i, 100.0 * i, 20.0, 8, 10.0) for i in range(200)]
    records[7].chunk_early_ns = [[3, 30 * MS, None]]
    records[7].chunk_ns[4] += 30 * MS  # and that gap is the longest
    summary = judged(records, closed_step(1, end_ms=20_000))
    itl = summary["steps"][0]["latency_ms"]["itl"]
    assert itl["bounds"]["max"] > 29 and itl["bounds"]["p99_9"] < 1
    assert summary["validity"]["verdict"] == "VALID", summary["validity"]["reasons"]


def test_tolerances_parse_per_metric_and_keep_the_other_part() -> None:
    t = Tolerances.parse(["ttft=2ms", "itl=0.5%", "throughput=2%", "load=5%"])
    assert t.latency["ttft"] == Tolerance(2.0, 0.01)
    assert t.latency["itl"] == Tolerance(1.0, 0.005)
    assert t.latency["e2e"] == Tolerance(1.0, 0.01)
    assert t.throughput.rel == 0.02 and t.load.rel == 0.05
    assert Tolerances.parse(["latency=3ms"]).latency["tpot"] == Tolerance(3.0, 0.01)
    assert Tolerances.from_dict(t.as_dict()) == t
    assert Tolerance(1.0, 0.01).of(5000.0) == 50.0 and Tolerance(1.0, 0.01).of(20.0) == 1.0


@pytest.mark.parametrize("spec", ["ttft", "latency_p99=1ms", "ttft=fast", "throughput=2ms", "itl=-1%", "e2e=3"])
def test_a_bad_tolerance_is_refused_with_the_forms_it_takes(spec: str) -> None:
    with pytest.raises(ValueError, match="bad tolerance"):
        Tolerances.parse([spec])


def test_a_looser_tolerance_turns_the_same_run_valid() -> None:
    records = lockstep(users=30, rounds=4, e2e_ms=800.0, build_ms=0.7)
    run = RunFile(RUN, [closed_step(30, end_ms=4 * 821)], records)
    loose = Tolerances.parse(["e2e_from_scheduled=5%", "load=5%", "throughput=5%"])
    assert validity.apply(summarize(run), loose)["validity"]["verdict"] == "VALID"


def test_a_judged_table_without_bounds_an_older_summary_is_judged_on_what_it_has() -> None:
    old = {
        "requests": {"ok": 3},
        "latency_ms": {"ttft": distribution([1.0, 2.0, 3.0])},
        "throughput": {"requests_per_s": 1.0},
        "load": {"cpu_utilization": 0.2, "loop_lag_ms": distribution([0.1])},
    }
    assert judge(old, Tolerances())["verdict"] == "VALID"


def test_a_busy_client_cpu_is_a_warning_and_named_beside_a_reason() -> None:
    records = [streamed(0, 1000.0 * i, 1000.0 * i, 50.0, 4, 10.0, kernel_timed=False) for i in range(10)]
    step = dataclasses.replace(closed_step(1, end_ms=10_000, lag_ms=3.0), cpu_s=9.0)  # 9 s of CPU in 10 s
    summary = validity.apply(summarize(RunFile(RUN, [step], records)))
    v = summary["steps"][0]["validity"]
    assert v["warnings"] == ["client CPU at 90% of a core"]
    assert all(r.endswith("(client CPU at 90% of a core)") for r in v["reasons"])


def test_a_percentile_that_is_the_max_for_lack_of_samples_is_not_judged() -> None:
    # 50 requests: TTFT p99 is the slowest of them, 60 ms, whose first chunk was read with the next, 30 ms early.
    records = [streamed(None, 100.0 * i, 100.0 * i, 20.0, 4, 10.0) for i in range(49)]
    records.append(streamed(None, 4900.0, 4900.0, 60.0, 4, 10.0, chunk_early_ns=[[0, 30 * MS, None]]))
    summary = judged(records, closed_step(1, end_ms=5_000))
    ttft = summary["steps"][0]["latency_ms"]["ttft"]
    assert ttft["bounds"]["p99"] > 29 and ttft["p99"] == ttft["max"] == 60.0
    assert summary["validity"]["verdict"] == "VALID", summary["validity"]["reasons"]
    assert validity.is_extreme("p99", 50) and not validity.is_extreme("p99", 100)
    assert validity.is_extreme("p99_9", 999) and not validity.is_extreme("p99_9", 1000)
