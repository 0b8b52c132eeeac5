from __future__ import annotations

import asyncio
import functools
import itertools
import math
import os
import socket
import statistics
import time

import pytest

from harness.client.release import Release
from harness.load.loops import run_step
from harness.load.plan import StepPlan, offsets, sweep


def gaps(step: StepPlan) -> list[float]:
    times = [t for t, _ in offsets(step)]
    return [b - a for a, b in itertools.pairwise(times)]


def rate_step(**kw: object) -> StepPlan:
    base: dict[str, object] = {"index": 0, "mode": "rate", "rate": 10.0, "requests": 20_000, "seed": 7}
    base.update(kw)
    return StepPlan(**base)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    a, b, c = rate_step(requests=100), rate_step(requests=100), rate_step(requests=100, seed=8)
    assert list(offsets(a)) == list(offsets(b))
    assert list(offsets(a)) != list(offsets(c))


def test_steps_of_a_sweep_get_different_streams() -> None:
    steps = sweep(rate_step(requests=50), rates=[10.0, 10.0])
    assert list(offsets(steps[0])) != list(offsets(steps[1]))


def test_constant_arrivals_sit_exactly_on_the_grid() -> None:
    times = [t for t, _ in offsets(rate_step(arrival="constant", rate=4.0, requests=9))]
    assert times == [i * 0.25 for i in range(9)]


def test_poisson_gaps_are_exponential_with_the_asked_mean() -> None:
    g = gaps(rate_step(arrival="poisson"))
    mean = statistics.fmean(g)
    # 20 000 exponential gaps: the sample mean is within 3% and the CV within 5% of 1 with overwhelming odds.
    assert mean == pytest.approx(0.1, rel=0.03)
    assert statistics.stdev(g) / mean == pytest.approx(1.0, rel=0.05)
    # Memorylessness shape: P(gap < mean) = 1 − 1/e for an exponential.
    assert sum(x < 0.1 for x in g) / len(g) == pytest.approx(1 - math.exp(-1), abs=0.02)


@pytest.mark.parametrize(("burstiness", "cv"), [(0.25, 2.0), (4.0, 0.5)])
def test_gamma_burstiness_sets_the_spread_but_not_the_rate(burstiness: float, cv: float) -> None:
    g = gaps(rate_step(arrival="gamma", burstiness=burstiness))
    mean = statistics.fmean(g)
    assert mean == pytest.approx(0.1, rel=0.05)
    assert statistics.stdev(g) / mean == pytest.approx(cv, rel=0.08)


@pytest.mark.parametrize("arrival", ["poisson", "gamma"])
def test_a_request_count_at_a_rate_spans_exactly_its_expected_time(arrival: str) -> None:
    # 5000 requests at 100/s: the last measured one is due at 49.99 s for every seed, where an unconditioned
    # Poisson draw lands within ±1.4 % (1σ) of it.
    for seed in range(5):
        times = [
            t for t, warm in offsets(rate_step(arrival=arrival, burstiness=0.5, rate=100.0, requests=5000, seed=seed))
        ]
        assert len(times) == 5000
        assert times[-1] - times[0] == pytest.approx(49.99, rel=1e-9)


def test_conditioning_keeps_poisson_gaps_exponential() -> None:
    from scipy import stats

    g = gaps(rate_step(arrival="poisson", rate=100.0, requests=5000))
    # The gaps divided by their sum do not depend on it: still exponential with the asked mean (KS at 5 %).
    assert stats.kstest(g, "expon", args=(0, 0.01)).pvalue > 0.05
    assert statistics.stdev(g) / statistics.fmean(g) == pytest.approx(1.0, rel=0.05)


def test_warm_up_requests_are_not_conditioned_and_measured_ones_are() -> None:
    schedule = list(offsets(rate_step(arrival="poisson", rate=100.0, requests=1000, warmup_requests=50)))
    measured = [t for t, warm in schedule if not warm]
    assert sum(warm for _, warm in schedule) == 50
    assert measured[-1] - measured[0] == pytest.approx(9.99, rel=1e-9)


def test_a_duration_bounded_step_keeps_its_count_random() -> None:
    counts = {len(list(offsets(rate_step(requests=None, duration_s=10.0, seed=s)))) for s in range(5)}
    assert len(counts) > 1  # Poisson counts with mean 100: five equal draws would have odds below 1e-4


def test_a_duration_bounds_the_schedule_and_warm_up_comes_first() -> None:
    step = rate_step(arrival="constant", rate=10.0, requests=None, duration_s=2.0, warmup_s=1.0)
    schedule = list(offsets(step))
    assert len(schedule) == 30  # 3 s at 10/s, the first at 0
    assert [w for _, w in schedule] == [True] * 10 + [False] * 20
    assert schedule[-1][0] < 3.0


def test_a_request_count_counts_measured_requests_only() -> None:
    step = rate_step(arrival="poisson", requests=50, warmup_requests=5)
    schedule = list(offsets(step))
    assert sum(not w for _, w in schedule) == 50
    assert [w for _, w in schedule[:6]] == [True] * 5 + [False]


def test_a_linear_ramp_delivers_the_area_under_its_rate() -> None:
    step = StepPlan(0, "ramp", rate=0.0, rate_end=400.0, arrival="poisson", duration_s=10.0, seed=3)
    times = [t for t, _ in offsets(step)]
    # Rate 0 → 400/s over 10 s: 2000 requests expected, a quarter of them in the first half.
    assert len(times) == pytest.approx(2000, rel=0.05)
    first_half = sum(t < 5.0 for t in times)
    assert first_half / len(times) == pytest.approx(0.25, abs=0.03)


def test_a_falling_ramp_ends_at_its_end_rate() -> None:
    step = StepPlan(0, "ramp", rate=200.0, rate_end=0.0, arrival="constant", duration_s=4.0)
    times = [t for t, _ in offsets(step)]
    assert len(times) == pytest.approx(400, abs=1)
    assert times == sorted(times)


def test_invalid_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="duration or a request count"):
        StepPlan(0, "rate", rate=1.0)
    with pytest.raises(ValueError, match="concurrency"):
        StepPlan(0, "concurrency", requests=1)
    with pytest.raises(ValueError, match="burstiness"):
        StepPlan(0, "rate", rate=1.0, requests=1, arrival="gamma", burstiness=0)
    with pytest.raises(ValueError, match="send-ahead"):
        StepPlan(0, "rate", rate=1.0, requests=1, send_ahead_s=-0.001)


async def test_the_open_loop_sends_every_request_at_its_scheduled_time() -> None:
    fired: list[tuple[int, int, bool]] = []

    async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
        fired.append((seq, scheduled_ns, warm))

    step = rate_step(arrival="constant", rate=2000.0, requests=40, warmup_requests=2)
    clock = await run_step(step, fire)
    assert [s for s, _, _ in fired] == list(range(42))
    # Scheduled times come from the schedule, never from when the loop got round to them.
    assert {b - a for (_, a, _), (_, b, _) in itertools.pairwise(fired)} == {500_000}
    assert fired[0][1] == clock.started_ns + round(step.send_ahead_s * 1e9)  # handed over that much ahead
    assert clock.measure_start_ns == fired[2][1]
    assert clock.ended_ns >= clock.dispatch_end_ns >= clock.started_ns


async def test_each_request_is_handed_over_ahead_and_written_by_its_release_when_it_is_due() -> None:
    handed: dict[int, tuple[int, int]] = {}
    written: dict[int, int] = {}
    ours, theirs = socket.socketpair()

    async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
        handed[seq] = (time.perf_counter_ns(), scheduled_ns)
        assert release is not None
        data, fd = b"%d;" % seq, os.dup(ours.fileno())
        if not release.hold(fd, data, functools.partial(written.__setitem__, seq), lambda n, at: None):
            os.close(fd)
            written[seq] = time.perf_counter_ns()  # already due when it was handed over: write it now
            ours.sendall(data)

    step = rate_step(rate=500.0, requests=30, send_ahead_s=0.02)
    try:
        await run_step(step, fire)
        ours.close()  # the releases closed their duplicates: the stream ends here
        received = b"".join(iter(functools.partial(theirs.recv, 4096), b""))
    finally:
        ours.close()
        theirs.close()
    # Every request went out, once, in the order it was due, from the pacer's thread.
    assert received.split(b";")[:-1] == [b"%d" % i for i in range(30)]
    assert sorted(handed) == sorted(written) == list(range(30))
    for seq, (taken_ns, due_ns) in handed.items():
        # Never handed over sooner than 20 ms ahead, nor written before it is due.
        assert taken_ns >= due_ns - 20_000_000
        assert written[seq] >= due_ns


def test_a_release_writes_what_it_holds_once_and_a_cancelled_one_writes_nothing() -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    stamped: list[int] = []
    sent: list[int] = []
    returned: list[int] = []

    def wrote(count: int, at_ns: int) -> None:
        sent.append(count)
        returned.append(at_ns)

    def stamp(at_ns: int) -> None:
        # Told before the write: the response can come back before the pacer's thread runs again.
        with pytest.raises(BlockingIOError):
            theirs.recv(16)
        stamped.append(at_ns)

    try:
        release = Release()
        assert release.hold(os.dup(ours.fileno()), b"abc", stamp, wrote)
        with pytest.raises(BlockingIOError):  # nothing is written before it opens
            theirs.recv(16)
        before = time.perf_counter_ns()
        release.open()
        release.open()
        assert theirs.recv(16) == b"abc"
        assert len(stamped) == 1 and stamped[0] >= before and sent == [3]
        assert returned[0] >= stamped[0]  # the write returned after its stamp: the send lies between the two
        late = os.dup(ours.fileno())
        assert release.is_open and not release.hold(late, b"late", stamped.append, wrote)
        os.close(late)  # refused: still the caller's

        cancelled = Release()
        fd = os.dup(ours.fileno())
        assert cancelled.hold(fd, b"never", stamped.append, wrote)
        cancelled.cancel()
        cancelled.open()
        with pytest.raises(BlockingIOError):
            theirs.recv(16)
        assert len(stamped) == 1 and sent == [3]
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)  # the release closed its duplicate
    finally:
        ours.close()
        theirs.close()


async def test_a_closed_loop_request_has_no_release_to_wait_for() -> None:
    releases: list[Release | None] = []

    async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
        releases.append(release)

    await run_step(StepPlan(0, "concurrency", concurrency=2, requests=4), fire)
    assert releases == [None] * 4


async def test_a_concurrency_cap_holds_requests_without_moving_their_schedule() -> None:
    in_flight = 0
    peak = 0
    scheduled: list[int] = []

    async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        scheduled.append(scheduled_ns)
        await asyncio.sleep(0.002)
        in_flight -= 1

    await run_step(rate_step(arrival="constant", rate=10_000.0, requests=20, max_concurrency=2), fire)
    assert peak == 2
    assert len(scheduled) == 20
    assert {b - a for a, b in itertools.pairwise(scheduled)} == {100_000}


async def test_the_closed_loop_keeps_exactly_n_users_busy_until_the_count() -> None:
    in_flight = 0
    peak = 0
    seqs: list[int] = []
    users: set[int | None] = set()

    async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        seqs.append(seq)
        users.add(user)
        await asyncio.sleep(0)
        in_flight -= 1

    await run_step(StepPlan(0, "concurrency", concurrency=3, requests=10), fire)
    assert peak == 3
    assert sorted(seqs) == list(range(10))
    assert users == {0, 1, 2}  # each request says which of the three users sent it


@pytest.mark.parametrize("mode", ["concurrency", "rate"])
async def test_a_halted_step_sends_nothing_more_and_waits_for_the_requests_in_flight(mode: str) -> None:
    halt = asyncio.Event()
    started: list[int] = []
    finished: list[int] = []

    async def fire(seq: int, scheduled_ns: int, warm: bool, release: Release | None, user: int | None) -> None:
        started.append(seq)
        if seq == 5:
            halt.set()
        await asyncio.sleep(0.01)
        finished.append(seq)

    if mode == "concurrency":
        step = StepPlan(0, "concurrency", concurrency=2, requests=1000)
    else:
        step = rate_step(arrival="constant", rate=1000.0, requests=1000)
    await run_step(step, fire, halt)
    assert 6 <= len(started) < 40  # the halting request, and the few already handed over when it came
    assert sorted(finished) == sorted(started)  # every request sent was waited for
