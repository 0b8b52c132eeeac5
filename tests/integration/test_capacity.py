"""Capacity searches, saturation, steady state and repeats end to end: `harness bench` against the simulator it
starts, whose latency model makes the answers known (two sequences batched, 100 ms each: 20 requests/s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

import schemas
from harness.cli import main
from harness.records.record import read_run

# Two sequences at a time, each 50 ms to its first token and 10 ms a token after: 6 tokens take 100 ms, so the
# simulator serves 20 requests/s, and beyond that its queue grows.
SIM = ["--sim-arg=--max-num-seqs=2", "--sim-arg=--ttft-ms=50", "--sim-arg=--itl-ms=10",
       "--sim-arg=--itl-batch-factor=0", "--sim-arg=--prefill-ms-per-token=0", "--sim-concurrency-limit", "1000",
       "--input-tokens", "16", "--output-tokens", "6"]  # fmt: skip
# The machine is shared: a search that met INVALID trials would stop on them (its own test is a unit test); these
# tolerances keep the client's error bounds, which tell of the machine, out of what is tested here.
LOOSE = ["--tolerance", "latency=10ms", "--tolerance", "latency=5%", "--tolerance", "throughput=5%", "--tolerance",
         "load=5%"]  # fmt: skip


def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, dict[str, Any], Path]:
    monkeypatch.delenv("ANYSCALE_BASE_URL", raising=False)
    monkeypatch.delenv("ANYSCALE_API_KEY", raising=False)
    code = main(["bench", "--output-dir", str(tmp_path), "--run-id", "run", "--no-progress", *SIM, *LOOSE, *argv])
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    jsonschema.Draft7Validator(schemas.load("summary.json")).validate(summary)
    validator = jsonschema.Draft7Validator(schemas.load("record.json"))
    for line in (tmp_path / "run" / "records.jsonl").read_bytes().splitlines():
        validator.validate(orjson.loads(line))
    return code, summary, tmp_path / "run" / "records.jsonl"


def test_a_search_for_users_finds_the_most_that_meet_the_slo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # With 2 batched, each user past the second waits ~50 ms more: a TTFT p90 of 180 ms holds up to ~4 users.
    code, summary, path = bench(tmp_path, monkeypatch, "--find-max-concurrency", "--slo", "ttft_p90_ms=180",
                                "--warmup", "0.3", "--max-trials", "8")  # fmt: skip
    found = summary["capacity"]
    loads = [t["load"] for t in found["trials"] if t["used"]]  # an INVALID trial is run again, not used
    assert loads[:4] == [1.0, 2.0, 4.0, 8.0]
    assert found["status"] == "found" and code == 0
    assert found["answer"] in (3.0, 4.0, 5.0) and found["bracket"]["failed"] == found["answer"] + 1
    assert all(t["requests"] >= 29 for t in found["trials"] if t["used"])  # a p90 needs 29 samples
    run = read_run(path)
    assert [s.concurrency for s in run.steps] == [int(t["load"]) for t in found["trials"]]
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("capacity search: the largest concurrency meeting TTFT p90 ≤ 180 ms")
    assert "trial 1: 1 users → met" in out and f"capacity: capacity {found['answer']:g} users" in out


def test_an_slo_no_load_meets_ends_the_search_with_a_clear_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, summary, _ = bench(tmp_path, monkeypatch, "--find-max-concurrency", "--concurrency", "2", "--slo",
                             "ttft_p50_ms=20", "--warmup", "0.3")  # fmt: skip
    found = summary["capacity"]
    assert [t["load"] for t in found["trials"] if t["used"]] == [2.0, 1.0]
    assert found["status"] == "none_met" and found["answer"] is None and code == 1
    assert found["message"].startswith("no load meets the objectives: even 1 user failed with 0.")


def test_a_step_at_twice_the_capacity_is_stopped_as_saturated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, summary, path = bench(tmp_path, monkeypatch, "--rate", "40", "--requests", "2000", "--warmup", "0",
                                "--stop-when-saturated")  # fmt: skip
    (step,) = summary["steps"]
    saturation = step["saturation"]
    assert saturation["saturated"] is True and saturation["stopped"] is True
    assert saturation["stopped_at_s"] is not None and saturation["stopped_at_s"] <= 20
    assert saturation["in_flight"]["rise"] > 10
    (info,) = read_run(path).steps
    assert info.saturated_ns is not None
    assert len(read_run(path).requests) < 2000  # it stopped sending
    assert code == 0


def test_a_repeated_plan_reports_each_figure_across_its_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, summary, path = bench(tmp_path, monkeypatch, "--rate", "8", "--duration", "2", "--warmup", "auto",
                                "--repeat", "2", "--cooldown", "0.5")  # fmt: skip
    assert code == 0
    assert [s["repeat"] for s in summary["steps"]] == [0, 1]
    assert all(s["steady_state"]["method"] == "mser5" for s in summary["steps"])
    repeats = summary["repeats"]
    assert repeats["runs"] == 2
    (step,) = repeats["steps"]
    ttft = step["metrics"]["ttft_p50_ms"]
    assert ttft["values"] == [s["latency_ms"]["ttft"]["p50"] for s in summary["steps"]]
    assert ttft["low"] <= ttft["mean"] <= ttft["high"]
    assert summary["config"]["repeat"] == 2 and summary["config"]["warmup"] == "auto"
    first, second = read_run(path).steps
    assert second.started_ns - first.ended_ns >= 0.5e9


def test_harness_run_searches_instead_of_sweeping_and_gates_the_capacity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANYSCALE_BASE_URL", raising=False)
    monkeypatch.delenv("ANYSCALE_API_KEY", raising=False)
    thresholds = tmp_path / "gate.toml"
    thresholds.write_text("version = 1\n[absolute]\nmax_rate_min = 4\n")
    code = main(["run", "--engine", "sim", "--find-max-rate", "--slo", "ttft_p90_ms=2000", "--rate", "4",
                 "--max-trials", "2", "--no-conformance", "--thresholds", str(thresholds), "--output-dir",
                 str(tmp_path), "--run-id", "run", "--no-progress", *LOOSE])  # fmt: skip
    directory = tmp_path / "run"
    summary = orjson.loads((directory / "summary.json").read_bytes())
    found = summary["capacity"]
    assert [t["load"] for t in found["trials"]] == [4.0, 8.0]
    assert found["status"] == "all_met" and found["answer"] == 8.0
    assert all(s["mode"] == "rate" for s in summary["steps"])
    assert "<h2>Capacity</h2>" in (directory / "report.html").read_text()
    assert "`max_rate_min` | 8 | ≥ 4 | ✅" in (directory / "gate.md").read_text()
    assert code == 0
