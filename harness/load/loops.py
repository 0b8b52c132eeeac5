"""The loops that send a step's requests when they are due: users in a closed loop, a pacing thread in an open one.

An open loop hands each request over `send_ahead_s` before it is due, with a `Release` that it opens at the due
time: the client builds the request in the meantime and leaves its bytes with the release, and the pacing thread
writes them when it opens it (`harness.client.release`). With a concurrency cap, a request takes its slot when
handed over. When each request is due comes from the step's plan (`harness.load.plan`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import itertools
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from harness.client.release import Release
from harness.load.plan import StepPlan, offsets

Fire = Callable[[int, int, bool, Release | None, int | None], Coroutine[Any, Any, object]]
"""Send one request: (sequence number in the step, scheduled perf_counter_ns, is it warm-up?, its release, the
closed-loop user sending it).

In a closed loop the release is None (a request is due when it is taken up) and the user is 0 to concurrency − 1;
in an open loop the user is None."""

# How the pacing thread meets a due time: a timed sleep to this much before it (a sleep on this machine class
# overshoots by 0.1–0.3 ms), then yielding turns; and how soon the loop's thread yields the GIL to it.
_SPIN_NS = 300_000
_SWITCH_INTERVAL_S = 0.0005
_PR_SET_TIMERSLACK = 29


@dataclass(slots=True)
class StepClock:
    """When a step started, began measuring, stopped sending and ended (all perf_counter_ns)."""

    started_ns: int
    measure_start_ns: int
    dispatch_end_ns: int = 0
    ended_ns: int = 0


async def run_step(
    step: StepPlan, fire: Fire, halt: asyncio.Event | None = None, sent_all: Callable[[], object] | None = None
) -> StepClock:
    """Drive one step to its end, waiting for every request it sent.

    Once `halt` is set no further request is sent; those in flight finish, and the step ends with them. An open
    loop calls `sent_all` (on the loop) once it has handed over its last request.
    """
    started = time.perf_counter_ns()
    clock = StepClock(started, started + round(step.warmup_s * 1e9))
    halt = halt if halt is not None else asyncio.Event()
    if step.mode == "concurrency":
        await _closed_loop(step, fire, clock, halt)
    else:
        await _OpenLoop(step, fire, clock, sent_all).run(halt)
    clock.ended_ns = time.perf_counter_ns()
    return clock


def _tighten_timer_slack() -> None:
    """Ask Linux to wake this thread on time rather than within its default 50 µs timer slack."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


class Pacer:
    """The pacing thread's side of an open loop: sleeps to each hand-over and each due time on the OS clock.

    The event loop's own timers tick in whole milliseconds, which would bunch Poisson arrivals onto a 1 ms grid;
    a thread sleeping on CLOCK_MONOTONIC wakes within tens of microseconds and hands each request to the loop
    (`hand_over`, called through `call_soon_threadsafe`, which wakes it at once). It does so `send_ahead_s` before
    the due time, so that the client builds the request then; at the due time it opens the request's release,
    which writes the built request from this thread. The first request is due `send_ahead_s` after the step's
    start. `done` is called (on the loop) when every request was handed over and opened, or the pacer was stopped.
    """

    def __init__(self, step: StepPlan, started_ns: int, hand_over: Callable[..., None], done: Callable[[], None]):
        self.step = step
        self.started_ns = started_ns
        self.ahead_ns = round(step.send_ahead_s * 1e9)
        self.stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._hand_over = hand_over
        self._done = done
        self._handed: collections.deque[tuple[int, Release]] = collections.deque()  # (due, release), in due order

    def wait_until(self, t: int) -> bool:
        """Sleep to `t` (perf_counter_ns); False when the step is being stopped."""
        while (remaining := t - time.perf_counter_ns()) > _SPIN_NS:
            if self.stop.wait((remaining - _SPIN_NS) / 1e9):
                return False
        while time.perf_counter_ns() < t:
            time.sleep(0)  # the last stretch: a timed sleep overshoots by more than it lasts
        return True

    def _open_next(self) -> bool:
        due, release = self._handed[0]
        if not self.wait_until(due):
            return False
        self._handed.popleft()
        release.open()  # writes the request, if it is built, from this thread (`harness.client.release`)
        return True

    def _pace(self) -> None:
        start = self.started_ns + self.ahead_ns
        for seq, (offset, warm) in enumerate(offsets(self.step)):
            due = start + round(offset * 1e9)
            while self._handed and self._handed[0][0] < due - self.ahead_ns:  # releases due before this hand-over
                if not self._open_next():
                    return
            if not self.wait_until(due - self.ahead_ns):
                return
            release = Release()
            self._loop.call_soon_threadsafe(self._hand_over, seq, due, warm, release)
            self._handed.append((due, release))
        while self._handed:
            if not self._open_next():
                return

    def run(self) -> None:
        """The thread's body."""
        _tighten_timer_slack()
        try:
            self._pace()
        finally:
            for _, release in self._handed:  # stopped early: nothing handed over is left waiting
                release.open()
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._done)


class _OpenLoop:
    """The loop's side of an open loop: a task per request handed over (under the cap, if any), and the step's
    measurement start at the first measured request's due time. Whatever delay remains between a due time and
    its send (a request not built in time, the GIL) is recorded by the client."""

    def __init__(self, step: StepPlan, fire: Fire, clock: StepClock, sent_all: Callable[[], object] | None) -> None:
        self.step = step
        self.fire = fire
        self.clock = clock
        self.sent_all = sent_all
        self.tasks: set[asyncio.Task[object]] = set()
        self.cap = asyncio.Semaphore(step.max_concurrency) if step.max_concurrency else None
        self.paced: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first_measured = True

    async def _capped(self, seq: int, due: int, warm: bool, release: Release) -> object:
        assert self.cap is not None
        async with self.cap:
            return await self.fire(seq, due, warm, release, None)

    def hand_over(self, seq: int, due: int, warm: bool, release: Release) -> None:
        if not warm and self._first_measured:
            self._first_measured = False
            self.clock.measure_start_ns = max(self.clock.measure_start_ns, due)
        send = self._capped if self.cap is not None else self._uncapped
        task = asyncio.get_running_loop().create_task(send(seq, due, warm, release))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _uncapped(self, seq: int, due: int, warm: bool, release: Release) -> object:
        return await self.fire(seq, due, warm, release, None)

    def finished(self) -> None:
        self.clock.dispatch_end_ns = time.perf_counter_ns()
        if not self.paced.done():
            self.paced.set_result(None)
        if self.sent_all is not None:
            self.sent_all()

    async def run(self, halt: asyncio.Event) -> None:
        pacer = Pacer(self.step, self.clock.started_ns, self.hand_over, self.finished)
        thread = threading.Thread(target=pacer.run, name=f"arrivals-step-{self.step.index}", daemon=True)
        # A woken pacer needs the GIL to hand its request over; the loop's thread gives it up after this interval.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, _SWITCH_INTERVAL_S))
        thread.start()
        halted = asyncio.get_running_loop().create_task(halt.wait())
        halted.add_done_callback(lambda _: pacer.stop.set())  # the pacer wakes from its sleep and hands over no more
        try:
            await self.paced
        finally:
            halted.cancel()
            pacer.stop.set()
            sys.setswitchinterval(switch)
        if self.tasks:
            await asyncio.gather(*self.tasks)


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
