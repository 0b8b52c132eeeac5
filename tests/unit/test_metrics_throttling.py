"""Metrics of retried (throttled) requests: 429s counted per response, dispatch delay to the first send."""

from __future__ import annotations

from harness.analysis.summary import summarize
from harness.analysis.timeline import timeline
from harness.records.record import Record, RunFile, RunInfo, StepInfo

MS = 1_000_000


def run_file() -> RunFile:
    run = RunInfo("r", "2026-01-01T00:00:00.000+00:00", 0, 0, target={}, config={})
    step = StepInfo("r", 0, "concurrency=31", "concurrency", 0, 0, 3000 * MS, 3000 * MS, concurrency=31)
    requests = [
        # Scheduled and first sent at 10 ms, rejected twice, admitted on the third send at 2010 ms.
        Record(run_id="r", index=0, scheduled_ns=10 * MS, sent_ns=2010 * MS, first_token_ns=2060 * MS,
               end_ns=2100 * MS, chunk_ns=[2060 * MS, 2100 * MS], chunk_tokens=[1, 1], status=200,
               completion_tokens=2, attempts=3, throttled_ns=2000 * MS),
        # Rejected once, retried, rejected again and given up: two 429s.
        Record(run_id="r", index=1, scheduled_ns=0, sent_ns=1000 * MS, end_ns=1001 * MS, status=429,
               error_kind="rate_limited", attempts=2, throttled_ns=1000 * MS),
        # Warm-up: one 429 that only the limit section counts.
        Record(run_id="r", index=2, warmup=True, scheduled_ns=0, sent_ns=0, end_ns=MS, status=429,
               error_kind="rate_limited", attempts=1),
    ]  # fmt: skip
    return RunFile(run, [step], requests)


def test_every_429_response_is_counted_and_warm_up_ones_apart() -> None:
    step = summarize(run_file())["steps"][0]
    assert step["responses_429"] == 4
    assert step["warmup_responses_429"] == 1
    assert step["requests"]["throttled"] == 2


def test_the_wait_between_retries_is_not_dispatch_delay() -> None:
    delay = summarize(run_file())["steps"][0]["latency_ms"]["dispatch_delay"]
    assert (delay["min"], delay["max"]) == (0.0, 0.0)


def test_the_limit_section_counts_warm_up_429s() -> None:
    limit = summarize(run_file(), concurrency_limit=30)["limit"]
    assert limit["steps"][0]["side"] == "above" and limit["steps"][0]["responses_429"] == 5
    assert limit["honoured"] is True
    assert summarize(run_file(), concurrency_limit=31)["limit"]["honoured"] is False


def test_the_timeline_spreads_retried_429s_over_the_throttled_time() -> None:
    frame = timeline(run_file(), bin_s=1.0)
    # Record 0: 429s at 10 and 1010 ms; record 1: at 0 ms and its final one at 1000 ms; warm-up: at 0 ms.
    assert frame["responses_429_per_s"].tolist()[:3] == [3.0, 2.0, 0.0]


def test_dispatch_delay_ends_at_the_first_write_not_when_the_client_took_the_request_up() -> None:
    run = run_file()
    first, second = run.requests[0], run.requests[1]
    # Taken up 5 ms ahead (an open loop builds requests early) and first written 1 ms late.
    first.dispatched_ns, first.sent_ns = 5 * MS, 2011 * MS
    # Taken up 3 ms late and first written 4 ms late.
    second.dispatched_ns, second.sent_ns = 3 * MS, 1004 * MS
    delay = summarize(run)["steps"][0]["latency_ms"]["dispatch_delay"]
    assert (delay["min"], delay["max"]) == (1.0, 4.0)
