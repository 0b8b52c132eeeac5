"""Hand-built capacity searches: each trial a step of one run, as `harness bench --find-max-rate` writes them.

`search_run` sends each trial's requests at a constant rate; a request's TTFT comes from a function of the trial's
load and the request's place in it (so a test can build a queue that grows), and its 4 gaps are 10 ms each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harness.records.record import Record, RunFile, RunInfo, StepInfo
from tests.unit.built_runs import CONFIG, MS, ORIGIN_NS, TARGET, ok_request

Ttft = Callable[[float, int], float]


def flat_until(capacity: float, below_ms: float = 100.0, above_ms: float = 2000.0) -> Ttft:
    """TTFT `below_ms` at loads up to `capacity`, `above_ms` beyond it."""
    return lambda load, _: below_ms if load <= capacity else above_ms


def search_config(percentiles: dict[str, float], **search: Any) -> dict[str, Any]:
    """The search as the run's configuration keeps it (`harness.load.search.SearchConfig.as_dict`)."""
    slo = {"percentiles": percentiles, "per_request": search.pop("per_request", None), "goodput": 0.95}
    kept = {"mode": "rate", "slo": slo, "start": 4.0, "precision": 0.05, "max_trials": 10, "trial_requests": 29}
    return kept | search


def search_run(
    loads: Sequence[float],
    ttft: Ttft,
    search: dict[str, Any],
    n: int = 60,
    loop_lag_ms: Sequence[float] = (),
) -> RunFile:
    """One step per load, in order, `n` requests each at that constant rate, 1 s apart; a step with a loop lag of
    tens of ms (its reads timed by the loop, not the kernel) comes out INVALID."""
    config = CONFIG | {"steps": ["search (rate)"], "capacity": search}
    info = RunInfo("run", "2026-01-01T00:00:00.000+00:00", 1_767_225_600 * 10**9, ORIGIN_NS, target=TARGET,
                   config=config)  # fmt: skip
    requests: list[Record] = []
    steps: list[StepInfo] = []
    start_ms = 0.0
    for step, load in enumerate(loads):
        lag = loop_lag_ms[step] if step < len(loop_lag_ms) else 1.0
        gap_ms = 1000.0 / load
        for i in range(n):
            sent = start_ms + gap_ms * i
            requests.append(ok_request(step, len(requests), sent, ttft(load, i), [10.0] * 4, kernel_timed=lag < 5))
        end_ms = start_ms + gap_ms * n
        step_line = StepInfo(
            "run", step, f"rate={load:g}/s,constant", "rate", round(start_ms * MS), round(start_ms * MS),
            round((end_ms - gap_ms) * MS), round((end_ms + 3000) * MS), rate=load, arrival="constant", cpu_s=0.05,
            loop_lag_ns=[round(lag * MS)] * 20, loop_lag_interval_ns=20 * MS,
        )  # fmt: skip
        steps.append(step_line)
        start_ms = end_ms + 5000
    return RunFile(info, steps, requests)
