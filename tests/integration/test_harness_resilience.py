"""`harness bench` against a broken server: every request is recorded with its typed error, the run completes,
and summary.json says what happened.

The simulator breaks every request of a run the same way (`--enable-faults` and `harness bench --header
'x-fault: …'`); the preflight, which would refuse such a target before the run (`test_preflight.py`), is skipped
so that the run itself meets the faults. A run whose requests mostly fail stops early and says why; one test kills
the server in the middle of a run.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import requests

import schemas
from harness.cli import main
from harness.records.record import read_run
from harness.target.launch import DEFAULT_MODEL, LaunchedServer, launch_reference_server

REQUESTS = 12


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[LaunchedServer]:
    with launch_reference_server(extra_args=["--enable-faults", "--ttft-ms=1", "--itl-ms=1"], keys=1) as server:
        yield server


def bench_args(server: LaunchedServer, out: Path, *extra: str) -> list[str]:
    return [
        "bench",
        "--base-url",
        server.target.base_url,
        "--api-key",
        server.target.api_key,
        "--model",
        DEFAULT_MODEL,
        "--no-calibrate",
        "--input-tokens",
        "16",
        "--output-tokens",
        "12",
        "--warmup",
        "0",
        "--output-dir",
        str(out),
        "--run-id",
        "run",
        "--no-progress",
        "--no-preflight",
        *extra,
    ]


def finished_run(out: Path) -> tuple[dict[str, Any], Counter[str | None]]:
    summary = orjson.loads((out / "run" / "summary.json").read_bytes())
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(summary)
    run = read_run(out / "run" / "records.jsonl")
    assert summary["overall"]["requests"]["total"] == len(run.requests)
    assert all(r.end_ns is not None for r in run.requests)
    return summary, Counter(r.error_kind for r in run.requests)


@pytest.mark.parametrize(
    ("fault", "timeout_s", "kind", "detail"),
    [
        ("no_done", 30, "protocol_error", "without data: [DONE]"),
        ("malformed_chunk:2", 30, "protocol_error", "not JSON"),
        ("reset:2", 30, "disconnect", ""),
        ("stall:5000", 0.5, "timeout", "no complete response within 0.5 s"),
        ("error_500", 30, "http_5xx", "500: Injected fault"),
    ],
)
def test_each_fault_is_recorded_as_its_error_kind(
    faulty_server: LaunchedServer, tmp_path: Path, fault: str, timeout_s: float, kind: str, detail: str
) -> None:
    argv = bench_args(
        faulty_server,
        tmp_path,
        "--concurrency",
        "4",
        "--requests",
        str(REQUESTS),
        "--timeout",
        str(timeout_s),
        "--header",
        f"x-fault: {fault}",
    )
    assert main(argv) == 2  # the run completes; no request succeeded: UNUSABLE, which its exit code says
    summary, kinds = finished_run(tmp_path)
    assert summary["validity"]["verdict"] == "UNUSABLE"
    assert summary["validity"]["reasons"][0].startswith("no request succeeded; first error: ")
    assert kind in summary["validity"]["reasons"][0]
    assert kinds == Counter({kind: REQUESTS})
    overall = summary["overall"]["requests"]
    assert overall["ok"] == 0 and overall["errors"] == REQUESTS
    assert overall["by_error"] == {kind: REQUESTS}
    run = read_run(tmp_path / "run" / "records.jsonl")
    assert all(detail in (r.error_detail or "") for r in run.requests), run.requests[0].error_detail


def test_a_server_that_dies_mid_run_leaves_a_complete_record(tmp_path: Path) -> None:
    with launch_reference_server(extra_args=["--ttft-ms=1", "--itl-ms=25"], keys=1) as server:
        # Every request is kept: the failures after the kill must not stop the run early.
        argv = bench_args(server, tmp_path, "--concurrency", "4", "--requests", "40", "--timeout", "20")
        argv.append("--stop-error-rate=1")
        bench = subprocess.Popen([sys.executable, "-m", "harness", *argv], stdout=subprocess.PIPE, text=True)
        try:
            # Kill the server once the run is well under way: some requests done, others streaming.
            deadline = time.monotonic() + 60
            while completed(server) < 6:
                assert time.monotonic() < deadline and bench.poll() is None
                time.sleep(0.05)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=10)
            out, _ = bench.communicate(timeout=120)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
    assert bench.returncode == 0, out  # some requests succeeded before the end
    summary, kinds = finished_run(tmp_path)
    assert sum(kinds.values()) == 40
    assert kinds[None] >= 6
    assert kinds["disconnect"] >= 1  # the ones streaming when the server died
    assert kinds[None] + kinds["disconnect"] + kinds["connect"] == 40
    assert summary["overall"]["requests"]["by_error"] == {k: n for k, n in kinds.items() if k is not None}
    assert "summary:" in out


@pytest.mark.parametrize(
    ("fault", "preflight", "kind", "detail"),
    [
        # Every request refused at once: only the early stop keeps the run from sending 500 of them.
        ("error_500", False, "http_5xx", "500: Injected fault: internal error."),
        # Short requests work (the preflight's and the calibration's pass), the run's longer ones all break.
        ("malformed_chunk:8", True, "protocol_error", "an SSE event is not JSON"),
    ],
)
def test_a_run_whose_requests_fail_stops_early_and_says_why(
    faulty_server: LaunchedServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    preflight: bool,
    kind: str,
    detail: str,
) -> None:
    argv = bench_args(faulty_server, tmp_path, "--sweep-concurrency", "4,8", "--requests", "500")
    argv = [a for a in argv if preflight is False or a not in ("--no-preflight", "--no-calibrate")]
    assert main([*argv, "--header", f"x-fault: {fault}"]) == 2  # nothing succeeded: UNUSABLE, and it says why
    out = capsys.readouterr().out
    reason = f"20 of the last 20 requests failed ({kind}: {detail}"
    assert f"stopped early: {reason}" in out
    run = read_run(tmp_path / "run" / "records.jsonl")
    assert 20 <= len(run.requests) <= 20 + 4  # the 20th failure stops it; at most the other 3 were in flight
    assert {r.error_kind for r in run.requests} == {kind}
    (step,) = run.steps  # the second step never ran
    assert step.stopped_early is not None and step.stopped_early.startswith(reason)
    assert run.run.config["stop_error_rate"] == 0.5


def test_a_stop_error_rate_of_one_never_stops(faulty_server: LaunchedServer, tmp_path: Path) -> None:
    argv = bench_args(faulty_server, tmp_path, "--concurrency", "4", "--requests", "40", "--stop-error-rate", "1")
    assert main([*argv, "--header", "x-fault: error_500"]) == 2  # nothing succeeded, and nothing stopped it
    run = read_run(tmp_path / "run" / "records.jsonl")
    assert len(run.requests) == 40 and [s.stopped_early for s in run.steps] == [None]


def test_a_stop_error_rate_outside_zero_to_one_is_refused(
    faulty_server: LaunchedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(bench_args(faulty_server, tmp_path, "--stop-error-rate", "0"))
    assert stopped.value.code == 2
    assert "--stop-error-rate: must be above 0 and at most 1 (1: never stop), not 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def completed(server: LaunchedServer) -> int:
    try:
        text = requests.get(f"{server.target.root_url}/metrics", timeout=5).text
    except requests.ConnectionError:
        return 0
    found = re.findall(r'^llm_requests_total\{endpoint="/v1/chat/completions",status="200"\} (\S+)$', text, re.M)
    return int(float(found[0])) if found else 0
