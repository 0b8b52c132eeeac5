from __future__ import annotations

import asyncio
import time
from typing import Any

from harness import metrics, validity
from harness.records import Record, RunFile, RunInfo, StepInfo
from harness.validity import CpuMeter, Limits, LoopMonitor, judge

MS = 1_000_000


def table(
    lag_ms: list[float],
    dispatch_ms: list[float],
    cpu: float | None,
    scheduled_rate: float | None = None,
    achieved_rate: float | None = None,
) -> dict[str, Any]:
    return {
        "load": {"loop_lag_ms": metrics.distribution(lag_ms), "cpu_s": 0.0, "cpu_utilization": cpu},
        "latency_ms": {"dispatch_delay": metrics.distribution(dispatch_ms)},
        "scheduled_rate": scheduled_rate,
        "achieved_rate": achieved_rate,
    }


async def test_a_blocked_event_loop_makes_the_run_invalid() -> None:
    monitor = LoopMonitor(interval_s=0.005)
    monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # noqa: ASYNC251 - the client hogging its own loop, as a CPU-bound generator does
    await asyncio.sleep(0.05)
    await monitor.stop()
    lags = monitor.take()
    assert max(lags) >= 250 * MS
    run = RunInfo("r", "2024-01-01T00:00:00.000+00:00", 0, 0, target={}, config={})
    step = StepInfo(
        "r",
        0,
        "concurrency=1",
        "concurrency",
        0,
        0,
        400 * MS,
        400 * MS,
        concurrency=1,
        loop_lag_ns=lags,
        loop_lag_interval_ns=monitor.interval_ns,
    )
    records = [
        Record(
            run_id="r",
            scheduled_ns=0,
            sent_ns=0,
            first_token_ns=MS,
            end_ns=2 * MS,
            chunk_ns=[MS],
            chunk_tokens=[1],
            status=200,
            completion_tokens=1,
            attempts=1,
        )
    ]
    summary = validity.apply(metrics.summarize(RunFile(run, [step], records)), Limits())
    assert summary["validity"]["verdict"] == "INVALID"
    assert summary["steps"][0]["validity"]["verdict"] == "INVALID"
    assert any("blocked" in r for r in summary["validity"]["reasons"])


def test_a_healthy_step_is_valid() -> None:
    verdict = judge(table([0.5, 1.0, 1.2], [0.1, 0.2], 0.3, 10.0, 10.0), Limits(), open_loop=True)
    assert verdict == {"verdict": "VALID", "reasons": [], "warnings": []}


def test_late_dispatch_is_a_reason() -> None:
    verdict = judge(table([0.5], [1.0] * 98 + [40.0, 40.0], 0.3), Limits(), open_loop=False)
    assert verdict["verdict"] == "INVALID"
    assert verdict["reasons"] == ["dispatch delay p99 40.0 ms > 10 ms"]


def test_an_open_loop_that_sends_less_than_scheduled_is_invalid_but_a_closed_loop_is_not_judged_on_rate() -> None:
    short = table([0.5], [0.1], 0.3, scheduled_rate=100.0, achieved_rate=95.0)
    assert judge(short, Limits(), open_loop=True)["reasons"] == ["sent 95.00 req/s of the 100.00 req/s scheduled"]
    assert judge(short, Limits(), open_loop=False)["verdict"] == "VALID"


def test_a_saturated_client_cpu_is_invalid_and_a_busy_one_a_warning() -> None:
    assert judge(table([0.5], [0.1], 0.97), Limits(), open_loop=False)["reasons"] == ["client CPU at 97% of a core"]
    busy = judge(table([0.5], [0.1], 0.8), Limits(), open_loop=False)
    assert busy["verdict"] == "VALID"
    assert busy["warnings"] == ["client CPU at 80% of a core"]


def test_the_cpu_meter_counts_this_process_work() -> None:
    meter = CpuMeter()
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert meter.take() >= 0.05
