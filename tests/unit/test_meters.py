"""The client's meters on itself: a blocked loop shows as lag on either event loop, and CPU work as CPU time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import uvloop

from harness.load.meters import CpuMeter, LoopMonitor

MS = 1_000_000


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_the_lag_monitor_sees_a_blocked_loop_on_either_loop(loop_factory: Any) -> None:
    async def main() -> list[int]:
        monitor = LoopMonitor(interval_s=0.005)
        monitor.start()
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # noqa: ASYNC251 - the client hogging its own loop, as a CPU-bound generator does
        await asyncio.sleep(0.05)
        await monitor.stop()
        return monitor.take()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        lags = runner.run(main())
    assert max(lags) >= 150 * MS  # a probe handed over during the block waited for most of it
    assert min(lags) < 50 * MS  # and the ones handed over before and after it did not


def test_the_cpu_meter_counts_this_process_work() -> None:
    meter = CpuMeter()
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert meter.take() >= 0.05
