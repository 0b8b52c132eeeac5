"""The client's event loop, with a selector that notes when each wait for readiness began, ended, and whether it slept.

A read's kernel stamp says when its *last* segment arrived. When a read brings several events, the earlier ones
arrived sooner, and how much sooner is what bounds their timing error (`harness.analysis.bounds`). The selector narrows
it:

- Before it waits, `select` polls without waiting. When that finds nothing, every socket was empty then; the wait
  that follows ends at the first arrival on any of them. So every byte read in such an iteration (one that *slept*)
  arrived after the poll began, and no sooner than the wake-up less the wake-up latency.
- An iteration whose `select` found sockets ready at once read only bytes that were not ready when the previous
  `select` collected its events: after that one began — or, if it slept, no sooner than its wake-up less the latency.

The wake-up latency (from a byte's arrival to `select` returning) is measured on the run itself: for each iteration
that slept, its wake-up less the earliest kernel stamp of its reads (`wake_max_ns`, the largest since the last
`take_wake_max`). It is an estimate — the kernel does not stamp wake-ups — and a starved client's shows it.

The loop is `asyncio.SelectorEventLoop` given this selector (public API); uvloop has none of it.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import time
import weakref

_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimedSelector] = weakref.WeakKeyDictionary()


class TimedSelector(selectors.DefaultSelector):
    """The default selector, timing each `select` and telling whether it slept.

    For the reads of the current iteration, `after_ns` is when their bytes arrived after, for certain, and `woke_ns`
    (None when unknown) the wake-up that they arrived no sooner than, less the wake-up latency. Both are plain
    attributes, set once per `select`, since every read of the iteration asks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entered_ns = 0
        self.returned_ns = 0
        self.slept = False
        self.after_ns = 0
        self.woke_ns: int | None = None
        self._first_arrival: int | None = None
        self._wake_max = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.slept and self._first_arrival is not None:
            self._wake_max = max(self._wake_max, self.returned_ns - self._first_arrival)
        self._first_arrival = None
        # Bytes not ready at the previous collection arrived after it: after it began, or after it woke.
        previous_after, previous_woke = self.entered_ns, self.returned_ns if self.slept else None
        entered = self.entered_ns = time.perf_counter_ns()
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        self.slept = not ready and (timeout is None or timeout > 0)
        if self.slept:  # nothing was ready: wait for the first arrival
            ready = super().select(timeout)
        returned = self.returned_ns = time.perf_counter_ns()
        if self.slept:
            self.after_ns, self.woke_ns = entered, returned
        else:
            self.after_ns, self.woke_ns = previous_after, previous_woke
        return ready

    def arrived(self, kernel_ns: int) -> None:
        """A read of this iteration was stamped by the kernel at `kernel_ns`: a candidate for what woke it."""
        if self._first_arrival is None or kernel_ns < self._first_arrival:
            self._first_arrival = kernel_ns

    def take_wake_max(self) -> int:
        """The largest wake-up latency measured since the last call (ns)."""
        found, self._wake_max = self._wake_max, 0
        return found


def new_event_loop() -> asyncio.AbstractEventLoop:
    """asyncio's own loop on a `TimedSelector` (the default loop elsewhere than Linux)."""
    if not sys.platform.startswith("linux"):
        return asyncio.new_event_loop()
    selector = TimedSelector()
    loop = asyncio.SelectorEventLoop(selector)
    _LOOPS[loop] = selector
    return loop


def of(loop: asyncio.AbstractEventLoop) -> TimedSelector | None:
    """The timed selector of a loop made by `new_event_loop`, or None."""
    return _LOOPS.get(loop)
