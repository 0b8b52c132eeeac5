"""The client's meters on itself, read at each step's end into its step line: event-loop lag and CPU time.

They measure, and never judge: `harness.analysis.bounds` and `harness.analysis.validity` turn their samples into error
bounds and verdicts, from the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class LoopMonitor:
    """Samples event-loop lag: how much later than asked a short sleep wakes up.

    A read that the loop, not the kernel, timed (uvloop's) is late by however long the loop took to come round to
    it; a timer is late in the same way, plus the loop's timer granularity (about a millisecond), so the samples
    overstate the lag a little, which is the safe side for a bound. The sampler is a task on the loop itself: a
    thread handing the loop callbacks would take the GIL from it every interval, and on a busy machine the loop then
    waits for that thread to be scheduled (the interpreter's forced switch), stalling every read in the meantime.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_ns = round(interval_s * 1e9)
        self.samples: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        interval = self.interval_ns / 1e9
        while True:
            asked = time.perf_counter_ns()
            await asyncio.sleep(interval)
            self.samples.append(max(0, time.perf_counter_ns() - asked - self.interval_ns))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def take(self) -> list[int]:
        """The samples since the last call."""
        samples, self.samples = self.samples, []
        return samples


class CpuMeter:
    """CPU time of this process (all threads) since the last `take`."""

    def __init__(self) -> None:
        self._last = time.process_time()

    def take(self) -> float:
        now = time.process_time()
        used, self._last = now - self._last, now
        return used
