"""Steady state: MSER-5 cuts a warm-up transient and leaves a settled series alone; a step asked to find its steady
state measures from there, in every figure of its summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harness.analysis import steady
from harness.analysis.summary import build_summary
from harness.records import rundir
from harness.records.record import RunFile, RunInfo
from tests.unit.built_runs import CONFIG, ORIGIN_NS, TARGET, ok_request, step_info, write_dir


@pytest.mark.parametrize("seed", range(5))
def test_mser5_cuts_a_decaying_warm_up_transient(seed: int) -> None:
    rng = np.random.default_rng(seed)
    transient = 100 + 400 * np.exp(-np.arange(300) / 12.0)  # settles within ~50 samples
    cut = steady.mser(transient + rng.normal(0, 5, 300))
    assert cut % steady.BATCH == 0
    assert 30 <= cut <= 80


@pytest.mark.parametrize("seed", range(5))
def test_mser5_leaves_a_settled_series_nearly_whole(seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert steady.mser(rng.normal(100, 5, 300)) <= 40


def test_mser5_cuts_at_most_half_and_nothing_of_fewer_than_two_batches() -> None:
    rising = np.arange(200, dtype=np.float64)  # never settles: half goes
    assert steady.mser(rising) == 100
    assert steady.mser(np.array([500.0, 400, 300, 200, 100, 100, 100, 100, 100])) == 0


def transient_run(auto: bool) -> RunFile:
    """One step of 200 requests sent 10 ms apart; the first 40 start slow (TTFT 500 ms falling to 100)."""
    requests = [
        ok_request(0, i, 10.0 * i, 100 + 400 * max(0.0, 1 - i / 40), [10.0] * 4)
        for i in range(200)
    ]  # fmt: skip
    step = dataclasses.replace(step_info("run", 0, 4, 2000, 0), warmup_auto=auto)
    info = RunInfo("run", "2026-01-01T00:00:00.000+00:00", 1_767_225_600 * 10**9, ORIGIN_NS, target=TARGET,
                   config=CONFIG)  # fmt: skip
    return RunFile(info, [step], requests)


def test_a_step_that_finds_its_steady_state_measures_from_there() -> None:
    settled, windows = steady.settle(transient_run(auto=True))
    window = windows[0]
    assert window.method == "mser5"
    assert 35 <= window.truncated <= 60
    first_kept = settled.requests[window.truncated]
    assert settled.steps[0].measure_start_ns == window.start_ns == first_kept.scheduled_ns
    assert [r.warmup for r in settled.requests] == [i < window.truncated for i in range(200)]
    again, windows_again = steady.settle(settled)
    assert windows_again == windows and again.steps == settled.steps  # settling a settled run changes nothing


def test_a_fixed_warm_up_is_left_as_it_ran() -> None:
    run = transient_run(auto=False)
    settled, windows = steady.settle(run)
    assert settled.steps == run.steps and settled.requests is run.requests
    assert windows[0] == steady.Window("fixed", 0, 0.0, 0)


def test_the_summary_measures_the_steady_window_and_reports_it(tmp_path: Path) -> None:
    summaries = {}
    for auto in (False, True):
        directory = write_dir(tmp_path / str(auto), transient_run(auto))
        summaries[auto] = build_summary(rundir.load(directory))
    fixed, found = summaries[False]["steps"][0], summaries[True]["steps"][0]
    window = found["steady_state"]
    assert fixed["steady_state"] == {"method": "fixed", "start_ns": 0, "warmup_s": 0.0, "warmup_requests": 0}
    assert window["method"] == "mser5" and 35 <= window["warmup_requests"] <= 60
    assert found["requests"]["total"] == 200 - window["warmup_requests"]
    assert found["warmup_requests"] == window["warmup_requests"]
    assert fixed["latency_ms"]["ttft"]["max"] == 500.0
    assert found["latency_ms"]["ttft"]["max"] < 200.0  # the slow start is warm-up now
