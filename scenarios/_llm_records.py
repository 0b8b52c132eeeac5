"""One Locust process's records file: the project's record format, written as requests finish.

Each process that sends requests (a local run, or each worker) writes its own file with its own run line; they
share the run id the master handed out, and `harness report DIR` merges every `records*.jsonl` in a directory.
A step line is written as each load step ends, with the process's CPU time and the gevent loop's lag over the
step, so that the report can tell when Locust itself was the bottleneck.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import orjson

from harness.load.meters import CpuMeter
from harness.records.record import Record, RecordWriter, RunInfo, StepInfo

log = logging.getLogger("scenarios.records")


def records_path(option: Path, *, worker: bool, test_number: int, pid: int | None = None) -> Path:
    """Where this process writes: `DIR/records-<host>-<pid>.jsonl`, or the .jsonl file named (with `-<pid>`
    before the suffix on a worker, so that workers sharing a disk do not overwrite each other). A second test in
    the same process (the web UI's "new test") gets `-<n>` appended, so that it does not overwrite the first."""
    pid = os.getpid() if pid is None else pid
    again = f"-{test_number}" if test_number > 1 else ""
    if option.suffix == ".jsonl":
        stem = f"{option.stem}-{pid}" if worker else option.stem
        return option.with_name(f"{stem}{again}.jsonl")
    return option / f"records-{socket.gethostname()}-{pid}{again}.jsonl"


def other_runs(directory: Path, run_id: str) -> list[str]:
    """Run ids of other runs' records in `directory` (which `harness report` would merge with this one)."""
    found: set[str] = set()
    for path in directory.glob("records*.jsonl"):
        try:
            with path.open("rb") as f:
                first = orjson.loads(f.readline())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(first, dict) and first.get("type") == "run" and first.get("run_id") != run_id:
            found.add(str(first.get("run_id")))
    return sorted(found)


class LagMonitor:
    """How late the gevent hub wakes a short sleep: the Locust counterpart of the harness's event-loop lag."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_ns = round(interval_s * 1e9)
        self.samples: list[int] = []
        self._greenlet: gevent.Greenlet | None = None

    def _run(self) -> None:
        interval = self.interval_ns / 1e9
        while True:
            asked = time.perf_counter_ns()
            gevent.sleep(interval)
            self.samples.append(max(0, time.perf_counter_ns() - asked - self.interval_ns))

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def take(self) -> list[int]:
        samples, self.samples = self.samples, []
        return samples


class RecordSink:
    """Opened when a test starts on this process; `step` starts each load step; `close` ends the last one."""

    def __init__(self, path: Path, run: RunInfo, users: Callable[[], int | None]) -> None:
        self.path = path
        self.run = run
        self._users = users
        self._writer = RecordWriter(path, run)
        self._monitor = LagMonitor()
        self._cpu = CpuMeter()
        self._monitor.start()
        self._open: tuple[int, str, int] | None = None  # (step, label, started_ns)
        self.requests = 0
        self.closed = False

    def write(self, record: Record) -> None:
        if not self.closed:  # a user stopped after the test ended has nothing left to report
            self._writer.write(record)
            self.requests += 1

    def step(self, index: int, label: str) -> None:
        """End the step in progress (if any) and start step `index`."""
        now = time.perf_counter_ns() - self.run.origin_ns
        self._end(now)
        self._monitor.take()
        self._cpu.take()
        self._open = (index, label, now)

    def _end(self, now_ns: int) -> None:
        if self._open is None:
            return
        index, label, started = self._open
        self._open = None
        self._writer.write_step(
            StepInfo(
                run_id=self.run.run_id,
                step=index,
                label=label,
                mode="concurrency",
                started_ns=started,
                measure_start_ns=started,
                dispatch_end_ns=max(now_ns, started),
                ended_ns=max(now_ns, started),
                # This process's share of the users (`harness report` sums the shares of a distributed run).
                concurrency=self._users(),
                cpu_s=self._cpu.take(),
                loop_lag_ns=self._monitor.take(),
                loop_lag_interval_ns=self._monitor.interval_ns,
            )
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._end(time.perf_counter_ns() - self.run.origin_ns)
        self._monitor.stop()
        self._writer.close()
