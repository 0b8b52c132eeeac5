"""The live watch of a step for a queue that keeps growing (`--stop-when-saturated`).

Every `interval_s` it runs the saturation test (`harness.analysis.saturation`) over what the step's records say so
far — their send, first-token and end times, which the client fills in as they happen — from the window's start to
now. The first time the test finds the step saturated, the watch says when and sets the step's halt: no further
request is sent, and those in flight finish (their latencies are the queue's, and the step's summary measures
them). The test is the summary's own; only the window differs (it ends now rather than when sending ended).
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np

from harness.analysis import saturation
from harness.analysis.stats import Floats
from harness.records.record import Record

INTERVAL_S = 0.5


class SaturationWatch:
    """One step's watch; `found_ns` (ns since the run's origin) is when it found the step saturated, if it did."""

    def __init__(self, started_ns: int, measure_start_ns: int, origin_ns: int, interval_s: float = INTERVAL_S) -> None:
        self.started_ns = started_ns
        self.measure_start_ns = measure_start_ns
        self.origin_ns = origin_ns
        self.interval_s = interval_s
        self.found_ns: int | None = None
        self.finding: saturation.Finding | None = None
        self._open: list[Record] = []  # not ended at the last check: their times may still change
        self._ended: list[tuple[float, float, float]] = []  # (sent, first token, end) of those that had ended

    def add(self, record: Record) -> None:
        """A request of the step, as it is sent (the client fills in its times as they happen)."""
        self._open.append(record)

    def _times(self) -> tuple[Floats, Floats, Floats]:
        """Every request's times so far; an ended request's are final, so each is read once after it ends (a check
        then costs the requests in flight, not the whole step: it runs on the loop that stamps the chunks)."""
        still: list[Record] = []
        for r in self._open:
            if r.end_ns is None:
                still.append(r)
            else:
                self._ended.append(_times(r))
        self._open = still
        ended = np.array(self._ended, dtype=np.float64).reshape(-1, 3)
        sent, first, end = saturation.times(still)
        return (
            np.concatenate((ended[:, 0], sent)),
            np.concatenate((ended[:, 1], first)),
            np.concatenate((ended[:, 2], end)),
        )

    def check(self, now_ns: int) -> saturation.Finding | None:
        """The test over the step so far (None before its window opens)."""
        sent, first, end = self._times()
        start = saturation.window_start(float(self.measure_start_ns), float(self.started_ns), sent, end)
        if not math.isfinite(start):
            return None
        return saturation.detect(sent, first, end, start, float(now_ns))

    async def run(self, halt: asyncio.Event) -> None:
        """Check until the step ends (the caller cancels this) or the test finds the step saturated."""
        while not halt.is_set():
            await asyncio.sleep(self.interval_s)
            now = time.perf_counter_ns() - self.origin_ns
            finding = self.check(now)
            if finding is not None and finding.saturated:
                self.found_ns, self.finding = now, finding
                halt.set()
                return


def _times(r: Record) -> tuple[float, float, float]:
    def at(value: int | None) -> float:
        return math.nan if value is None else float(value)

    return at(r.sent_ns), at(r.first_token_ns), at(r.end_ns)
