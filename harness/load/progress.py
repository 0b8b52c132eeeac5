"""One terminal line that follows a run: step, requests done, in flight, 429s, errors and a live median TTFT.

Drawn a few times a second on a terminal; silent when the output is not a terminal or in CI, where a log of
carriage returns helps nobody. The live TTFT is a display aid over the last requests, not a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
from collections import deque
from typing import TextIO

from harness.records.record import Record


class Progress:
    def __init__(self, enabled: bool, stream: TextIO | None = None, interval_s: float = 0.5) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval_s = interval_s
        self.label = ""
        self.done = 0
        self.in_flight = 0
        self.rate_limited = 0
        self.errors = 0
        self._ttft_ms: deque[float] = deque(maxlen=500)
        self._task: asyncio.Task[None] | None = None
        self._width = 0

    @staticmethod
    def wanted(stream: TextIO, ci: bool) -> bool:
        return not ci and stream.isatty()

    def step(self, label: str) -> None:
        self.label = label
        self.done = self.rate_limited = self.errors = 0
        self._ttft_ms.clear()

    def sent(self) -> None:
        self.in_flight += 1

    def finished(self, record: Record) -> None:
        self.in_flight -= 1
        self.done += 1
        if record.error_kind == "rate_limited":
            self.rate_limited += 1
        elif record.error_kind is not None:
            self.errors += 1
        elif record.first_token_ns is not None and record.sent_ns is not None:
            self._ttft_ms.append((record.first_token_ns - record.sent_ns) / 1e6)

    def line(self) -> str:
        ttft = f"{statistics.median(self._ttft_ms):.1f} ms" if self._ttft_ms else "-"
        return (
            f"[{self.label}] done {self.done}  in flight {self.in_flight}  429s {self.rate_limited}  "
            f"errors {self.errors}  p50 TTFT {ttft}"
        )

    def _draw(self) -> None:
        text = self.line()
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    async def _loop(self) -> None:
        while True:
            self._draw()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="progress")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._draw()
        self.stream.write("\n")
        self.stream.flush()
