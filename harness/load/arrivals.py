"""Load shapes: when each request is due, and the loops that send them then.

- closed loop: `concurrency` users, each sending its next request as soon as the previous one ends;
- open loop: requests due at a rate, spaced constant, Poisson (exponential gaps) or gamma (`burstiness` is the
  shape: 1 is Poisson, below 1 burstier, above 1 more regular), optionally capped by `max_concurrency`;
- ramp: an open loop whose rate moves linearly from `rate` to `rate_end` over the step's duration.

A step bounded by a request count (no duration) at a fixed Poisson or gamma rate draws the process *conditioned*
on its measured requests spanning exactly their expected time: the gaps between them are drawn, then scaled
together so that they sum to (requests − 1) / rate. For independent gamma gaps (exponential ones included),
gaps divided by their sum are independent of the sum, so each gap keeps its distribution and only the count
noise goes: N requests asked at rate r take N/r seconds, rather than a span whose rate is off by ±1/√N (1.4 % at
N = 5000). A duration-bounded step leaves the count random, as a Poisson count is.

Open-loop times are absolute offsets from the step's start, drawn from a seeded generator before anything is sent,
and each request is sent when its time comes: a late loop never shifts later requests (no drift) and never
drops one; a request sent late keeps its scheduled time in its record, so the delay shows instead of hiding
(no coordinated omission). With a concurrency cap, waiting for a free slot is part of that delay.

An open loop hands each request over `send_ahead_s` before it is due, with a `Release` that it opens at the due
time: the client builds the request in the meantime and leaves its bytes with the release, and the pacing thread
writes them when it opens it (`harness.client.release`). With a concurrency cap, a request takes its slot when handed
over.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import itertools
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from harness.client.release import Release

Arrival = Literal["constant", "poisson", "gamma"]
Mode = Literal["concurrency", "rate", "ramp"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson", "gamma")

Fire = Callable[[int, int, bool, Release | None, int | None], Coroutine[Any, Any, object]]
"""Send one request: (sequence number in the step, scheduled perf_counter_ns, is it warm-up?, its release, the
closed-loop user sending it).

In a closed loop the release is None (a request is due when it is taken up) and the user is 0 to concurrency − 1;
in an open loop the user is None."""


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One load step. It ends after `duration_s` (past warm-up) or after `requests` measured requests."""

    index: int
    mode: Mode
    concurrency: int | None = None
    rate: float | None = None
    rate_end: float | None = None
    arrival: Arrival = "poisson"
    burstiness: float = 1.0
    max_concurrency: int | None = None
    warmup_s: float = 0.0
    warmup_requests: int = 0
    duration_s: float | None = None
    requests: int | None = None
    seed: int = 0
    send_ahead_s: float = 0.005  # open loop: how long before its due time a request is handed to the client

    def __post_init__(self) -> None:
        if self.duration_s is None and self.requests is None:
            raise ValueError("a step needs a duration or a request count")
        if self.send_ahead_s < 0:
            raise ValueError("the send-ahead time cannot be negative")
        if self.mode == "concurrency" and (self.concurrency is None or self.concurrency < 1):
            raise ValueError("a closed-loop step needs a concurrency of at least 1")
        if self.mode in ("rate", "ramp") and (self.rate is None or self.rate < 0):
            raise ValueError("an open-loop step needs a rate")
        if self.mode == "rate" and self.rate is not None and self.rate <= 0:
            raise ValueError("the rate must be positive")
        if self.mode == "ramp" and (self.rate_end is None or self.duration_s is None or self.rate_end < 0):
            raise ValueError("a ramp needs an end rate and a duration")
        if self.mode == "ramp" and self.rate == 0 and self.rate_end == 0:
            raise ValueError("a ramp from 0 to 0 sends nothing")
        if self.arrival == "gamma" and self.burstiness <= 0:
            raise ValueError("the burstiness (gamma shape) must be positive")

    @property
    def label(self) -> str:
        if self.mode == "concurrency":
            return f"concurrency={self.concurrency}"
        cap = f",max_concurrency={self.max_concurrency}" if self.max_concurrency else ""
        shape = self.arrival if self.arrival != "gamma" else f"gamma({self.burstiness:g})"
        if self.mode == "ramp":
            return f"ramp={self.rate:g}->{self.rate_end:g}/s,{shape}{cap}"
        return f"rate={self.rate:g}/s,{shape}{cap}"


def sweep(template: StepPlan, *, concurrencies: Sequence[int] = (), rates: Sequence[float] = ()) -> list[StepPlan]:
    """One step per concurrency or per rate, each with the template's warm-up and length and its own seed."""
    if concurrencies:
        return [
            replace(template, index=i, mode="concurrency", concurrency=c, seed=template.seed + i)
            for i, c in enumerate(concurrencies)
        ]
    return [replace(template, index=i, mode="rate", rate=r, seed=template.seed + i) for i, r in enumerate(rates)]


def unit_gaps(arrival: Arrival, burstiness: float, rng: random.Random) -> Iterator[float]:
    """Gaps of a unit-rate process: mean 1, coefficient of variation 0 (constant), 1 (Poisson) or 1/√shape."""
    if arrival == "constant":
        return itertools.repeat(1.0)
    if arrival == "poisson":
        return (rng.expovariate(1.0) for _ in itertools.count())
    shape = burstiness
    return (rng.gammavariate(shape, 1.0 / shape) for _ in itertools.count())


def _to_time(step: StepPlan, u: float) -> float | None:
    """Map unit-rate time `u` to the step's time through the inverse of its cumulative rate (time rescaling)."""
    r0 = step.rate or 0.0
    if step.mode == "rate":
        return u / r0
    warm = step.warmup_s
    assert step.duration_s is not None and step.rate_end is not None
    if u < r0 * warm:
        return u / r0
    u -= r0 * warm
    if u <= 0:
        return warm
    a = (step.rate_end - r0) / (2 * step.duration_s)
    if a == 0:
        return warm + u / r0
    disc = r0 * r0 + 4 * a * u
    if disc < 0:
        return None  # past what a falling ramp delivers
    # The root of a·t² + r0·t − u = 0 written to stay exact when a is tiny.
    return warm + 2 * u / (r0 + math.sqrt(disc))


def conditioned(gaps: Iterator[float], count: int) -> Iterator[float]:
    """The next `count` unit-rate gaps scaled to sum to `count`, then the rest as drawn."""
    drawn = list(itertools.islice(gaps, count))
    total = math.fsum(drawn)
    scale = count / total if total > 0 else 1.0
    return itertools.chain((g * scale for g in drawn), gaps)


def offsets(step: StepPlan) -> Iterator[tuple[float, bool]]:
    """The open-loop schedule: (seconds after the step's start, warm-up?) for every request, in order."""
    rng = random.Random(step.seed * 1_000_003 + step.index)
    horizon = step.warmup_s + step.duration_s if step.duration_s is not None else math.inf
    # A request-bounded step at a random rate: the gaps of its measured requests are conditioned on their span.
    span_gaps = (
        step.requests - 1
        if step.mode == "rate" and step.duration_s is None and step.requests is not None and step.arrival != "constant"
        else None
    )
    gaps = unit_gaps(step.arrival, step.burstiness, rng)
    measured = 0
    u = 0.0
    for n in itertools.count():
        # The first request is due at once; a constant process then lands exactly on the grid.
        t = _to_time(step, u)
        if t is None or t >= horizon:
            return
        warm = n < step.warmup_requests or t < step.warmup_s
        if not warm:
            if step.requests is not None and measured >= step.requests:
                return
            if measured == 0 and span_gaps is not None:
                gaps = conditioned(gaps, span_gaps)
            measured += 1
        yield t, warm
        u += next(gaps)


@dataclass(slots=True)
class StepClock:
    """When a step started, began measuring, stopped sending and ended (all perf_counter_ns)."""

    started_ns: int
    measure_start_ns: int
    dispatch_end_ns: int = 0
    ended_ns: int = 0


async def run_step(step: StepPlan, fire: Fire, halt: asyncio.Event | None = None) -> StepClock:
    """Drive one step to its end, waiting for every request it sent.

    Once `halt` is set no further request is sent; those in flight finish, and the step ends with them.
    """
    started = time.perf_counter_ns()
    clock = StepClock(started, started + round(step.warmup_s * 1e9))
    halt = halt if halt is not None else asyncio.Event()
    if step.mode == "concurrency":
        await _closed_loop(step, fire, clock, halt)
    else:
        await _open_loop(step, fire, clock, halt)
    clock.ended_ns = time.perf_counter_ns()
    return clock


# How the pacing thread meets a due time: a timed sleep to this much before it (a sleep on this machine class
# overshoots by 0.1–0.3 ms), then yielding turns; and how soon the loop's thread yields the GIL to it.
_SPIN_NS = 300_000
_SWITCH_INTERVAL_S = 0.0005
_PR_SET_TIMERSLACK = 29


def _tighten_timer_slack() -> None:
    """Ask Linux to wake this thread on time rather than within its default 50 µs timer slack."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


async def _open_loop(step: StepPlan, fire: Fire, clock: StepClock, halt: asyncio.Event) -> None:
    """Requests are released by a pacing thread that sleeps to each due time with the OS clock.

    The event loop's own timers tick in whole milliseconds, which would bunch Poisson arrivals onto a 1 ms grid;
    a thread sleeping on CLOCK_MONOTONIC wakes within tens of microseconds and hands each request to the loop
    (`call_soon_threadsafe` wakes it at once). It does so `send_ahead_s` before the due time, so that the client
    builds the request then; at the due time it opens the request's release, which writes the built request from
    this thread. The first request is due `send_ahead_s` after the step's start. Whatever delay remains (a request
    not built in time, the GIL) is recorded.
    """
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[object]] = set()
    cap = asyncio.Semaphore(step.max_concurrency) if step.max_concurrency else None
    paced: asyncio.Future[None] = loop.create_future()
    stop = threading.Event()
    first_measured = [True]
    ahead_ns = round(step.send_ahead_s * 1e9)

    async def capped(seq: int, due: int, warm: bool, release: Release) -> object:
        assert cap is not None
        async with cap:
            return await fire(seq, due, warm, release, None)

    def dispatch(seq: int, due: int, warm: bool, release: Release) -> None:
        if not warm and first_measured[0]:
            first_measured[0] = False
            clock.measure_start_ns = max(clock.measure_start_ns, due)
        task = loop.create_task(
            capped(seq, due, warm, release) if cap is not None else fire(seq, due, warm, release, None)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def finished() -> None:
        clock.dispatch_end_ns = time.perf_counter_ns()
        if not paced.done():
            paced.set_result(None)

    def wait_until(t: int) -> bool:
        """Sleep to `t` (perf_counter_ns); False when the step is being stopped."""
        while (remaining := t - time.perf_counter_ns()) > _SPIN_NS:
            if stop.wait((remaining - _SPIN_NS) / 1e9):
                return False
        while time.perf_counter_ns() < t:
            time.sleep(0)  # the last stretch: a timed sleep overshoots by more than it lasts
        return True

    def open_next(handed: collections.deque[tuple[int, Release]]) -> bool:
        due, release = handed[0]
        if not wait_until(due):
            return False
        handed.popleft()
        release.open()  # writes the request, if it is built, from this thread (`harness.client.release`)
        return True

    def pace() -> None:
        _tighten_timer_slack()
        start = clock.started_ns + ahead_ns
        handed: collections.deque[tuple[int, Release]] = collections.deque()  # (due, release), in due order
        try:
            for seq, (offset, warm) in enumerate(offsets(step)):
                due = start + round(offset * 1e9)
                while handed and handed[0][0] < due - ahead_ns:  # releases due before this hand-over
                    if not open_next(handed):
                        return
                if not wait_until(due - ahead_ns):
                    return
                release = Release()
                loop.call_soon_threadsafe(dispatch, seq, due, warm, release)
                handed.append((due, release))
            while handed:
                if not open_next(handed):
                    return
        finally:
            for _, release in handed:  # stopped early: nothing handed over is left waiting
                release.open()
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(finished)

    pacer = threading.Thread(target=pace, name=f"arrivals-step-{step.index}", daemon=True)
    # A woken pacer needs the GIL to hand its request over; the loop's thread gives it up after this interval.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, _SWITCH_INTERVAL_S))
    pacer.start()
    halted = loop.create_task(halt.wait())
    halted.add_done_callback(lambda _: stop.set())  # the pacer wakes from its sleep and hands over no more
    try:
        await paced
    finally:
        halted.cancel()
        stop.set()
        sys.setswitchinterval(switch)
    if tasks:
        await asyncio.gather(*tasks)


async def _closed_loop(step: StepPlan, fire: Fire, clock: StepClock, halt: asyncio.Event) -> None:
    assert step.concurrency is not None
    seqs = itertools.count()
    measured = itertools.count()
    stop_at = clock.measure_start_ns + round(step.duration_s * 1e9) if step.duration_s is not None else None
    warm_until = clock.measure_start_ns
    first_measured: list[int] = []

    async def user(number: int) -> None:
        while True:
            now = time.perf_counter_ns()
            if (stop_at is not None and now >= stop_at) or halt.is_set():
                return
            seq = next(seqs)
            warm = seq < step.warmup_requests or now < warm_until
            if not warm:
                if step.requests is not None and next(measured) >= step.requests:
                    return
                if not first_measured:
                    first_measured.append(now)
            clock.dispatch_end_ns = now
            await fire(seq, now, warm, None, number)

    await asyncio.gather(*(user(n) for n in range(step.concurrency)))
    if first_measured:
        clock.measure_start_ns = max(clock.measure_start_ns, first_measured[0])
    if stop_at is not None and not halt.is_set():  # halted: sending ended with the last request sent
        clock.dispatch_end_ns = max(clock.dispatch_end_ns, min(stop_at, time.perf_counter_ns()))
