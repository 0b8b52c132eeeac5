"""The error-bound model on hand-built samples and records whose bounds are worked out in the comments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis import bounds
from harness.analysis.bounds import DELIVERY_NS, Estimates, Samples, Widths
from harness.analysis.stats import STATS, statistics
from harness.records.record import Record

MS = 1_000_000
G = DELIVERY_NS / MS


def test_a_percentile_moves_only_as_far_as_the_samples_that_can_cross_it() -> None:
    # 100 samples 1..100 ms; sample 50 may be 30 ms lower. The p99 cannot move (no sample near it can), the min
    # cannot (sample 1 is not uncertain), the mean moves by 0.3 ms, and p50 by one rank at most (1 ms).
    value = np.arange(1.0, 101.0)
    down = np.zeros(100)
    down[49] = 30.0
    limits, causes = Samples(value, {"reads": down}, {"reads": np.zeros(100)}).bounds()
    assert limits["p99"] == 0 and limits["min"] == 0 and limits["max"] == 0
    assert limits["mean"] == pytest.approx(0.3)
    assert limits["p50"] == 1.0 and causes["p50"] == "reads"
    assert causes["p99"] is None


def test_the_cause_named_is_the_one_that_alone_bounds_the_statistic_most() -> None:
    value = np.full(10, 100.0)
    limits, causes = Samples(value, {"send": np.full(10, 0.2), "loop": np.full(10, 0.5)}, {}).bounds()
    assert limits["p50"] == pytest.approx(0.7) and causes["p50"] == "loop"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1000, allow_nan=False), st.floats(0, 50, allow_nan=False), st.floats(0, 50, allow_nan=False)
        ),
        min_size=1,
        max_size=60,
    ),
    st.randoms(use_true_random=False),
)
def test_any_true_values_within_the_intervals_have_statistics_within_the_bounds(
    samples: list[tuple[float, float, float]], rng: object
) -> None:
    # The claim the model makes: wherever inside [m − down, m + up] each true value lies, every statistic of the
    # true values is within the bound of the measured one.
    value = np.array([m for m, _, _ in samples])
    down = np.array([d for _, d, _ in samples])
    up = np.array([u for _, _, u in samples])
    limits, _ = Samples(value, {"reads": down}, {"reads": up}).bounds()
    for _ in range(5):
        share = np.array([rng.random() for _ in samples])  # type: ignore[attr-defined]
        true = value - down + share * (down + up)
        measured, actual = statistics(value), statistics(true)
        for i, name in enumerate(STATS):
            assert abs(measured[i] - actual[i]) <= limits[name] + 1e-9


def record(**fields: object) -> Record:
    base: dict[str, object] = {
        "sent_ns": 0,
        "written_ns": 20_000,  # the write returned 20 µs after its stamp
        "chunk_ns": [50 * MS, 60 * MS, 70 * MS, 80 * MS],
        "chunk_tokens": [1, 1, 1, 1],
        "end_ns": 80 * MS,
        "kernel_timed": True,
        "status": 200,
    }
    return Record(**(base | fields))  # type: ignore[arg-type]


def test_ttft_and_e2e_are_known_to_the_send_s_width_and_the_granularity_when_every_chunk_ended_its_read() -> None:
    w = Widths.of([record()], Estimates.none(1), np.zeros(1))
    ttft, _ = bounds.ttft(np.array([50.0]), w).bounds()
    e2e, _ = bounds.e2e(np.array([80.0]), w).bounds()
    assert ttft["p50"] == pytest.approx(0.02 + G) and e2e["max"] == pytest.approx(0.02 + G)


def test_a_chunk_read_with_the_next_widens_the_gaps_on_both_sides_of_it() -> None:
    # Chunk 2 came in one read with chunk 3, 10 ms after the read before: gap 1→2 may be 10 ms shorter, 2→3 longer.
    r = record(chunk_ns=[50 * MS, 60 * MS, 80 * MS, 80 * MS], chunk_early_ns=[[2, 10 * MS, None]])
    itl = bounds.itl([r], Estimates.none(1))
    assert itl.value.tolist() == [10.0, 20.0, 0.0]
    assert (itl.value - sum(itl.down.values())).tolist() == pytest.approx([10 - G, 10 - G, -G])
    assert (itl.value + sum(itl.up.values())).tolist() == pytest.approx([10 + G, 20 + G, 10 + G])


def test_a_chunk_of_several_tokens_shares_its_gap_and_its_widths_among_them() -> None:
    r = record(chunk_ns=[50 * MS, 70 * MS], chunk_tokens=[1, 2], chunk_early_ns=[[1, 4 * MS, None]])
    itl = bounds.itl([r], Estimates.none(1))
    assert itl.value.tolist() == [10.0, 10.0]
    assert itl.down["reads"].tolist() == [2.0, 2.0]


def test_the_wake_up_narrows_an_early_chunk_and_never_beyond_what_is_certain() -> None:
    assert bounds.early_ms(10 * MS, None, 0.5) == 10.0  # nothing known of a wake-up: the whole window
    assert bounds.early_ms(10 * MS, -200_000, 0.5) == pytest.approx(0.3)  # woke 0.2 ms after the stamp, 0.5 latency
    assert bounds.early_ms(1 * MS, 5 * MS, 0.5) == 1.0  # the certain window is the tighter one
    assert bounds.early_ms(10 * MS, -2 * MS, 0.5) == 0.0  # woke long after: the chunk came with the stamp


def test_reads_the_loop_timed_carry_its_lag_and_kernel_timed_ones_do_not() -> None:
    estimates = Estimates(np.array([3.0, 3.0]), np.zeros(2))
    w = Widths.of([record(), record(kernel_timed=False)], estimates, np.zeros(2))
    assert w.loop.tolist() == [0.0, 3.0]


def test_lateness_runs_from_the_due_time_to_the_first_send() -> None:
    open_loop = Record(scheduled_ns=100 * MS, dispatched_ns=95 * MS, sent_ns=102 * MS)
    retried = Record(scheduled_ns=0, sent_ns=1500 * MS, throttled_ns=1499 * MS)  # first sent at 1 ms
    capped = Record(scheduled_ns=0, dispatched_ns=40 * MS, sent_ns=41 * MS)  # waited 40 ms for a slot
    assert bounds.lateness_ms([open_loop, retried], capped=False).tolist() == [2.0, 1.0]
    assert bounds.lateness_ms([capped], capped=True).tolist() == [1.0]
    assert bounds.lateness_ms([capped], capped=False).tolist() == [41.0]


def test_a_user_s_time_out_of_flight_is_the_idle_share() -> None:
    # Two users over 1 s: user 0 is out all the time (two requests back to back, retries included); user 1 is out
    # from 0 to 400 ms and from 500 to 1000 ms: 100 ms idle of 2 s of user time.
    records = [
        Record(user=0, scheduled_ns=0, sent_ns=0, end_ns=600 * MS),
        Record(user=0, scheduled_ns=600 * MS, sent_ns=900 * MS, throttled_ns=300 * MS, end_ns=1200 * MS),
        Record(user=1, scheduled_ns=0, sent_ns=0, end_ns=400 * MS),
        Record(user=1, scheduled_ns=400 * MS, sent_ns=500 * MS, end_ns=1000 * MS),
    ]
    assert bounds.idle_share(records, 2, 0, 1000 * MS) == pytest.approx(0.05)
    assert bounds.idle_share([Record(end_ns=MS)], 2, 0, 1000 * MS) is None  # no user known: nothing to say


def test_an_open_loop_s_offered_rate_is_its_first_sends_against_its_due_times() -> None:
    # Ten requests due every 100 ms; the last one went 90 ms late: 9 gaps over 990 ms instead of 900.
    records = [Record(scheduled_ns=i * 100 * MS, sent_ns=i * 100 * MS) for i in range(10)]
    records[-1].sent_ns = 990 * MS
    found = bounds.rate_error(records, capped=False)
    assert found is not None
    asked, achieved, error = found
    assert asked == pytest.approx(10.0) and achieved == pytest.approx(9 / 0.99) and error == pytest.approx(0.0909, 1e-3)
