"""A run directory: several workers' records merged onto one clock, a run without step lines as one step, and a
directory without records refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.records import rundir
from harness.records.record import Record, RunInfo, StepInfo, write_run

MS = 1_000_000


def worker(directory: Path, name: str, started_unix_ns: int, users: int, host: str) -> None:
    info = RunInfo("r", "2024-01-01T00:00:00+00:00", started_unix_ns, 0, host=host)
    step = StepInfo("r", 0, f"concurrency={users}", "concurrency", 0, 100 * MS, 900 * MS, 1000 * MS,
                    concurrency=users, cpu_s=0.5, loop_lag_ns=[MS])  # fmt: skip
    requests = [Record(run_id="r", index=i, scheduled_ns=200 * MS, sent_ns=210 * MS, end_ns=300 * MS) for i in range(2)]
    write_run(directory / f"records-{name}.jsonl", info, [step], requests)


def test_workers_records_are_merged_onto_the_earliest_clock_and_their_steps_summed(tmp_path: Path) -> None:
    worker(tmp_path, "a", 5_000 * MS, users=3, host="h1")
    worker(tmp_path, "b", 5_050 * MS, users=2, host="h2")  # started 50 ms later
    rd = rundir.load(tmp_path)
    assert [p.name for p in rd.files] == ["records-a.jsonl", "records-b.jsonl"]
    run = rd.run
    assert run.run.host == "h1,h2" and run.run.started_unix_ns == 5_000 * MS
    assert sorted(r.sent_ns for r in run.requests) == [210 * MS, 210 * MS, 260 * MS, 260 * MS]
    (step,) = run.steps
    assert (step.label, step.concurrency) == ("concurrency=5", 5)  # the users of both, the label said again
    assert (step.started_ns, step.ended_ns) == (0, 1050 * MS) and step.loop_lag_ns == [MS, MS]
    assert step.cpu_s == pytest.approx(0.5 / 1.0 * 1.05)  # the busier process's share, over the merged span


def test_a_run_without_step_lines_is_one_step_over_all_of_it(tmp_path: Path) -> None:
    info = RunInfo("r", "2024-01-01T00:00:00+00:00", 0, 0)
    requests = [
        Record(run_id="r", index=0, warmup=True, scheduled_ns=0, sent_ns=MS, end_ns=50 * MS),
        Record(run_id="r", index=1, scheduled_ns=100 * MS, sent_ns=101 * MS, end_ns=150 * MS),
    ]
    write_run(tmp_path / "records.jsonl", info, [], requests)
    run = rundir.load(tmp_path).run
    (step,) = run.steps
    assert (step.label, step.started_ns, step.measure_start_ns, step.dispatch_end_ns, step.ended_ns) == (
        "all", 0, 100 * MS, 101 * MS, 150 * MS,
    )  # fmt: skip
    assert [r.step for r in run.requests] == [0, 0]


def test_a_directory_without_records_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no records\*\.jsonl file"):
        rundir.load(tmp_path)
