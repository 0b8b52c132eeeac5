"""How the benchmarks read a peer's saved results back: GuideLLM's per-request timings and schedule."""

from __future__ import annotations

from benchmarks.loadgen_peers import WallClock, guidellm_measured

OFFSET_NS = 1_700_000_000 * 10**9  # wall clock = monotonic + this, before and after the run
CLOCK = WallClock(mono0_ns=10 * 10**9, offset0_ns=OFFSET_NS, mono1_ns=20 * 10**9, offset1_ns=OFFSET_NS)


def wall(mono_s: float) -> float:
    return mono_s + OFFSET_NS / 1e9


def request(targeted_start: float | None) -> dict[str, object]:
    timings = {
        "targeted_start": targeted_start,
        "request_start": wall(12.0),
        "resolve_start": wall(11.9),
        "first_token_iteration": wall(12.5),
        "last_token_iteration": wall(13.0),
        "token_iterations": 4,
    }
    return {"response_id": "r", "info": {"timings": timings}}


def test_a_schedule_outside_the_run_or_missing_is_no_schedule() -> None:
    inside, at_zero, relative = request(wall(11.5)), request(0), request(0.25)  # the last: seconds, not a date
    measured, scheduled = guidellm_measured({"requests": {"successful": [inside, at_zero, relative]}}, CLOCK)
    assert scheduled[1:] == [None, None]
    assert scheduled[0] is not None and abs(scheduled[0] - 11_500_000_000) < 1_000
    first = measured[0]
    assert abs(first.sent_ns - 12 * 10**9) < 1_000 and first.token_chunks == 4 and first.ok
    assert first.first_token_ns is not None and abs(first.first_token_ns - 12_500_000_000) < 1_000
