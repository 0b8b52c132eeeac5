"""The runner's step options against a scripted in-process server — a search's failing trial ends only itself, the
cool-down comes between steps — and the live saturation watch on records that fill in as a queue grows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from harness.load.plan import StepPlan
from harness.load.runner import StepOptions
from harness.load.stop_rule import StopRule
from harness.load.watch import SaturationWatch
from harness.records.record import Record, read_run

from .test_runner import answered, refused, run

MS = 1_000_000


async def test_a_failing_trial_ends_itself_and_the_next_one_still_runs(tmp_path: Path) -> None:
    plans = [StepPlan(i, "concurrency", concurrency=1, requests=50) for i in range(2)]
    await run(tmp_path, refused, plans, StopRule(window=10, minimum=5), StepOptions(trial_stops=True))
    kept = read_run(tmp_path / "records.jsonl")
    assert [s.step for s in kept.steps] == [0, 1]
    assert all(s.stopped_early is not None and s.stopped_early.startswith("5 of the last 5") for s in kept.steps)
    assert [sum(r.step == s for r in kept.requests) for s in (0, 1)] == [5, 5]
    await run(tmp_path, refused, plans, StopRule(window=10, minimum=5))  # outside a search the run stops with it
    assert [s.step for s in read_run(tmp_path / "records.jsonl").steps] == [0]


async def test_the_cool_down_comes_between_steps_not_before_the_first(tmp_path: Path) -> None:
    plans = [StepPlan(i, "concurrency", concurrency=1, requests=2) for i in range(2)]
    await run(tmp_path, answered, plans, options=StepOptions(cooldown_s=0.3))
    first, second = read_run(tmp_path / "records.jsonl").steps
    assert first.started_ns < 0.3e9  # no cool-down before the first
    assert second.started_ns - first.ended_ns >= 0.3e9


def queue_records(now_s: float, rate: float = 20.0, served: float = 10.0) -> list[Record]:
    """Requests arriving at `rate` a second for a server taking `served` a second from a FIFO queue (1 s each, its
    first token 100 ms in), as their records stand at `now_s`: times not yet come are None."""
    records = []
    for i in range(int(now_s * rate)):
        sent = i / rate
        begin = max(sent, i / served)
        record = Record(index=i, sent_ns=round(sent * 1e9))
        if begin + 0.1 <= now_s:
            record.first_token_ns = round((begin + 0.1) * 1e9)
        if begin + 1.0 <= now_s:
            record.end_ns = round((begin + 1.0) * 1e9)
        records.append(record)
    return records


def test_the_watch_finds_a_growing_queue_from_what_its_records_say_so_far() -> None:
    watch = SaturationWatch(0, 0, origin_ns=0)
    assert watch.check(round(0.5e9)) is None  # no request has ended: the window has not opened
    findings = {}
    for now_s in (3.0, 6.0, 8.0):
        watch = SaturationWatch(0, 0, origin_ns=0)
        for record in queue_records(now_s):
            watch.add(record)
        findings[now_s] = watch.check(round(now_s * 1e9))
    assert findings[3.0] is not None and findings[3.0].saturated is None  # a window under 3 s is not judged
    assert findings[8.0] is not None and findings[8.0].saturated is True
    steady = SaturationWatch(0, 0, origin_ns=0)
    for record in queue_records(20.0, rate=8.0):
        steady.add(record)
    found = steady.check(round(20e9))
    assert found is not None and found.saturated is False


async def test_the_watch_stops_its_step_once_it_finds_the_queue_growing() -> None:
    watch = SaturationWatch(0, 0, origin_ns=time.perf_counter_ns() - round(8e9), interval_s=0.01)
    for record in queue_records(8.0):
        watch.add(record)
    halt = asyncio.Event()
    await asyncio.wait_for(watch.run(halt), timeout=5)
    assert halt.is_set() and watch.found_ns is not None and watch.finding is not None
    assert watch.finding.saturated is True
