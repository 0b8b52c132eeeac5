"""The server's own view in `summary.json`, the report and the gate, on the hand-built sweep (`built_runs.sweep_run`:
steps concurrency=1, 30, 40 over [0, 1), [1, 2), [2, 3) s) with server metrics scraped every 250 ms beside it
(`with_server_metrics`, values known by construction) and the machine it was measured on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from harness.analysis import regression
from harness.gate.evaluation import evaluate
from harness.gate.output import markdown as gate_markdown
from harness.gate.verdict import FAIL, PASS
from harness.records import server_metrics
from harness.records.record import RunFile
from harness.records.server_metrics import Scrape, Source, parse
from harness.report.build import build as build_report
from tests.unit.built_runs import MS, conformance_result, summarized, sweep_run, write_dir

TICK_MS = 250
USERS = {0: 1, 1: 30, 2: 30}  # running: the step's users, 30 at most (the 40-user step's 10 others got 429s)
ENVIRONMENT: dict[str, Any] = {
    "client": {"host": "bench-1", "cpu": "AMD EPYC 7B13", "cpus": 2, "memory_gib": 23.5,
               "os": "Debian GNU/Linux 12 (bookworm)", "kernel": "Linux 6.1.0", "python": "3.11.7 (CPython)",
               "harness": "0.1.0", "packages": {"aiohttp": "3.14.5", "numpy": "2.3.5"}, "gpus": None},
    "target": {"models": ["m"], "server_header": "uvicorn", "version": {"version": "0.32.0"},
               "version_url": "http://127.0.0.1:8000/version", "errors": []},
}  # fmt: skip


def exposition(at_ms: int) -> str:
    """vLLM's families at `at_ms` (a scrape at a step's end still sees that step): preemptions only in the last step
    (one a tick after 2 s), queue times of 0.2 s for 10 requests a tick after 1 s, and 5 more a tick in (0.3, 1] s
    after 2 s."""
    step = min(max(0, at_ms - 1) // 1000, 2)
    ticks = at_ms // TICK_MS
    preempted = max(0, ticks - 8)
    queued = max(0, ticks - 4) * 10
    slow = max(0, ticks - 8) * 5
    return (
        f"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running {USERS[step] if at_ms < 3000 else 0}\n"
        f"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n"
        f"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc {0.02 * USERS[step]}\n"
        f"# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total {preempted}\n"
        f"# TYPE vllm:request_queue_time_seconds histogram\n"
        f'vllm:request_queue_time_seconds_bucket{{le="0.3"}} {queued}\n'
        f'vllm:request_queue_time_seconds_bucket{{le="1.0"}} {queued + slow}\n'
        f'vllm:request_queue_time_seconds_bucket{{le="+Inf"}} {queued + slow}\n'
        f"vllm:request_queue_time_seconds_count {queued + slow}\n"
        f"vllm:request_queue_time_seconds_sum {0.2 * queued + 0.8 * slow}\n"
    )


def with_server_metrics(run: RunFile, directory: Path) -> Path:
    """A run directory with the sweep's records (and environment) and its server's metrics every 250 ms to 3 s."""
    run = dataclasses.replace(run, run=dataclasses.replace(run.run, environment=ENVIRONMENT))
    write_dir(directory, run, conformance_result(failed=0))
    scrapes = [Scrape(t * MS, t * MS, 200, None, parse(exposition(t))) for t in range(0, 3001, TICK_MS)]
    source = Source("run", "http://127.0.0.1:8000/metrics", TICK_MS / 1000, run.run.origin_ns)
    server_metrics.write(directory / server_metrics.SERVER_METRICS_FILE, source, scrapes)
    return directory


@pytest.fixture
def summary(tmp_path: Path) -> dict[str, Any]:
    path = summarized(with_server_metrics(sweep_run(), tmp_path / "run"))
    found: dict[str, Any] = orjson.loads(path.read_bytes())
    return found


def test_each_step_carries_the_servers_figures_and_the_summary_what_was_scraped(summary: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(summary)
    assert summary["server_metrics"] == {
        "url": "http://127.0.0.1:8000/metrics",
        "interval_s": 0.25,
        "scrapes": 13,
        "failed": 0,
        "first_error": None,
        "families": 5,
        "sources": {
            "running": "vllm:num_requests_running",
            "waiting": "vllm:num_requests_waiting",
            "kv_cache_usage": "vllm:kv_cache_usage_perc",
            "preemptions": "vllm:num_preemptions",
            "queue_time": "vllm:request_queue_time_seconds",
        },
    }
    first, middle, last = (s["server"] for s in summary["steps"])
    assert first["running"] == {"mean": 1.0, "max": 1.0, "samples": 5}
    assert middle["running"]["max"] == 30 and middle["kv_cache_usage"]["max"] == pytest.approx(0.6)
    assert (first["preemptions"], middle["preemptions"], last["preemptions"]) == (0, 0, 4)
    assert first["queue_time_ms"] is None  # nothing was queued in its window
    assert middle["queue_time_ms"]["count"] == 40 and middle["queue_time_ms"]["mean"] == pytest.approx(200.0)
    # 40 in (0, 0.3] s, 20 in (0.3, 1]: p99 is 19.4 of those 20 into that bucket, interpolated.
    assert last["queue_time_ms"]["count"] == 60 and last["queue_time_ms"]["p99"] == pytest.approx(979.0)
    assert last["queue_time_ms"]["buckets"]["p99"] == [300.0, 1000.0]
    assert summary["overall"]["server"]["preemptions"] == 4
    assert summary["environment"] == ENVIRONMENT


def test_the_report_shows_the_server_section_and_the_machine(tmp_path: Path) -> None:
    directory = with_server_metrics(sweep_run(), tmp_path / "run")
    written = build_report([directory], limit=30)
    page = written.html.read_text(encoding="utf-8")
    assert '<section id="server"><h2>Server</h2>' in page
    assert "13 scrapes of http://127.0.0.1:8000/metrics every 0.25 s" in page
    assert page.count("data:image/png;base64,") == 5  # the server's timeline beside the four figures of every run
    assert "measured on client bench-1: AMD EPYC 7B13 × 2 CPUs, 23.5 GiB" in page
    assert "server: uvicorn, version 0.32.0 from http://127.0.0.1:8000/version" in page
    note = written.markdown.read_text(encoding="utf-8")
    assert "### Server" in note
    row = next(line for line in note.splitlines() if line.startswith("| concurrency=40 |") and "/ 30.0" in line)
    assert "| 0.0 / 0.0 |" in row and "| 60.0% / 60.0% |" in row  # waiting; KV cache mean / max


def test_a_run_without_server_metrics_says_why(tmp_path: Path) -> None:
    run = sweep_run()
    notice = "server metrics not scraped: http://x/metrics did not answer with Prometheus text (HTTP 404)"
    config = run.run.config | {"server_metrics": {"url": None, "interval_s": 1.0, "notice": notice}}
    directory = write_dir(tmp_path / "run", dataclasses.replace(run, run=dataclasses.replace(run.run, config=config)))
    page = build_report([directory], limit=30).html.read_text(encoding="utf-8")
    assert notice in page and page.count("data:image/png;base64,") == 4
    summary = orjson.loads((directory / "summary.json").read_bytes())
    assert "server_metrics" not in summary and all("server" not in s for s in summary["steps"])


@pytest.mark.parametrize(
    ("threshold", "step", "status"),
    [
        ("server_preemptions_max = 0", "concurrency=40", "fail"),
        ("server_preemptions_max = 4", "concurrency=40", "pass"),
        ("server_preemptions_max = 0", "concurrency=30", "pass"),
        ("server_queue_time_p99_ms_max = 300", "concurrency=30", "pass"),
        ("server_queue_time_p99_ms_max = 300", "concurrency=40", "fail"),
        ("server_kv_cache_usage_max = 0.5", "concurrency=30", "fail"),
        ("server_ttft_p99_ms_max = 100", "concurrency=30", "skip"),  # not exported by this server
    ],
)
def test_the_gate_bounds_the_servers_figures(
    tmp_path: Path, summary: dict[str, Any], threshold: str, step: str, status: str
) -> None:
    toml = tmp_path / "gate.toml"
    toml.write_text(f'version = 1\n[absolute]\nstep = "{step}"\n{threshold}\n')
    verdict = evaluate(tmp_path / "run" / "summary.json", toml, None)
    (check,) = verdict.checks
    assert check.name == threshold.split(" = ")[0] and check.status == status
    assert verdict.code == (FAIL if status == "fail" else PASS)


def test_a_run_without_server_metrics_skips_the_servers_thresholds(tmp_path: Path) -> None:
    path = summarized(write_dir(tmp_path / "run", sweep_run(), conformance_result(failed=0)))
    toml = tmp_path / "gate.toml"
    toml.write_text("version = 1\n[absolute]\nserver_preemptions_max = 0\n")
    (check,) = evaluate(path, toml, None).checks
    assert check.status == "skip" and check.detail == "not measured in this run"


def test_a_baseline_measured_on_another_machine_is_compared_with_a_note(tmp_path: Path) -> None:
    baseline = summarized(with_server_metrics(sweep_run(), tmp_path / "base"))
    moved = sweep_run()
    elsewhere = ENVIRONMENT | {"client": ENVIRONMENT["client"] | {"cpu": "Intel Xeon", "packages": {"aiohttp": "3.15"}}}
    moved = dataclasses.replace(moved, run=dataclasses.replace(moved.run, environment=elsewhere))
    current = summarized(write_dir(tmp_path / "current", moved, conformance_result(failed=0)))
    toml = tmp_path / "gate.toml"
    toml.write_text("version = 1\n[regression]\nresamples = 1000\nmin_samples = 2\n")
    verdict = evaluate(current, toml, baseline)
    assert verdict.code == PASS
    assert verdict.notes == [
        "measured elsewhere: client cpu: baseline 'AMD EPYC 7B13', this run 'Intel Xeon'",
        "measured elsewhere: client aiohttp: baseline '3.14.5', this run '3.15'",
        "measured elsewhere: client numpy: baseline '2.3.5', this run None",
    ]
    assert "- note: measured elsewhere: client cpu: baseline 'AMD EPYC 7B13', this run 'Intel Xeon'" in gate_markdown(
        verdict
    )


def test_environments_compared() -> None:
    same = {"environment": ENVIRONMENT}
    assert regression.environment_differences(same, same) == []
    assert regression.environment_differences({}, {}) == []
    assert regression.environment_differences({}, same) == ["only this run recorded its machine"]
    gpu = ENVIRONMENT | {"client": ENVIRONMENT["client"] | {"gpus": ["NVIDIA L4, 23034 MiB, 550.54"]}}
    assert regression.environment_differences(same, {"environment": gpu}) == [
        "client gpus: baseline None, this run ['NVIDIA L4, 23034 MiB, 550.54']"
    ]
