"""A run directory (`reports/<run-id>/`): its records, merged when several processes wrote them, and what lies beside.

`harness bench` writes one `records.jsonl`; a distributed Locust run writes one `records*.jsonl` per worker
process, each with its own run line and monotonic origin. Their timestamps are moved onto the earliest file's
wall-clock start (`started_unix_ns`) and steps with the same index become one step: the union of their windows,
their users and rates summed (each worker ran its share), their loop-lag samples pooled, and the CPU figure of the
busiest process kept (a client is the bottleneck when any one of its processes is).

Beside the records may lie `conformance/result.json` (from `harness check` or `harness run`), the server's ground
truth (`ground_truth.jsonl`), the server's own Prometheus metrics scraped during the run (`server_metrics.jsonl`) and
an earlier `summary.json` (whose SLOs are kept).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from harness.records import server_metrics, truth
from harness.records.record import Record, RunFile, StepInfo, read_run

RECORDS_GLOB = "records*.jsonl"
SUMMARY_FILE = "summary.json"
CONFORMANCE_RESULT = Path("conformance") / "result.json"
_DEFAULT_LABEL = re.compile(r"^concurrency=\d+$")


@dataclass(slots=True)
class RunDir:
    directory: Path
    files: list[Path]
    run: RunFile
    conformance: dict[str, Any] | None
    truth: dict[str, truth.Truth]
    previous: dict[str, Any] | None
    server_metrics: server_metrics.ServerMetrics | None = None


def records_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(RECORDS_GLOB) if p.is_file())


def _shift(value: int | None, by: int) -> int | None:
    return None if value is None else value + by


def _shift_record(r: Record, by: int) -> Record:
    return dataclasses.replace(
        r,
        scheduled_ns=r.scheduled_ns + by,
        dispatched_ns=_shift(r.dispatched_ns, by),
        sent_ns=_shift(r.sent_ns, by),
        headers_ns=_shift(r.headers_ns, by),
        first_token_ns=_shift(r.first_token_ns, by),
        end_ns=_shift(r.end_ns, by),
        chunk_ns=[t + by for t in r.chunk_ns],
    )


def _merge_steps(parts: Sequence[StepInfo]) -> StepInfo:
    first = parts[0]
    started = min(p.started_ns for p in parts)
    ended = max(p.ended_ns for p in parts)
    busiest = max(
        (p.cpu_s / ((p.ended_ns - p.started_ns) / 1e9) for p in parts if p.ended_ns > p.started_ns), default=0
    )
    users = [p.concurrency for p in parts if p.concurrency is not None]
    rates = [p.rate for p in parts if p.rate is not None]
    concurrency = sum(users) if users else None
    label = f"concurrency={concurrency}" if _DEFAULT_LABEL.match(first.label) and concurrency else first.label
    return dataclasses.replace(
        first,
        label=label,
        started_ns=started,
        measure_start_ns=min(p.measure_start_ns for p in parts),
        dispatch_end_ns=max(p.dispatch_end_ns for p in parts),
        ended_ns=ended,
        concurrency=concurrency,
        rate=sum(rates) if rates else None,
        cpu_s=busiest * (ended - started) / 1e9,
        loop_lag_ns=[lag for p in parts for lag in p.loop_lag_ns],
    )


def merge(runs: Sequence[RunFile]) -> RunFile:
    """Several run files of one run (one per worker process) as one, on the earliest file's clock."""
    if len(runs) == 1:
        return runs[0]
    ordered = sorted(runs, key=lambda f: f.run.started_unix_ns)
    base = ordered[0].run
    requests: list[Record] = []
    steps: dict[int, list[StepInfo]] = {}
    for f in ordered:
        by = f.run.started_unix_ns - base.started_unix_ns
        requests += [_shift_record(r, by) for r in f.requests]
        for s in f.steps:
            steps.setdefault(s.step, []).append(
                dataclasses.replace(
                    s,
                    started_ns=s.started_ns + by,
                    measure_start_ns=s.measure_start_ns + by,
                    dispatch_end_ns=s.dispatch_end_ns + by,
                    ended_ns=s.ended_ns + by,
                )
            )
    hosts = sorted({f.run.host for f in ordered if f.run.host})
    info = dataclasses.replace(base, host=",".join(hosts))
    requests.sort(key=lambda r: r.scheduled_ns)
    return RunFile(info, [_merge_steps(parts) for _, parts in sorted(steps.items())], requests)


def with_steps(run: RunFile) -> RunFile:
    """A run whose files hold no step line (a writer that does not know steps) as one step spanning it all."""
    if run.steps or not run.requests:
        return run
    measured = [r for r in run.requests if not r.warmup] or run.requests
    sent = [r.sent_ns for r in measured if r.sent_ns is not None]
    step = StepInfo(
        run_id=run.run.run_id,
        step=0,
        label="all",
        mode="concurrency",
        started_ns=min(r.scheduled_ns for r in run.requests),
        measure_start_ns=min(r.scheduled_ns for r in measured),
        dispatch_end_ns=max(sent) if sent else min(r.scheduled_ns for r in measured),
        ended_ns=max(r.end_ns or r.scheduled_ns for r in run.requests),
    )
    return RunFile(run.run, [step], [dataclasses.replace(r, step=0) for r in run.requests])


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    value = orjson.loads(path.read_bytes())
    return value if isinstance(value, dict) else None


def load(directory: Path) -> RunDir:
    """The run kept in `directory`; ValueError when it holds no records."""
    files = records_files(directory)
    if not files:
        raise ValueError(f"{directory}: no {RECORDS_GLOB} file")
    run = with_steps(merge([read_run(f) for f in files]))
    return RunDir(
        directory,
        files,
        run,
        _read_json(directory / CONFORMANCE_RESULT),
        truth.read(directory / truth.TRUTH_FILE),
        _read_json(directory / SUMMARY_FILE),
        server_metrics.read(directory / server_metrics.SERVER_METRICS_FILE),
    )
